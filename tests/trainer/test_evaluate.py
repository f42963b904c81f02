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


def test_evaluate_sums_every_batch_and_stops_at_max_steps():
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(), keras.layers.Dense(3)])
    images = RNG.normal(size=(10, 4, 4, 3)).astype("float32")
    labels = RNG.integers(0, 3, size=10).astype("int32")
    strategy = tf.distribute.get_strategy()
    step = eval_lib.make_eval_step(strategy, model, 3)
    ds = tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)  # 4 + 4 + 2
    logits = model(images).numpy()
    result = eval_lib.evaluate(step, strategy.experimental_distribute_dataset(ds))
    assert result["examples"] == 10
    assert result["top1"] == pytest.approx(_numpy_top_k(logits, labels, 1) / 10)
    first = eval_lib.evaluate(step, strategy.experimental_distribute_dataset(ds), max_steps=1)
    assert first["examples"] == 4
    assert first["top1"] == pytest.approx(_numpy_top_k(logits[:4], labels[:4], 1) / 4)
    assert eval_lib.summarize({k: 0.0 for k in eval_lib.METRIC_KEYS}) == {"examples": 0, "loss": 0.0, "top1": 0.0, "top5": 0.0}
