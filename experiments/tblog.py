"""TensorBoard logs for experiments: HParams records written and read back.

Layout, so TensorBoard's HParams dashboard compares the runs of an experiment:

    <logdir>/                 the experiment: hparams_config (which hparams, which metrics)
    <logdir>/<run>/           one run: its hparams values and per-epoch scalars

The readers parse the event files directly (no TensorBoard server), which is
how tests and `experiments.ablate` get figures back out of a trainer's logs.
"""
import os

import numpy as np
import tensorflow as tf
from tensorboard.plugins.hparams import api as hp
from tensorboard.plugins.hparams import metadata as hp_metadata
from tensorboard.plugins.hparams import plugin_data_pb2

from trainer import summaries

# `Summaries.writer` of the run directory itself (not a train/ or validation/ subdirectory).
RUN = ""


def _domain(values):
    values = list(values)
    if all(isinstance(v, bool) for v in values):
        return hp.Discrete([False, True])
    if all(isinstance(v, str) for v in values):
        return hp.Discrete(sorted(set(values)))
    return None  # numbers: TensorBoard infers an interval from the runs


def write_experiment_config(logdir, runs_hparams, metrics):
    """Writes the experiment-level HParams config into `logdir`.

    Args:
      logdir: the experiment's top TensorBoard directory.
      runs_hparams: list of {name: value} dicts, one per run (fixes the hparams
        shown and the domains of the string and bool ones).
      metrics: list of (tag, display_name) scalar tags that each run logs.
    """
    names = sorted({k for hparams in runs_hparams for k in hparams})
    hparams = [hp.HParam(name, _domain(h[name] for h in runs_hparams if name in h)) for name in names]
    with tf.summary.create_file_writer(logdir).as_default():
        hp.hparams_config(
            hparams=hparams, metrics=[hp.Metric(tag, display_name=display) for tag, display in metrics]
        )


class RunWriter:
    """Writes one run's HParams record and its per-epoch scalars, with the trainer's writers.

    The event files come from `trainer.summaries.Summaries`, the trainer's own writer of
    scalars, so an experiment's runs and a trainer run are written alike; only the HParams
    record differs, because the trainer's (`Summaries.hparams`) records a `TrainConfig`.

    Args:
      run_dir: the run's TensorBoard directory (`<logdir>/<run>`).
      hparams: {name: bool | int | float | str} values of this run.
      trial_id: the run's name in the HParams dashboard.
    """

    def __init__(self, run_dir, hparams, trial_id):
        self._summaries = summaries.Summaries(run_dir)
        with self._summaries.writer(RUN).as_default():
            hp.hparams(hparams, trial_id=trial_id)
        self._summaries.flush()

    def scalars(self, step, values):
        """Writes {tag: float} at `step` (the epoch, 1-based) and flushes."""
        self._summaries.scalars(RUN, values, step)
        self._summaries.flush()

    def close(self):
        self._summaries.close()


def _event_files(run_dir):
    return sorted(tf.io.gfile.glob(os.path.join(run_dir, "events.out.tfevents.*")))


def _events(run_dir):
    for path in _event_files(run_dir):
        for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
            yield tf.compat.v1.Event.FromString(record)


def read_scalars(run_dir):
    """Reads every scalar of a run's event files (both TF2 tensor and TF1 simple values).

    Args:
      run_dir: a directory holding `events.out.tfevents.*` files (not recursive).

    Returns:
      {tag: [(step, value), ...]} sorted by step; a later event at the same step
      replaces an earlier one (a resumed run rewrites its last steps).
    """
    found = {}
    for event in _events(run_dir):
        for value in event.summary.value:
            if value.HasField("simple_value"):
                number = value.simple_value
            elif value.HasField("tensor") and value.metadata.plugin_data.plugin_name in ("scalars", ""):
                array = tf.make_ndarray(value.tensor)
                if array.ndim != 0 or not np.issubdtype(array.dtype, np.number):
                    continue
                number = float(array)
            else:
                continue
            found.setdefault(value.tag, {})[int(event.step)] = float(number)
    return {tag: sorted(steps.items()) for tag, steps in found.items()}


def read_hparams(run_dir):
    """Reads the HParams records of one directory's event files.

    Args:
      run_dir: a run directory (session start info) or an experiment
        directory (experiment config).

    Returns:
      {"hparams": {name: value} or None, "trial_id": str or None,
       "config_hparams": [names] or None, "config_metrics": [tags] or None,
       "config_domains": {name: [discrete values] or None} or None,
       "config_metric_groups": [(group, tag)] or None}.
    """
    result = {
        "hparams": None, "trial_id": None, "config_hparams": None, "config_metrics": None,
        "config_domains": None, "config_metric_groups": None,
    }
    for event in _events(run_dir):
        for value in event.summary.value:
            if value.metadata.plugin_data.plugin_name != hp_metadata.PLUGIN_NAME:
                continue
            data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
            if data.HasField("session_start_info"):
                info = data.session_start_info
                result["trial_id"] = info.group_name
                result["hparams"] = {
                    name: getattr(v, v.WhichOneof("kind")) for name, v in info.hparams.items()
                }
            elif data.HasField("experiment"):
                result["config_hparams"] = [h.name for h in data.experiment.hparam_infos]
                result["config_metrics"] = [m.name.tag for m in data.experiment.metric_infos]
                result["config_domains"] = {
                    h.name: [getattr(v, v.WhichOneof("kind")) for v in h.domain_discrete.values]
                    if h.HasField("domain_discrete") else None
                    for h in data.experiment.hparam_infos
                }
                result["config_metric_groups"] = [(m.name.group, m.name.tag) for m in data.experiment.metric_infos]
    return result
