"""Tests of experiments/figure1_net.py: the paper's Figure 1 network."""
import numpy as np
import pytest

from experiments.figure1_net import FIGURE1_INITS, build_figure1_net


def test_figure1_net_relu_and_tanh_start_from_the_same_weights():
    relu = build_figure1_net("relu", 10, 32, "glorot", seed=3)
    tanh = build_figure1_net("tanh", 10, 32, "glorot", seed=3)
    # conv 5x5x3x32, 5x5x32x32, 5x5x32x64 and fc 4*4*64 x 10, with biases.
    assert relu.count_params() == (2400 + 32) + (25600 + 32) + (51200 + 64) + (10240 + 10) == 89578
    for a, b in zip(relu.get_weights(), tanh.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert [layer.activation.__name__ for layer in tanh.layers if layer.name.startswith("conv")] == ["tanh"] * 3


def test_figure1_net_checks_its_arguments():
    with pytest.raises(ValueError, match="expected init in"):
        build_figure1_net("relu", init="paper")  # AlexNet's init, not one of this network's
    with pytest.raises(ValueError, match="expected activation in"):
        build_figure1_net("sigmoid")
    assert FIGURE1_INITS == ("glorot", "he", "convnet")
