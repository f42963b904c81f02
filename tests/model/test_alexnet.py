"""Facts about model.build_alexnet, model.TowerConv2D and model.FullyConnected (model/alexnet.py)."""
import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src import testing

from model import FullyConnected, LocalResponseNormalization, TowerConv2D, build_alexnet, min_image_size
from model import alexnet as alexnet_module


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


def test_tower_conv_channels_first_splits_and_joins_the_channel_axis():
    # Width 9 is odd, so a split on the last axis cannot even run; height 10 and
    # 8 channels make every axis but the channels' a wrong answer if it did.
    x = np.random.default_rng(9).normal(size=(2, 8, 10, 9)).astype(np.float32)
    towers = TowerConv2D(6, 3, padding="same", groups=2, data_format="channels_first")
    grouped = keras.layers.Conv2D(6, 3, padding="same", groups=2, data_format="channels_first")
    towers.build(x.shape)
    grouped.build(x.shape)
    grouped.set_weights([w + 0.1 for w in towers.get_weights()])  # biases not all zero
    towers.set_weights(grouped.get_weights())
    got = np.asarray(towers(x))
    assert got.shape == (2, 6, 10, 9) == tuple(grouped(x).shape)
    np.testing.assert_allclose(got, np.asarray(grouped(x)), rtol=1e-5, atol=1e-5)
    # The same layer in channels-last order gives the same numbers, transposed.
    last = TowerConv2D(6, 3, padding="same", groups=2)
    last.build((2, 10, 9, 8))
    last.set_weights(towers.get_weights())
    np.testing.assert_allclose(
        got, np.transpose(np.asarray(last(np.transpose(x, (0, 2, 3, 1)))), (0, 3, 1, 2)), rtol=1e-5, atol=1e-5
    )


class PublicLayersHarnessTest(testing.TestCase):
    """Keras's own layer checks on the layers model/alexnet.py defines: build,
    symbolic and eager calls, serialisation, a training step, mixed precision."""

    def test_tower_conv_channels_last(self):
        self.run_layer_test(
            TowerConv2D,
            init_kwargs={"filters": 6, "kernel_size": 3, "padding": "same", "groups": 2},
            input_shape=(2, 5, 5, 4),
            expected_output_shape=(2, 5, 5, 6),
            expected_num_trainable_weights=2,
            expected_num_non_trainable_weights=0,
            expected_num_losses=0,
        )

    def test_tower_conv_channels_first(self):
        self.run_layer_test(
            TowerConv2D,
            init_kwargs={
                "filters": 6, "kernel_size": 3, "padding": "same", "groups": 2, "data_format": "channels_first",
            },
            input_shape=(2, 4, 5, 7),
            expected_output_shape=(2, 6, 5, 7),
            expected_num_trainable_weights=2,
            expected_num_non_trainable_weights=0,
            expected_num_losses=0,
        )

    def test_fully_connected(self):
        self.run_layer_test(
            FullyConnected,
            init_kwargs={"units": 3, "activation": "relu"},
            input_shape=(2, 4),
            expected_output_shape=(2, 3),
            expected_num_trainable_weights=2,
            expected_num_non_trainable_weights=0,
            expected_num_losses=0,
        )
