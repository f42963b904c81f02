"""Tests of experiments/curves.py."""
from experiments.curves import epochs_to_target


def test_epochs_to_target():
    assert epochs_to_target([0.9, 0.5, 0.25, 0.1], 0.25) == 3
    assert epochs_to_target([0.9, 0.5], 0.25) is None
