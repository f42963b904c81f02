"""Tests of benchmarks/keras_worker.py: the convolution ops it times are the step's own."""
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from benchmarks import keras_worker

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("strides,padding", [(4, "valid"), (1, "same")])
def test_conv_op_functions_compute_the_step_gradients(strides, padding):
    layer = keras.layers.Conv2D(5, 3, strides=strides, padding=padding, activation="relu", bias_initializer="random_normal")
    x = tf.random.uniform((2, 13, 13, 4), seed=1)
    out = layer(x)
    dy = tf.random.normal(out.shape, seed=2)
    with tf.GradientTape() as tape:
        tape.watch(x)
        pre_activation = layer.convolution_op(x, layer.kernel) + layer.bias
    dx, dw, db = tape.gradient(pre_activation, [x, layer.kernel, layer.bias], output_gradients=dy)
    ops = keras_worker.conv_op_functions(layer, x, layer.kernel, layer.bias, dy)
    assert list(ops) == list(keras_worker.CONV_OPS)
    np.testing.assert_allclose(ops["forward"](), out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ops["input gradient"](), dx, rtol=1e-5, atol=1e-6)
    kernel_gradient, bias_gradient = ops["filter gradient"]()
    np.testing.assert_allclose(kernel_gradient, dw, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bias_gradient, db, rtol=1e-5, atol=1e-5)


def test_conv_op_times_cover_every_op_of_the_step():
    model = keras_worker.paper_alexnet(10, 67)
    times = keras_worker.keras_conv_op_times(model, 2, warmup=0, repeats=2)
    ops = [(t["layer"], t["op"]) for t in times]
    # conv1 has no input gradient: the step needs none for the image.
    assert ops == [("conv1", "forward"), ("conv1", "filter gradient")] + [
        (layer, op) for layer in ("conv2", "conv3", "conv4", "conv5") for op in keras_worker.CONV_OPS
    ]
    assert all(t["ms"]["n"] == 2 and t["ms"]["min"] > 0 for t in times)


def test_a_too_small_input_is_one_usage_line(capsys):
    assert keras_worker.main(["--image_size", "50"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "python -m benchmarks.keras_worker: error: argument --image_size: expected an int >= 67. Received: 50"
