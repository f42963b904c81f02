"""Facts about model.LocalResponseNormalization (model/lrn.py)."""
import numpy as np
import pytest
import tensorflow as tf
from keras.src import testing

from model import LocalResponseNormalization
from model.lrn import window_matrix


def lrn_reference(a, n=5, k=2.0, alpha=1e-4, beta=0.75):
    """The paper's formula, channel by channel, in float64."""
    a = np.asarray(a, np.float64)
    channels = a.shape[-1]
    out = np.empty_like(a)
    for i in range(channels):
        lo, hi = max(0, i - n // 2), min(channels - 1, i + n // 2)
        s = np.sum(a[..., lo : hi + 1] ** 2, axis=-1)
        out[..., i] = a[..., i] / (k + alpha * s) ** beta
    return out


@pytest.mark.parametrize(
    "shape",
    [(2, 4, 4, 1), (1, 3, 5, 3), (2, 2, 2, 4), (1, 6, 6, 5), (2, 3, 3, 7), (1, 5, 5, 96)],
)
def test_lrn_matches_numpy_reference(shape):
    rng = np.random.default_rng(sum(shape))
    # Magnitudes like post-ReLU activations, large enough that the denominator matters.
    a = rng.uniform(0.0, 60.0, size=shape).astype(np.float32)
    got = LocalResponseNormalization()(a)
    np.testing.assert_allclose(np.asarray(got), lrn_reference(a), rtol=2e-5, atol=1e-6)


def test_lrn_non_default_window_and_constants():
    a = np.random.default_rng(0).normal(0, 30, size=(2, 3, 3, 9)).astype(np.float32)
    layer = LocalResponseNormalization(depth_radius=3, bias=1.0, alpha=2e-4, beta=0.5)
    np.testing.assert_allclose(
        np.asarray(layer(a)), lrn_reference(a, n=7, k=1.0, alpha=2e-4, beta=0.5), rtol=2e-5, atol=1e-6
    )


def lrn_reference_gradient(a, dy, n=5, k=2.0, alpha=1e-4, beta=0.75, eps=1e-3):
    """d(sum(dy * lrn(a)))/da by central differences of `lrn_reference`, in float64."""
    a = np.asarray(a, np.float64)
    grad = np.empty_like(a)
    for index in np.ndindex(a.shape):
        hi, lo = a.copy(), a.copy()
        hi[index] += eps
        lo[index] -= eps
        f = lambda v: np.sum(dy * lrn_reference(v, n, k, alpha, beta))  # noqa: E731
        grad[index] = (f(hi) - f(lo)) / (2 * eps)
    return grad


@pytest.mark.parametrize(
    "depth_radius,bias,alpha,beta",
    # The paper's constants (the rsqrt path), beta 0.5 and 1 (their own paths), the general pow;
    # alpha large enough that the window term carries real weight in the gradient.
    [(2, 2.0, 1e-4, 0.75), (2, 2.0, 1e-2, 0.75), (1, 1.0, 1e-2, 0.5), (3, 1.5, 5e-3, 1.0), (2, 1.0, 2e-2, 0.6)],
)
def test_lrn_gradient_matches_finite_differences_of_the_reference(depth_radius, bias, alpha, beta):
    rng = np.random.default_rng(7)
    a = rng.uniform(0.0, 6.0, size=(1, 2, 2, 9)).astype(np.float32)
    dy = rng.normal(size=a.shape)
    layer = LocalResponseNormalization(depth_radius=depth_radius, bias=bias, alpha=alpha, beta=beta)
    x = tf.constant(a)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(tf.constant(dy, tf.float32) * layer(x))
    got = tape.gradient(loss, x).numpy()
    want = lrn_reference_gradient(a, dy, 2 * depth_radius + 1, bias, alpha, beta)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
def test_lrn_forward_and_gradient_equal_tensorflows_kernel(mode):
    """Same values as tf.nn.local_response_normalization and its LRNGrad kernel, at conv1's width."""
    rng = np.random.default_rng(3)
    x = tf.constant(rng.uniform(0.0, 80.0, size=(2, 5, 5, 96)).astype(np.float32))
    dy = tf.constant(rng.normal(size=(2, 5, 5, 96)).astype(np.float32))
    layer = LocalResponseNormalization()

    def forward_backward(fn):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
            loss = tf.reduce_sum(dy * y)
        return y, tape.gradient(loss, x)

    def ours():
        return forward_backward(layer)

    def kernel():
        return forward_backward(lambda v: tf.nn.local_response_normalization(v, 2, 2.0, 1e-4, 0.75))

    if mode != "eager":
        ours = tf.function(ours, jit_compile=mode == "xla")
    (y, g), (y_ref, g_ref) = ours(), kernel()
    np.testing.assert_allclose(y.numpy(), y_ref.numpy(), rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(g.numpy(), g_ref.numpy(), rtol=1e-4, atol=1e-6)
    # The window term matters here: dropping it changes the gradient by more than the tolerance.
    assert np.max(np.abs(g.numpy() - dy.numpy() * y.numpy() / x.numpy())) > 1e-3


def test_window_matrix_is_the_symmetric_band():
    w = window_matrix(6, 2)
    assert w.dtype == np.float32 and w.shape == (6, 6)
    np.testing.assert_array_equal(w, w.T)
    np.testing.assert_array_equal(w[:, 0], [1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(w[:, 3], [0, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(window_matrix(3, 0), np.eye(3, dtype=np.float32))


def test_lrn_float16_large_inputs_stay_finite():
    a = np.full((1, 2, 2, 8), 60000.0, np.float16)  # squares overflow float16 (max 65504)
    layer = LocalResponseNormalization(dtype="float16")
    out = np.asarray(layer(a))
    assert out.dtype == np.float16
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out.astype(np.float64), lrn_reference(a.astype(np.float32)), rtol=2e-3)


def test_lrn_under_mixed_precision_policy():
    layer = LocalResponseNormalization(dtype="mixed_float16")
    out = layer(np.full((1, 2, 2, 6), 3000.0, np.float32))
    assert out.dtype == "float16"
    assert np.all(np.isfinite(np.asarray(out)))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(depth_radius=-1), "depth_radius"),
        (dict(depth_radius=2.5), "depth_radius"),
        (dict(bias=0.0), "bias"),
        (dict(alpha=-1.0), "alpha"),
        (dict(beta="x"), "beta"),
    ],
)
def test_lrn_rejects_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LocalResponseNormalization(**kwargs)


def test_lrn_rejects_non_4d_input():
    with pytest.raises(ValueError, match="4-D"):
        LocalResponseNormalization()(np.zeros((2, 3), np.float32))


def test_lrn_config_round_trip():
    layer = LocalResponseNormalization(depth_radius=3, bias=1.5, alpha=3e-4, beta=0.6, name="x")
    clone = LocalResponseNormalization.from_config(layer.get_config())
    assert (clone.depth_radius, clone.bias, clone.alpha, clone.beta, clone.name) == (3, 1.5, 3e-4, 0.6, "x")


def test_lrn_float64_keeps_float64_precision():
    # Constants included: a float32 band or bias would cap the agreement near 1e-7.
    a = np.random.default_rng(5).uniform(0.0, 60.0, size=(2, 3, 3, 11))
    for kwargs, reference in (
        ({}, {}),
        (dict(depth_radius=3, bias=1.1, alpha=3.3e-4, beta=0.6), dict(n=7, k=1.1, alpha=3.3e-4, beta=0.6)),
    ):
        out = LocalResponseNormalization(dtype="float64", **kwargs)(a)
        assert out.dtype == tf.float64
        np.testing.assert_allclose(out.numpy(), lrn_reference(a, **reference), rtol=1e-12, atol=0)


def lrn_reference_gradient_exact(a, dy, n, k, alpha, beta):
    """The gradient of sum(dy * lrn(a)) by the chain rule, channel by channel, in float64.

    With d_i = k + alpha * sum_{j in W(i)} a_j^2: d(a_j d_j^-beta)/da_i is
    d_j^-beta [i == j] - 2 alpha beta a_i a_j d_j^(-beta - 1) for i in W(j).
    """
    a, dy = np.asarray(a, np.float64), np.asarray(dy, np.float64)
    channels = a.shape[-1]
    windows = [range(max(0, j - n // 2), min(channels - 1, j + n // 2) + 1) for j in range(channels)]
    d = np.stack([k + alpha * sum(a[..., i] ** 2 for i in windows[j]) for j in range(channels)], axis=-1)
    grad = dy * d**-beta
    for j in range(channels):
        for i in windows[j]:
            grad[..., i] -= 2 * alpha * beta * a[..., i] * a[..., j] * dy[..., j] * d[..., j] ** (-beta - 1)
    return grad


def test_lrn_float64_gradient_keeps_float64_precision():
    a = np.random.default_rng(6).uniform(0.0, 6.0, size=(1, 2, 2, 9))
    dy = np.random.default_rng(8).normal(size=a.shape)
    layer = LocalResponseNormalization(depth_radius=2, bias=1.0, alpha=2e-2, beta=0.6, dtype="float64")
    x = tf.constant(a)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(tf.constant(dy) * layer(x))
    got = tape.gradient(loss, x)
    assert got.dtype == tf.float64
    want = lrn_reference_gradient_exact(a, dy, 5, 1.0, 2e-2, 0.6)
    # The reference itself agrees with central differences (float32 arithmetic would miss by 1e-7).
    np.testing.assert_allclose(want, lrn_reference_gradient(a, dy, 5, 1.0, 2e-2, 0.6, eps=1e-5), rtol=1e-6)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-14)


class LocalResponseNormalizationHarnessTest(testing.TestCase):
    """Keras's own layer checks: build, symbolic and eager calls, serialisation, a
    training step and the mixed-precision dtypes."""

    def test_run_layer_test(self):
        self.run_layer_test(
            LocalResponseNormalization,
            init_kwargs={"depth_radius": 2, "bias": 2.0, "alpha": 1e-4, "beta": 0.75},
            input_shape=(2, 4, 4, 6),
            expected_output_shape=(2, 4, 4, 6),
            expected_output_dtype="float32",
            expected_num_trainable_weights=0,
            expected_num_non_trainable_weights=0,
            expected_num_seed_generators=0,
            expected_num_losses=0,
            supports_masking=True,
        )

    def test_run_layer_test_float64(self):
        self.run_layer_test(
            LocalResponseNormalization,
            init_kwargs={"depth_radius": 1, "dtype": "float64"},
            input_shape=(2, 3, 3, 5),
            input_dtype="float64",
            expected_output_shape=(2, 3, 3, 5),
            expected_output_dtype="float64",
            expected_num_trainable_weights=0,
            run_mixed_precision_check=False,
        )
