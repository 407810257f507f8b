"""Model import (``load``), conversion (``convert``) and the .tflite reader (``tflite``)."""
