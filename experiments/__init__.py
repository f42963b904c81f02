"""Commands that test the paper's claims, built on `model` and `trainer`."""
import trainer  # noqa: F401  sets TensorFlow's CPU defaults before TensorFlow starts (see trainer/__init__.py)
