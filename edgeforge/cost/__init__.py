"""What a model costs on a target: the latency cost model (``latency``: per-op tables from the target profile,
calibrated or published, with the coarse cycles-per-MAC fallback) and a compression candidate's flash, RAM and
latency (``candidate``). Used by ``analyze``, the build's estimates, the compression search and ``calibrate``."""
