"""`python -m benchmarks`: each stage against its limit and against PyTorch."""
import trainer  # noqa: F401  measures the trainer's CPU defaults: set before TensorFlow starts (see trainer/__init__.py)
