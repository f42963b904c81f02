"""Commands that test the paper's claims, built on `model` and `trainer`."""
import os

# TensorFlow's C++ start-up lines would bury the experiments' progress; set before any module imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import trainer  # noqa: E402,F401  sets TensorFlow's CPU defaults before TensorFlow starts (see trainer/__init__.py)
