"""TensorBoard output of a training run.

Layout under the log directory (what TensorBoard's dashboards expect):
  <log_dir>/train        scalars (per epoch and every log interval), input images,
                         weight histograms, the step-function graph, profiler traces
  <log_dir>/validation   validation scalars, under the same tags as train so the
                         two runs overlay in one chart
  <log_dir>              the HParams record of the run's config, and the experiment
                         config (`hparams_config`) that every run writes alike

Scalar tags: loss (cross-entropy, in both runs), top1_accuracy, top5_accuracy, and in
train objective (cross-entropy plus the L2 term), learning_rate, images_per_second,
input_wait_fraction (per epoch); batch/loss, batch/objective, batch/top1_accuracy,
batch/learning_rate, batch/input_wait_fraction (per log interval). The input-wait share
is trainer.progress.InputWait's.
"""
import dataclasses
import os

import keras
import numpy as np
import tensorflow as tf
from tensorboard.plugins.histogram import metadata as histogram_metadata
from tensorboard.plugins.hparams import api as hp

from trainer import config as config_lib
from trainer import visualize

TRAIN = "train"
VALIDATION = "validation"

# Config fields recorded as HParams (the ones runs are compared on).
HPARAM_FIELDS = (
    "batch_size",
    "learning_rate",
    "momentum",
    "weight_decay",
    "lr_schedule",
    "warmup_epochs",
    "image_size",
    "init",
    "two_tower",
    "activation",
    "lrn",
    "overlapping_pool",
    "dropout_rate",
    "pca_noise",
    "mixed_precision",
    "xla",
    "strategy",
    "seed",
    "epochs",
)
# The choices of the string fields, so the HParams dashboard filters on them.
_CHOICES = {
    "activation": config_lib.ACTIVATIONS,
    "init": config_lib.INITS,
    "lr_schedule": config_lib.LR_SCHEDULES,
    "mixed_precision": config_lib.MIXED_PRECISION,
    "strategy": config_lib.STRATEGIES,
}
HPARAM_METRICS = ("top1_accuracy", "top5_accuracy", "loss")


def _hparam(name):
    if name in _CHOICES:
        return hp.HParam(name, hp.Discrete(sorted(_CHOICES[name])))
    if isinstance(getattr(config_lib.TrainConfig, name), bool):
        return hp.HParam(name, hp.Discrete([False, True]))
    return hp.HParam(name)  # numbers: TensorBoard shows the range the runs span


def hparams_config():
    """Writes the experiment-level HParams config (which hparams, which metrics) to the default writer.

    Every run writes it beside its session record, and `experiments.ablate` writes
    it above its runs (`write_hparams_config`). TensorBoard shows one of the
    configs it finds, chosen by no rule, so they must be identical: this function
    is their one source.
    """
    hp.hparams_config(
        hparams=[_hparam(k) for k in sorted(HPARAM_FIELDS)],
        metrics=[hp.Metric(m, group=g, display_name="%s %s" % (g, m)) for g in (VALIDATION, TRAIN) for m in HPARAM_METRICS],
    )


def write_hparams_config(logdir):
    """`hparams_config` into its own event file in `logdir`."""
    with tf.summary.create_file_writer(logdir).as_default():
        hparams_config()


def histogram_tensor(values, buckets=30):
    """The histogram plugin's (buckets, 3) [left edge, right edge, count] float64 tensor.

    Args:
      values: array of any shape.
      buckets: number of equal-width buckets over [min, max].

    Returns:
      numpy float64 array of shape (buckets, 3).
    """
    values = np.asarray(values, np.float64 if np.asarray(values).dtype == np.float64 else np.float32).ravel()
    if values.size == 0:
        return np.zeros((0, 3), np.float64)
    counts, edges = np.histogram(values, bins=buckets)
    return np.stack([edges[:-1], edges[1:], counts.astype(np.float64)], axis=1)


class Summaries:
    """Writers for one run; every method is a no-op when `enabled` is False.

    Args:
      log_dir: the run's TensorBoard directory.
      enabled: False on non-chief workers that have no place to write.
    """

    def __init__(self, log_dir, enabled=True):
        self.log_dir = log_dir
        self.enabled = enabled
        self._writers = {}
        self._profiling = False
        self._tracing = False

    def writer(self, split):
        if split not in self._writers:
            self._writers[split] = tf.summary.create_file_writer(os.path.join(self.log_dir, split) if split else self.log_dir)
        return self._writers[split]

    def scalars(self, split, values, step):
        """Writes {tag: float} under the train or validation run at global step `step`."""
        if not self.enabled:
            return
        with self.writer(split).as_default(step=step):
            for tag, value in values.items():
                tf.summary.scalar(tag, float(value))

    def images(self, images, rgb_mean, step, tag=visualize.IMAGE_TAG):
        """A grid of augmented training inputs, drawn by trainer.visualize.make_grid.

        Args:
          images: (N, S, S, 3) float inputs as the model sees them.
          rgb_mean: the mean the pipeline subtracted (added back for display), or None.
          step: global step.
        """
        if not self.enabled:
            return
        grid = visualize.make_grid(keras.ops.convert_to_numpy(images), rgb_mean)
        with self.writer(TRAIN).as_default(step=step):
            tf.summary.image(tag, grid[np.newaxis], max_outputs=1)

    def histograms(self, model, step, buckets=30):
        """One histogram per weight (kernels and biases), e.g. conv1/kernel.

        Bucketed with numpy and written in the histogram plugin's format:
        tf.summary.histogram is far slower on fc7's 16.8M weights on a CPU
        (docs/decisions/trainer-cpu.md).
        """
        if not self.enabled:
            return
        with self.writer(TRAIN).as_default(step=step):
            for weight in model.weights:
                tf.summary.write(
                    weight.path,
                    tf.constant(histogram_tensor(keras.ops.convert_to_numpy(weight), buckets)),
                    step=step,
                    metadata=histogram_metadata.create_summary_metadata(weight.path, None),
                )

    def hparams(self, config):
        """Records the run's config for TensorBoard's HParams dashboard."""
        if not self.enabled:
            return
        values = {k: v for k, v in dataclasses.asdict(config).items() if k in HPARAM_FIELDS}
        with self.writer("").as_default():
            hparams_config()
            hp.hparams(values, trial_id=os.path.basename(os.path.normpath(os.path.dirname(self.log_dir))) or "run")

    def start_graph_trace(self):
        """Starts recording the next traced tf.function's graph (the train step)."""
        if self.enabled:
            tf.summary.trace_on(graph=True, profiler=False)
            self._tracing = True

    def stop_graph_trace(self, step):
        if self._tracing:
            with self.writer(TRAIN).as_default(step=step):
                tf.summary.trace_export(name="train_step", step=step)
            self._tracing = False

    def start_profiler(self):
        """Starts a profiler trace, shown in TensorBoard's Profile tab."""
        if self.enabled and not self._profiling:
            tf.profiler.experimental.start(os.path.join(self.log_dir, TRAIN))
            self._profiling = True

    def stop_profiler(self):
        if self._profiling:
            tf.profiler.experimental.stop()
            self._profiling = False

    def flush(self):
        for w in self._writers.values():
            w.flush()

    def close(self):
        self.stop_profiler()
        for w in self._writers.values():
            w.close()
        self._writers = {}
