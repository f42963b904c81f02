"""Suite-wide settings. Fixtures that make data live beside the tests that use them."""
import os

# Quiet TensorFlow's C++ start-up lines; set before any test imports TensorFlow.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The project's TensorFlow settings (oneDNN on unless the environment chose, see
# trainer/__init__.py) must come before TensorFlow starts, so that the tests that
# run in this process see the same kernels as the entry points do.
import trainer  # noqa: E402,F401  pylint: disable=unused-import,wrong-import-position
