"""Facts about model.build_alexnet and model.LocalResponseNormalization."""
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from model import FullyConnected, LocalResponseNormalization, TowerConv2D, build_alexnet, min_image_size
from model import alexnet as alexnet_module
from model import summary


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


def test_parameter_counts_match_the_paper():
    assert build_alexnet().count_params() == 62_378_344
    assert build_alexnet(two_tower=True).count_params() == 60_965_224


def test_layer_names_and_shapes():
    model = build_alexnet()
    shapes = {layer.name: tuple(layer.output.shape[1:]) for layer in model.layers}
    assert shapes["conv1"] == (55, 55, 96)
    assert shapes["pool1"] == (27, 27, 96)
    assert shapes["pool2"] == (13, 13, 256)
    assert shapes["conv5"] == (13, 13, 256)
    assert shapes["pool5"] == (6, 6, 256)
    assert shapes["fc8"] == (1000,)
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "lrn1", "lrn2", "pool1", "pool2", "pool5", "fc6", "fc7", "fc8"):
        assert name in shapes


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
    from model.lrn import window_matrix

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


def test_two_tower_equals_block_diagonal_single_tower():
    kwargs = dict(num_classes=7, image_size=67, dropout_rate=0.0, init="he")
    towers = build_alexnet(two_tower=True, **kwargs)
    single = build_alexnet(two_tower=False, **kwargs)
    for layer in towers.layers:
        if not layer.weights:
            continue
        target = single.get_layer(layer.name)
        weights = [np.asarray(w) for w in layer.get_weights()]
        if isinstance(layer, TowerConv2D) and layer.groups == 2:
            kernel, bias = weights
            kh, kw, cin_half, cout = kernel.shape
            full = np.zeros((kh, kw, 2 * cin_half, cout), np.float32)
            half = cout // 2
            full[:, :, :cin_half, :half] = kernel[:, :, :, :half]
            full[:, :, cin_half:, half:] = kernel[:, :, :, half:]
            weights = [full, bias]
        target.set_weights(weights)
    x = np.random.default_rng(1).normal(size=(3, 67, 67, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(towers(x)), np.asarray(single(x)), rtol=1e-4, atol=1e-4)


def test_tower_conv_equals_keras_grouped_conv():
    x = np.random.default_rng(2).normal(size=(2, 9, 9, 8)).astype(np.float32)
    towers = TowerConv2D(6, 3, padding="same", groups=2)
    grouped = keras.layers.Conv2D(6, 3, padding="same", groups=2)
    towers.build(x.shape)
    grouped.build(x.shape)
    grouped.set_weights(towers.get_weights())
    np.testing.assert_allclose(np.asarray(towers(x)), np.asarray(grouped(x)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_fully_connected_equals_keras_dense_forward_and_backward(policy, monkeypatch):
    # Same weights, same outputs, same input and weight gradients: only the
    # form of the input gradient's matrix product differs.
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(6, 40)).astype("float32"))
    dy = tf.constant(rng.normal(size=(6, 24)).astype("float32"))
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        calls = []
        custom = alexnet_module._matmul
        monkeypatch.setattr(alexnet_module, "_matmul", lambda x, w: calls.append(1) or custom(x, w))
        ours, theirs = FullyConnected(24, activation="relu"), keras.layers.Dense(24, activation="relu")
        ours.build((None, 40))
        theirs.build((None, 40))
        theirs.set_weights([w + 0.1 for w in ours.get_weights()])  # biases not all zero
        ours.set_weights(theirs.get_weights())
        results = []
        for layer in (ours, theirs):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x)
            dx, dw = tape.gradient(y, [x, layer.kernel], output_gradients=tf.cast(dy, y.dtype))
            assert y.dtype == (tf.bfloat16 if policy == "mixed_bfloat16" else tf.float32)
            results.append([tf.cast(t, tf.float32).numpy() for t in (y, dx, dw)])
        assert calls  # the layer took its own path, not Dense.call
        tol = 1e-2 if policy == "mixed_bfloat16" else 1e-5
        for a, b in zip(*results):
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
        assert np.abs(results[0][1]).max() > 0.1  # the gradients are not trivially zero
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
    model = build_alexnet(10, image_size=67)
    assert all(isinstance(model.get_layer(n), FullyConnected) for n in ("fc6", "fc7", "fc8"))


def test_paper_initialisation():
    model = build_alexnet(num_classes=10, image_size=67)
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"):
        kernel, bias = [np.asarray(w) for w in model.get_layer(name).get_weights()]
        assert abs(kernel.std() - 0.01) < 0.002, name
        assert abs(kernel.mean()) < 0.002, name
        expected_bias = 1.0 if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0
        assert np.all(bias == expected_bias), name


def test_options_change_the_network():
    tanh = build_alexnet(num_classes=10, image_size=67, activation="tanh", lrn=False, dropout_rate=0.0)
    names = [layer.name for layer in tanh.layers]
    assert "lrn1" not in names and "lrn2" not in names and "dropout6" not in names
    assert tanh.get_layer("conv1").activation is keras.activations.tanh
    flat = build_alexnet(overlapping_pool=False)
    assert flat.get_layer("pool1").pool_size == (2, 2)
    assert tuple(flat.get_layer("pool5").output.shape[1:]) == (6, 6, 256)
    assert build_alexnet().get_layer("pool1").pool_size == (3, 3)


def test_weight_decay_is_coupled_l2_on_kernels_only():
    model = build_alexnet(num_classes=3, image_size=67, weight_decay=5e-4)
    model(np.zeros((1, 67, 67, 3), np.float32))
    expected = sum(0.5 * 5e-4 * np.sum(np.asarray(layer.kernel) ** 2) for layer in model.layers if hasattr(layer, "kernel"))
    np.testing.assert_allclose(float(sum(model.losses)), expected, rtol=1e-4)
    assert len(model.losses) == 8  # 5 conv + 3 fc kernels, no biases
    assert not build_alexnet(num_classes=3, image_size=67, weight_decay=0.0).losses


def test_smallest_image_size():
    assert min_image_size() == 67
    build_alexnet(num_classes=2, image_size=67)
    with pytest.raises(ValueError, match="image_size to be an int >= 67.*Received: image_size=63"):
        build_alexnet(image_size=63)


@pytest.mark.parametrize(
    "kwargs", [dict(activation="sigmoid"), dict(num_classes=0), dict(dropout_rate=1.0), dict(init="xavier")]
)
def test_build_rejects_invalid_options(kwargs):
    with pytest.raises(ValueError, match="Received"):
        build_alexnet(**kwargs)


def test_mixed_precision_keeps_logits_float32():
    model = build_alexnet(num_classes=5, image_size=67, dropout_rate=0.0)
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        mixed = build_alexnet(num_classes=5, image_size=67, dropout_rate=0.0)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert mixed.get_layer("conv1").compute_dtype == "float16"
    assert mixed.get_layer("lrn1").compute_dtype == "float16"
    assert mixed.get_layer("fc8").compute_dtype == "float32"
    mixed.set_weights(model.get_weights())
    x = np.random.default_rng(3).uniform(-1, 1, size=(2, 67, 67, 3)).astype(np.float32)
    out = mixed(x)
    assert out.dtype == "float32"
    np.testing.assert_allclose(np.asarray(out), np.asarray(model(x)), rtol=0.05, atol=0.05)


def test_keras_save_and_load_in_safe_mode(tmp_path):
    model = build_alexnet(num_classes=6, image_size=67, two_tower=True, init="he")
    path = tmp_path / "alexnet.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    x = np.random.default_rng(4).normal(size=(2, 67, 67, 3)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(loaded(x, training=False)), np.asarray(model(x, training=False)))
    assert isinstance(loaded.get_layer("lrn1"), LocalResponseNormalization)
    assert isinstance(loaded.get_layer("conv2"), TowerConv2D) and loaded.get_layer("conv2").groups == 2
    assert isinstance(loaded.get_layer("fc6"), FullyConnected)
    assert loaded.count_params() == model.count_params()


def test_model_config_round_trip():
    model = build_alexnet(num_classes=4, image_size=67)
    clone = keras.Model.from_config(model.get_config())
    assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers]
    assert clone.count_params() == model.count_params()
    assert clone.get_layer("lrn2").get_config() == model.get_layer("lrn2").get_config()


def test_few_sgd_steps_drive_the_loss_down():
    keras.utils.set_random_seed(0)
    model = build_alexnet(num_classes=4, image_size=67, dropout_rate=0.0, weight_decay=0.0, init="he")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(8, 67, 67, 3)).astype(np.float32) - 0.5
    y = np.array([0, 1, 2, 3, 0, 1, 2, 3], np.int32)
    opt = keras.optimizers.SGD(learning_rate=0.01, momentum=0.9)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    losses = [float(step()) for _ in range(40)]
    assert losses[0] > 1.0
    assert losses[-1] < 0.25 * losses[0], losses


def test_summary_totals_equal_the_model():
    for two_tower in (False, True):
        model = build_alexnet(two_tower=two_tower)
        t = summary.totals(summary.layer_table(model))
        assert t["all"][0] == model.count_params()
        assert t["conv"][0] + t["fc"][0] == model.count_params()
    t = summary.totals(summary.layer_table(build_alexnet()))
    assert t["conv"] == (3_747_200, 1_076_634_144)
    assert t["fc"] == (58_631_144, 58_621_952)


def test_summary_command_prints_the_table():
    proc = subprocess.run(
        [sys.executable, "-m", "model.summary", "--two_tower"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "60,965,224" in proc.stdout
    assert "conv2" in proc.stdout and "27x27x256" in proc.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "model.summary", "--image_size", "50"], capture_output=True, text=True, timeout=300
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("error: build_alexnet expected image_size")
