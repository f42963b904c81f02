"""Checkpoints: the full training state, the last K by step, and the best by validation top-1.

The state is model weights, optimizer slots (momentum, loss scale), the global
step, completed epochs, and the learning-rate schedule's state, so a resumed
run continues exactly where the saved one stood. Works on local and gs://
directories (tf.train.CheckpointManager goes through tf.io.gfile).
"""
import json
import os

import tensorflow as tf

from trainer import config as config_lib

CONFIG_FILE = "config.json"


class TrainingState:
    """The tf.Variables a checkpoint holds besides the model and optimizer.

    Create it under the strategy's scope so the variables are mirrored.
    """

    def __init__(self):
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")  # global steps done
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")  # epochs completed (trained and validated)
        self.lr_drops = tf.Variable(0, dtype=tf.int64, trainable=False, name="lr_drops")
        self.best_top1 = tf.Variable(-1.0, dtype=tf.float64, trainable=False, name="best_top1")
        self.bad_epochs = tf.Variable(0, dtype=tf.int64, trainable=False, name="bad_epochs")


def make_checkpoint(model, optimizer, state):
    """A tf.train.Checkpoint of everything needed to resume."""
    return tf.train.Checkpoint(
        model=model,
        optimizer=optimizer,
        step=state.step,
        epoch=state.epoch,
        lr_drops=state.lr_drops,
        best_top1=state.best_top1,
        bad_epochs=state.bad_epochs,
    )


def make_managers(checkpoint, checkpoint_dir, best_dir, keep):
    """(last-K manager, best manager). Checkpoint numbers are global steps."""
    last = tf.train.CheckpointManager(checkpoint, checkpoint_dir, max_to_keep=keep, checkpoint_name="ckpt")
    best = tf.train.CheckpointManager(checkpoint, best_dir, max_to_keep=1, checkpoint_name="best")
    return last, best


def restore(checkpoint, path):
    """Restores `path` into `checkpoint`, checking every saved object found a home.

    Returns:
      The checkpoint path restored.
    """
    status = checkpoint.restore(path)
    # The model and optimizer are built before restoring, so every saved value
    # must match an existing variable; a mismatch means a different model.
    status.assert_existing_objects_matched()
    return path


def step_of(path):
    """The global step stored in a checkpoint, read without building a model."""
    return int(tf.train.load_variable(path, "step/.ATTRIBUTES/VARIABLE_VALUE"))


def read_saved_config(model_dir):
    """The dict in <model_dir>/config.json, or None."""
    path = os.path.join(model_dir, CONFIG_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path, "r") as f:
        return json.load(f)


def write_config(model_dir, config):
    """Writes <model_dir>/config.json."""
    tf.io.gfile.makedirs(model_dir)
    with tf.io.gfile.GFile(os.path.join(model_dir, CONFIG_FILE), "w") as f:
        f.write(config_lib.to_json(config))


def archive_config(model_dir, step):
    """Keeps the previous config.json as config-before-step-N.json (used with --allow_config_change)."""
    src = os.path.join(model_dir, CONFIG_FILE)
    dst = os.path.join(model_dir, "config-before-step-%d.json" % step)
    if tf.io.gfile.exists(src):
        tf.io.gfile.copy(src, dst, overwrite=True)
    return dst
