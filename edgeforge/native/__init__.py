"""The native runtime: ahead-of-time C for a .tflite model, bit-exact with TFLite Micro's reference kernels.

``ir`` defines what the op lowering hands the emitter; ``qparams`` holds the exact integer parameter
math (TFLM's Prepare); ``lower`` turns each op into a kernel call; ``sparse`` stores pruned filters (and
tells the compression search their exact flash); ``planner`` places tensors in one static arena; ``emit``
renders the C sources; ``toolchain`` compiles them for the host or Cortex-M.
"""
