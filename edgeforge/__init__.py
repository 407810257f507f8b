"""edgeforge: compress a trained model to fit a board and emit what the board runs.

The library is silent: functions return frozen results and raise :class:`EdgeforgeError`;
the CLI (``edgeforge.cli``) renders. Heavy dependencies (TensorFlow, LiteRT, tflite-micro)
load lazily so that ``edgeforge targets`` starts instantly.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
