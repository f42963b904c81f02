"""Evaluation: centre-crop and the paper's 10-view top-1 / top-5 accuracy, under any strategy.

Every replica computes on batches of one fixed shape: `fixed_batches` pads an
input pipeline's last batch and then sends padding without end, each example
with a weight (1 real, 0 padding), so no replica ever gets an empty batch (the
oneDNN `Conv2D` of TensorFlow 2.21 returns its input for one, and a TPU needs
static shapes). Each replica returns weighted sums (examples, correct, loss);
they are added across replicas and steps, so every real example counts once
however the examples were split over workers, replicas, shards and batches.
`evaluate` stops after the first step in which no replica's batch held a
real example: by then every pipeline has given all its examples.

The 10 views of a batch go through the model one view at a time (a batch of
B crops, as in centre-crop evaluation), not as one batch of 10 * B, so the
peak memory of 10-view evaluation stays near that of centre-crop evaluation
(docs/results/eval-memory.md).
"""
import numpy as np
import tensorflow as tf

from trainer import augment

METRIC_KEYS = ("examples", "loss_sum", "top1_correct", "top5_correct")
# The columns of the per-example outcomes `make_eval_step(per_example=True)` gathers.
OUTCOME_COLUMNS = ("label", "prediction", "in_top5", "weight")


def batch_sums(logits_or_probs, labels, num_classes, from_probs=False, weights=None):
    """Per-batch sums of the evaluation metrics.

    Args:
      logits_or_probs: (B, C) float logits (or probabilities when from_probs).
      labels: (B,) int class indices.
      num_classes: C; top-5 becomes top-C when C < 5.
      from_probs: the first argument holds probabilities (the 10-view average).
      weights: (B,) float weight of each example (0 for padding); None for all 1.

    Returns:
      dict of float32 scalars: examples (the sum of the weights), loss_sum
      (cross-entropy), top1_correct, top5_correct, each weighted.
    """
    labels = tf.cast(labels, tf.int32)
    scores = tf.cast(logits_or_probs, tf.float32)
    if from_probs:
        picked = tf.gather(scores, labels, axis=1, batch_dims=1)
        loss = -tf.math.log(tf.maximum(picked, 1e-12))
    else:
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=scores)
    weights = tf.ones_like(loss) if weights is None else tf.cast(weights, tf.float32)
    k = min(5, num_classes)
    return {
        "examples": tf.reduce_sum(weights),
        "loss_sum": tf.reduce_sum(weights * loss),
        "top1_correct": tf.reduce_sum(weights * tf.cast(tf.math.in_top_k(labels, scores, 1), tf.float32)),
        "top5_correct": tf.reduce_sum(weights * tf.cast(tf.math.in_top_k(labels, scores, k), tf.float32)),
    }


def outcomes(scores, labels, weights, num_classes):
    """(B, 4) int32 rows of OUTCOME_COLUMNS: label, top-1 prediction, label in the top 5, weight."""
    labels = tf.cast(labels, tf.int32)
    scores = tf.cast(scores, tf.float32)
    prediction = tf.argmax(scores, axis=1, output_type=tf.int32)
    in_top5 = tf.cast(tf.math.in_top_k(labels, scores, min(5, num_classes)), tf.int32)
    return tf.stack([labels, prediction, in_top5, tf.cast(weights > 0, tf.int32)], axis=1)


def fixed_batches(ds, batch_size):
    """An evaluation dataset as batches of exactly `batch_size`, each example weighted, without end.

    Args:
      ds: finite batches (a tuple of tensors, batch first; the last batch may be
        smaller), e.g. make_dataset(training=False) of one input pipeline.
      batch_size: the batch of this pipeline (its replica's share of the global batch).

    Returns:
      A dataset of (batch, weights): `batch` the tuple of `ds` padded with zeros to
      `batch_size` (static shapes), weights float32 (batch_size,) with 1 for real
      examples and 0 for padding; after the last real batch, all-padding batches forever.
    """

    def pad(*batch):
        n = tf.shape(batch[0])[0]
        padded = tuple(_pad_to(x, batch_size) for x in batch)
        weights = tf.concat([tf.ones([n], tf.float32), tf.zeros([batch_size - n], tf.float32)], axis=0)
        return padded, tf.ensure_shape(weights, [batch_size])

    real = ds.map(pad)
    spec = real.element_spec
    # One batch of zeros, made once by a map (a (B, 10, S, S, 3) constant would sit in
    # the graph) and cached: however many of it are prefetched share its buffer.
    filler = (
        tf.data.Dataset.from_tensors(0)
        .map(lambda _: tf.nest.map_structure(lambda s: tf.zeros(s.shape, s.dtype), spec))
        .cache()
        .repeat()
    )
    return real.concatenate(filler)


def _pad_to(x, size):
    n = tf.shape(x)[0]
    # Only the last batch is padded: a full one passes through without a copy.
    padded = tf.cond(
        tf.equal(n, size), lambda: tf.identity(x), lambda: tf.pad(x, [[0, size - n]] + [[0, 0]] * (len(x.shape) - 1))
    )
    return tf.ensure_shape(padded, [size] + x.shape.as_list()[1:])


def ten_view_probabilities(model, views, flips=None, offsets=None):
    """Averages the softmax of the model over views, as the paper does at test time, one view at a time.

    Args:
      model: a Keras model from images to logits.
      views: (B, V, S, S, 3) images (V = 10: four corners, centre, and their mirrors):
        float, or uint8 crops finished here with `flips` and `offsets`.
      flips, offsets: with uint8 views, their (B, V) bool and (B, V, 3) float32
        draws (make_dataset(finish_on_device=True)); None for float views.

    Returns:
      (B, C) float32 mean probabilities.
    """
    views = tf.convert_to_tensor(views)
    num_views = views.shape[1]

    def view_probs(v, after=()):
        with tf.control_dependencies(after):
            crops = tf.gather(views, v, axis=1)
        if flips is not None:
            crops = augment.apply_draws(crops, tf.gather(flips, v, axis=1), tf.gather(offsets, v, axis=1))
        return tf.nn.softmax(tf.cast(model(crops, training=False), tf.float32))

    # One view at a time, in order: each view starts after the previous one's
    # probabilities exist (parallel_iterations=1 and the control dependency);
    # views run concurrently would hold the activations of all of them at once.
    _, total = tf.while_loop(
        lambda v, _: v < num_views,
        lambda v, total: (v + 1, total + view_probs(v, after=[total])),
        (tf.constant(1), view_probs(tf.constant(0))),
        parallel_iterations=1,
    )
    return total / float(num_views)


def make_eval_step(strategy, model, num_classes, ten_view=False, jit_compile=False, per_example=False):
    """A tf.function evaluating one distributed batch of `fixed_batches`, returning sums over all replicas.

    Args:
      strategy: the tf.distribute strategy the model lives under.
      model: the Keras model (logits out).
      num_classes: number of classes.
      ten_view: batches hold (B, 10, S, S, 3) views to average; otherwise (B, S, S, 3).
        Either may be float images, or uint8 crops with their draws (4-tuples).
      jit_compile: XLA-compile the replica function.
      per_example: also gather every replica's per-example outcomes (`outcomes`).

    Returns:
      A function from a distributed (batch, weights) element to a dict of float32 sums
      (METRIC_KEYS and real_batches: the replicas whose batch held a real example), and
      with per_example "outcomes": (global batch, 4) int32.
    """

    def replica_fn(batch, weights):
        labels = batch[1]
        if ten_view:
            scores = ten_view_probabilities(model, batch[0], *batch[2:4])
        else:
            images = augment.apply_draws(batch[0], batch[2], batch[3]) if len(batch) == 4 else batch[0]
            scores = model(images, training=False)
        sums = batch_sums(scores, labels, num_classes, from_probs=ten_view, weights=weights)
        sums["real_batches"] = tf.cast(tf.reduce_max(weights) > 0, tf.float32)
        if per_example:
            sums["outcomes"] = outcomes(scores, labels, weights, num_classes)
        return sums

    if jit_compile:
        replica_fn = tf.function(replica_fn, jit_compile=True)

    @tf.function
    def step(element):
        batch, weights = element
        per_replica = strategy.run(replica_fn, args=(batch, weights))
        out = {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in per_replica.items() if k != "outcomes"}
        if per_example:
            out["outcomes"] = strategy.gather(per_replica["outcomes"], axis=0)
        return out

    return step


def evaluate(step_fn, dist_dataset, max_steps=0):
    """Runs step_fn over a distributed dataset of `fixed_batches` and returns the accuracies.

    Args:
      step_fn: from make_eval_step.
      dist_dataset: a distributed dataset of fixed_batches elements.
      max_steps: stop after this many steps (0 = every example).

    Returns:
      dict: examples (int), loss, top1, top5 (floats; 0 when there were no examples).
    """
    return evaluate_with_outcomes(step_fn, dist_dataset, max_steps)[0]


def evaluate_with_outcomes(step_fn, dist_dataset, max_steps=0):
    """`evaluate`, and the real examples' outcomes when step_fn gathers them.

    Returns:
      (the dict of `evaluate`, (N, 4) int32 rows of OUTCOME_COLUMNS of the N real
      examples, or None when step_fn was built without per_example).
    """
    totals = {k: 0.0 for k in METRIC_KEYS}
    rows = []
    iterator = iter(dist_dataset)
    steps = 0
    while not max_steps or steps < max_steps:
        out = step_fn(next(iterator))
        steps += 1
        for k in METRIC_KEYS:
            totals[k] += float(out[k])
        if "outcomes" in out:
            rows.append(out["outcomes"].numpy())
        # No replica had a real example: every pipeline is past its last one. (A part batch
        # alone does not tell: --skip_corrupt can end a batch early in mid-stream.)
        if float(out["real_batches"]) == 0:
            break
    if not rows:
        return summarize(totals), None
    table = np.concatenate(rows)
    return summarize(totals), table[table[:, OUTCOME_COLUMNS.index("weight")] > 0]


def summarize(totals):
    """Metric sums -> {examples, loss, top1, top5}."""
    n = totals["examples"]
    if n <= 0:
        return {"examples": 0, "loss": 0.0, "top1": 0.0, "top5": 0.0}
    return {
        "examples": int(round(n)),
        "loss": totals["loss_sum"] / n,
        "top1": totals["top1_correct"] / n,
        "top5": totals["top5_correct"] / n,
    }
