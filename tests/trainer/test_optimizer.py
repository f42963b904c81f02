"""trainer.optimizer.PaperSGD: the paper's update rule, against numpy and against an L2 loss term."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from model import build_alexnet
from trainer import optimizer as optimizer_lib


def test_three_steps_follow_the_papers_update_rule():
    rng = np.random.default_rng(0)
    kernel0, bias0 = rng.normal(size=(3, 4)).astype("float32"), rng.normal(size=(4,)).astype("float32")
    grads = [(rng.normal(size=(3, 4)).astype("float32"), rng.normal(size=(4,)).astype("float32")) for _ in range(3)]
    kernel, bias = keras.Variable(kernel0), keras.Variable(bias0)
    opt = optimizer_lib.PaperSGD(learning_rate=0.1, momentum=0.9, l2=0.05)
    for gk, gb in grads:
        opt.apply_gradients([(tf.constant(gk), kernel), (tf.constant(gb), bias)])
    # Section 5: v <- 0.9 v - wd * lr * w - lr * g; w <- w + v. Biases: no decay.
    w, b = kernel0.astype("float64"), bias0.astype("float64")
    vw, vb = np.zeros_like(w), np.zeros_like(b)
    for gk, gb in grads:
        vw = 0.9 * vw - 0.05 * 0.1 * w - 0.1 * gk
        vb = 0.9 * vb - 0.1 * gb
        w, b = w + vw, b + vb
    np.testing.assert_allclose(kernel.numpy(), w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bias.numpy(), b, rtol=1e-5, atol=1e-6)
    # Without the decay the kernel would be elsewhere: the test can tell.
    undecayed = kernel0 - 0.1 * (grads[0][0] * (1 + 0.9 + 0.81) + grads[1][0] * 1.9 + grads[2][0])
    assert np.abs(kernel.numpy() - undecayed).max() > 1e-3


@pytest.mark.parametrize("l2", [0.05, 0.0])
def test_same_training_as_an_l2_term_in_the_loss(l2):
    # The old way (keras' L2 regularizer on the kernels + plain SGD) and PaperSGD
    # must give the same weights: same rule, cheaper arithmetic. The decay is
    # large so that forgetting it (l2=0 here) moves the weights past the tolerance.
    x = tf.random.stateless_uniform((8, 67, 67, 3), seed=[1, 2])
    y = tf.constant(np.arange(8) % 5, tf.int32)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    keras.utils.set_random_seed(0)
    in_loss = build_alexnet(5, image_size=67, dropout_rate=0.0, weight_decay=0.05, init="he")
    in_opt = build_alexnet(5, image_size=67, dropout_rate=0.0, weight_decay=0.0, init="he")
    in_opt.set_weights(in_loss.get_weights())
    assert in_loss.losses and not in_opt.losses
    in_loss.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss=loss)
    in_opt.compile(optimizer=optimizer_lib.PaperSGD(0.01, momentum=0.9, l2=l2), loss=loss)
    for _ in range(3):
        in_loss.train_on_batch(x, y)
        in_opt.train_on_batch(x, y)
    same = all(
        np.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(in_loss.get_weights(), in_opt.get_weights())
    )
    assert same == (l2 == 0.05)


def test_l2_penalty_is_half_the_decay_times_the_squared_kernels():
    variables = [tf.Variable(np.full((2, 3), 2.0, np.float32)), tf.Variable(np.ones(3, np.float32))]
    assert float(optimizer_lib.l2_penalty(variables, 1e-3)) == pytest.approx(1e-3 / 2 * 6 * 4.0)
    assert float(optimizer_lib.l2_penalty(variables, 0.0)) == 0.0


def test_config_round_trip_and_bad_arguments():
    opt = optimizer_lib.PaperSGD(learning_rate=0.02, momentum=0.8, l2=1e-3)
    again = optimizer_lib.PaperSGD.from_config(opt.get_config())
    assert (again.l2, again.momentum) == (1e-3, 0.8)
    assert float(keras.ops.convert_to_numpy(again.learning_rate)) == pytest.approx(0.02)
    with pytest.raises(ValueError, match="would decay twice"):
        optimizer_lib.PaperSGD(weight_decay=1e-4)
    with pytest.raises(ValueError, match="l2 to be a number >= 0"):
        optimizer_lib.PaperSGD(l2=-1.0)
