"""trainer.evaluate: top-1 / top-5 sums against numpy, the 10-view average, and evaluate over batches."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from trainer import evaluate as eval_lib

RNG = np.random.default_rng(5)


def _numpy_top_k(scores, labels, k):
    """Examples whose label is among the k highest scores (ties do not occur with random floats)."""
    top = np.argsort(-scores, axis=1)[:, :k]
    return float(sum(label in row for row, label in zip(top, labels)))


def test_batch_sums_match_numpy_top_k_and_cross_entropy():
    logits = RNG.normal(size=(32, 7)).astype("float32")
    labels = RNG.integers(0, 7, size=32)
    sums = {k: float(v) for k, v in eval_lib.batch_sums(logits, labels, 7).items()}
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    assert sums["examples"] == 32
    assert sums["top1_correct"] == _numpy_top_k(logits, labels, 1)
    assert sums["top5_correct"] == _numpy_top_k(logits, labels, 5)
    assert sums["loss_sum"] == pytest.approx(-log_softmax[np.arange(32), labels].sum(), rel=1e-5)
    # Fewer than 5 classes: top-5 is top-C, so every example counts.
    few = eval_lib.batch_sums(logits[:, :3], labels % 3, 3)
    assert float(few["top5_correct"]) == 32


def test_probabilities_give_the_same_counts_and_their_log_loss():
    logits = RNG.normal(size=(16, 6)).astype("float32")
    labels = RNG.integers(0, 6, size=16)
    probs = tf.nn.softmax(logits).numpy()
    from_logits = eval_lib.batch_sums(logits, labels, 6)
    from_probs = eval_lib.batch_sums(probs, labels, 6, from_probs=True)
    for key in ("examples", "top1_correct", "top5_correct"):
        assert float(from_probs[key]) == float(from_logits[key])
    assert float(from_probs["loss_sum"]) == pytest.approx(float(from_logits["loss_sum"]), rel=1e-4)


def test_ten_view_probabilities_average_the_softmax_over_views():
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(), keras.layers.Dense(5)])
    views = RNG.normal(size=(2, 10, 4, 4, 3)).astype("float32")
    got = eval_lib.ten_view_probabilities(model, tf.constant(views)).numpy()
    per_view = tf.nn.softmax(model(views.reshape(20, 4, 4, 3))).numpy().reshape(2, 10, 5)
    np.testing.assert_allclose(got, per_view.mean(axis=1), rtol=1e-5, atol=1e-7)


def test_padding_weighs_nothing_in_the_sums():
    logits = RNG.normal(size=(6, 7)).astype("float32")
    labels = RNG.integers(0, 7, size=6)
    weights = np.array([1, 1, 1, 1, 0, 0], np.float32)
    padded = {k: float(v) for k, v in eval_lib.batch_sums(logits, labels, 7, weights=weights).items()}
    real = {k: float(v) for k, v in eval_lib.batch_sums(logits[:4], labels[:4], 7).items()}
    assert padded["examples"] == 4
    for key in eval_lib.METRIC_KEYS:
        assert padded[key] == pytest.approx(real[key], rel=1e-6)


def test_fixed_batches_pad_the_last_batch_then_send_padding_without_end():
    images = np.arange(10 * 2 * 2 * 3, dtype=np.float32).reshape(10, 2, 2, 3)
    labels = np.arange(10, dtype=np.int32)
    ds = eval_lib.fixed_batches(tf.data.Dataset.from_tensor_slices((images, labels)).batch(4), 4)  # 4 + 4 + 2
    # Static shapes: what a TPU needs, and what every replica gets.
    assert ds.element_spec[0][0].shape == (4, 2, 2, 3) and ds.element_spec[1].shape == (4,)
    got = list(ds.take(5).as_numpy_iterator())
    weights = np.stack([w for _, w in got])
    np.testing.assert_array_equal(weights, [[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(np.concatenate([b[1] for b, _ in got[:3]])[:10], labels)
    np.testing.assert_array_equal(got[2][0][0][:2], images[8:])
    assert not got[2][0][0][2:].any() and not got[4][0][0].any()


def test_ten_views_of_uint8_crops_finish_one_view_at_a_time_as_the_float_views():
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(), keras.layers.Dense(5)])
    crops = RNG.integers(0, 256, size=(2, 10, 4, 4, 3)).astype("uint8")
    offsets = np.broadcast_to(-np.float32([0.5, 0.4, 0.3]), (2, 10, 3))
    flips = np.zeros((2, 10), bool)
    from_uint8 = eval_lib.ten_view_probabilities(model, crops, flips, offsets).numpy()
    as_float = crops.astype(np.float32) / 255.0 + offsets[:, :, None, None, :]
    np.testing.assert_allclose(from_uint8, eval_lib.ten_view_probabilities(model, as_float).numpy(), rtol=1e-5, atol=1e-7)


def _fixed(images, labels, batch):
    return eval_lib.fixed_batches(tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch), batch)


def test_evaluate_counts_every_example_once_and_stops_at_max_steps():
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(), keras.layers.Dense(3)])
    images = RNG.normal(size=(10, 4, 4, 3)).astype("float32")
    labels = RNG.integers(0, 3, size=10).astype("int32")
    strategy = tf.distribute.get_strategy()
    step = eval_lib.make_eval_step(strategy, model, 3)
    logits = model(images).numpy()
    result = eval_lib.evaluate(step, strategy.experimental_distribute_dataset(_fixed(images, labels, 4)))
    assert result["examples"] == 10
    assert result["top1"] == pytest.approx(_numpy_top_k(logits, labels, 1) / 10)
    first = eval_lib.evaluate(step, strategy.experimental_distribute_dataset(_fixed(images, labels, 4)), max_steps=1)
    assert first["examples"] == 4
    assert first["top1"] == pytest.approx(_numpy_top_k(logits[:4], labels[:4], 1) / 4)
    # 8 examples in batches of 4: the third batch is all padding, and the one step that sees it ends the pass.
    calls = []
    counted = lambda element: calls.append(1) or step(element)  # noqa: E731
    even = eval_lib.evaluate(counted, strategy.experimental_distribute_dataset(_fixed(images[:8], labels[:8], 4)))
    assert even["examples"] == 8 and len(calls) == 3
    assert eval_lib.summarize({k: 0.0 for k in eval_lib.METRIC_KEYS}) == {"examples": 0, "loss": 0.0, "top1": 0.0, "top5": 0.0}


def test_outcomes_of_the_real_examples():
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(), keras.layers.Dense(7)])
    images = RNG.normal(size=(11, 4, 4, 3)).astype("float32")
    labels = RNG.integers(0, 7, size=11).astype("int32")
    strategy = tf.distribute.get_strategy()
    step = eval_lib.make_eval_step(strategy, model, 7, per_example=True)
    result, rows = eval_lib.evaluate_with_outcomes(step, strategy.experimental_distribute_dataset(_fixed(images, labels, 4)))
    logits = model(images).numpy()
    top5 = np.argsort(-logits, axis=1)[:, :5]
    assert rows.shape == (11, len(eval_lib.OUTCOME_COLUMNS)) and result["examples"] == 11
    np.testing.assert_array_equal(rows[:, 0], labels)
    np.testing.assert_array_equal(rows[:, 1], logits.argmax(axis=1))
    np.testing.assert_array_equal(rows[:, 2], [label in row for row, label in zip(top5, labels)])
    np.testing.assert_array_equal(rows[:, 3], 1)
    assert result["top1"] == pytest.approx(np.mean(rows[:, 0] == rows[:, 1]))
