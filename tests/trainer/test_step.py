"""trainer.step.Trainer in-process: several steps per call, mixed precision, the loss it optimises."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from trainer import config as config_lib
from trainer import step

RNG = np.random.default_rng(0)
IMAGES = RNG.normal(size=(16, 67, 67, 3)).astype("float32")
LABELS = (np.arange(16) % 3).astype("int32")


def _trainer(**overrides):
    config = config_lib.TrainConfig(data_dir="unused", image_size=67, init="he", dropout_rate=0.0, seed=3, **overrides)
    return step.Trainer(config, tf.distribute.get_strategy(), num_classes=3, global_batch_size=8)


def _iterator(trainer):
    def ds(ctx):
        return tf.data.Dataset.from_tensor_slices((IMAGES, LABELS)).batch(8).repeat()

    return iter(trainer.strategy.distribute_datasets_from_function(ds))


def test_three_steps_in_one_call_equal_three_calls():
    a, b = _trainer(), _trainer()
    b.model.set_weights(a.model.get_weights())
    sums_a = a.train_steps(_iterator(a), 3)
    it = _iterator(b)
    parts = [b.train_steps(it, 1) for _ in range(3)]
    assert int(a.state.step.numpy()) == int(b.state.step.numpy()) == 3
    assert sums_a["examples"] == 24.0
    assert sums_a["objective"] == pytest.approx(sum(p["objective"] for p in parts), rel=1e-5)
    for wa, wb in zip(a.model.get_weights(), b.model.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-6)


def test_objective_is_global_mean_cross_entropy_plus_l2():
    t = _trainer()
    logits = t.model(IMAGES[:8], training=True)
    ce = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=LABELS[:8], logits=logits)).numpy()
    l2 = sum(5e-4 / 2 * float(np.sum(np.square(w))) for w in (v.numpy() for v in t.model.trainable_variables) if w.ndim > 1)
    sums = t.train_steps(_iterator(t), 1)
    assert sums["objective"] == pytest.approx(ce + l2, rel=1e-4)
    assert sums["loss_sum"] / sums["examples"] == pytest.approx(ce, rel=1e-4)


def test_float16_mixed_precision_trains_with_loss_scaling():
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        t = _trainer(mixed_precision="float16")
        assert isinstance(t.optimizer, keras.optimizers.LossScaleOptimizer)
        conv1 = t.model.get_layer("conv1")
        assert conv1.compute_dtype == "float16" and conv1.kernel.dtype == "float32"
        assert t.model.get_layer("fc8").compute_dtype == "float32"  # logits stay float32
        before = t.model.get_layer("fc8").kernel.numpy().copy()
        it = _iterator(t)
        sums = [t.train_steps(it, 1) for _ in range(3)]
        assert all(np.isfinite(s["objective"]) for s in sums)
        # Dynamic loss scaling may skip an overflowing first step, but training moves on.
        assert np.abs(t.model.get_layer("fc8").kernel.numpy() - before).max() > 0
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


@pytest.mark.parametrize("xla", [False, True])
def test_finish_in_the_step_trains_like_finished_batches(tmp_path, xla):
    # The default input path: uint8 crops and each batch's draws from tf.data;
    # the step applies datasets.finish_crops. Fed the same batches
    # finished beforehand, a trainer must end at the same weights.
    crops = RNG.integers(0, 256, size=(2, 8, 67, 67, 3), dtype=np.uint8)
    labels = LABELS.reshape(2, 8)
    flips = np.array([[True, False] * 4, [False, True] * 4])
    offsets = RNG.normal(scale=0.1, size=(2, 8, 3)).astype("float32")
    raw = tf.data.Dataset.from_tensor_slices((crops, labels, flips, offsets))
    # numpy reference of the finish: mirror, scale, offset.
    finished = np.where(flips[..., None, None, None], crops[:, :, :, ::-1], crops) / np.float32(255.0)
    finished = (finished + offsets[:, :, None, None, :]).astype("float32")
    ready = tf.data.Dataset.from_tensor_slices((finished, labels))
    on_step, given, untrained = _trainer(xla=xla), _trainer(xla=xla), _trainer(xla=xla)
    given.model.set_weights(on_step.model.get_weights())
    untrained.model.set_weights(on_step.model.get_weights())
    on_step.train_steps(iter(on_step.strategy.distribute_datasets_from_function(lambda ctx: raw)), 2)
    given.train_steps(iter(given.strategy.distribute_datasets_from_function(lambda ctx: ready)), 2)
    # Float rounding only (XLA fuses the scale and offset its own way); one
    # image mirrored the wrong way would move the weights by far more.
    for wa, wb in zip(on_step.model.get_weights(), given.model.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-3, atol=2e-4)
    moved = on_step.model.get_layer("fc8").kernel.numpy() - untrained.model.get_layer("fc8").kernel.numpy()
    assert np.abs(moved).max() > 1e-4
