"""The native runtime: ahead-of-time C for a .tflite model, bit-exact with TFLite Micro's reference kernels.

``ir`` defines the typed kernel calls the op lowering hands on; ``qparams`` holds the exact integer parameter
math (TFLM's Prepare); ``lower`` turns each op into a kernel call; ``fuse`` rewrites residual CONV_2D -> ADD pairs
into one row-by-row call; ``sparse`` stores pruned filters (and tells the compression search their exact flash);
``planner`` places tensors in one static arena and ``verify`` checks that plan before anything is emitted;
``csource`` renders kernel calls as C (the only place that does); ``emit`` renders the C sources and
configuration header; ``toolchain`` compiles them for the host or Cortex-M.
"""
