"""Suite-wide settings. Fixtures that make data live beside the tests that use them."""
import os

# Quiet TensorFlow's C++ start-up lines; set before any test imports TensorFlow.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
