"""Evaluation: centre-crop and the paper's 10-view top-1 / top-5 accuracy.

Each replica returns sums (examples, correct, loss); they are added across
replicas and steps, so the result is exact over every example seen, however
the batches were split.
"""
import tensorflow as tf

METRIC_KEYS = ("examples", "loss_sum", "top1_correct", "top5_correct")


def batch_sums(logits_or_probs, labels, num_classes, from_probs=False):
    """Per-batch sums of the evaluation metrics.

    Args:
      logits_or_probs: (B, C) float logits (or probabilities when from_probs).
      labels: (B,) int class indices.
      num_classes: C; top-5 becomes top-C when C < 5.
      from_probs: the first argument holds probabilities (the 10-view average).

    Returns:
      dict of float32 scalars: examples, loss_sum (cross-entropy), top1_correct, top5_correct.
    """
    labels = tf.cast(labels, tf.int32)
    scores = tf.cast(logits_or_probs, tf.float32)
    if from_probs:
        picked = tf.gather(scores, labels, axis=1, batch_dims=1)
        loss = -tf.math.log(tf.maximum(picked, 1e-12))
    else:
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=scores)
    k = min(5, num_classes)
    return {
        "examples": tf.cast(tf.shape(labels)[0], tf.float32),
        "loss_sum": tf.reduce_sum(loss),
        "top1_correct": tf.reduce_sum(tf.cast(tf.math.in_top_k(labels, scores, 1), tf.float32)),
        "top5_correct": tf.reduce_sum(tf.cast(tf.math.in_top_k(labels, scores, k), tf.float32)),
    }


def ten_view_probabilities(model, views):
    """Averages the softmax of the model over views, as the paper does at test time.

    Args:
      model: a Keras model from images to logits.
      views: (B, V, S, S, 3) float images (V = 10: four corners, centre, and their mirrors).

    Returns:
      (B, C) float32 mean probabilities.
    """
    shape = tf.shape(views)
    flat = tf.reshape(views, tf.concat([[shape[0] * shape[1]], shape[2:]], axis=0))
    probs = tf.nn.softmax(tf.cast(model(flat, training=False), tf.float32))
    probs = tf.reshape(probs, [shape[0], shape[1], -1])
    return tf.reduce_mean(probs, axis=1)


def make_eval_step(strategy, model, num_classes, ten_view=False, jit_compile=False):
    """A tf.function evaluating one distributed batch, returning the metric sums over all replicas.

    Args:
      strategy: the tf.distribute strategy the model lives under.
      model: the Keras model (logits out).
      num_classes: number of classes.
      ten_view: batches hold (B, 10, S, S, 3) views to average; otherwise (B, S, S, 3).
      jit_compile: XLA-compile the replica function.

    Returns:
      A function from a distributed (images, labels) batch to a dict of float32 sums.
    """

    def replica_fn(images, labels):
        if ten_view:
            return batch_sums(ten_view_probabilities(model, images), labels, num_classes, from_probs=True)
        return batch_sums(model(images, training=False), labels, num_classes)

    if jit_compile:
        replica_fn = tf.function(replica_fn, jit_compile=True)

    @tf.function
    def step(batch):
        images, labels = batch
        sums = strategy.run(replica_fn, args=(images, labels))
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in sums.items()}

    return step


def evaluate(step_fn, dist_dataset, max_steps=0):
    """Runs step_fn over a distributed dataset and returns the accuracies.

    Args:
      step_fn: from make_eval_step.
      dist_dataset: a distributed dataset of (images, labels).
      max_steps: stop after this many batches (0 = the whole dataset).

    Returns:
      dict: examples (int), loss, top1, top5 (floats; 0 when there were no examples).
    """
    totals = {k: 0.0 for k in METRIC_KEYS}
    for i, batch in enumerate(dist_dataset):
        if max_steps and i >= max_steps:
            break
        sums = step_fn(batch)
        for k in METRIC_KEYS:
            totals[k] += float(sums[k])
    return summarize(totals)


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
