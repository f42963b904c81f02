"""`python -m benchmarks`: each stage against its limit and against PyTorch."""
import os

# TensorFlow's C++ start-up lines would bury the stages' progress; set before any stage imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import trainer  # noqa: E402,F401  measures the trainer's CPU defaults: set before TensorFlow starts (see trainer/__init__.py)
