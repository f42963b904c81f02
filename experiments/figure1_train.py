"""One training run of the Figure 1 experiment: the network, one activation, one seed, to the target or the budget."""
import os
import time

import keras
import numpy as np

from experiments import tblog
from experiments.curves import epochs_to_target
from experiments.figure1_net import build_figure1_net


class EpochRecorder(keras.callbacks.Callback):
    """Records each epoch's errors, logs them to TensorBoard and stdout, and stops the run
    when its loss is not finite, it reached the target (with `stop_at_target`) or its time is up.

    Args:
      name: the run's name (`run_name`).
      writer: its `tblog.RunWriter`.
      config: the experiment's Config.
      deadline: time.time() after which no new epoch starts.
    """

    def __init__(self, name, writer, config, deadline):
        super().__init__()
        self.name, self.writer, self.config, self.deadline = name, writer, config, deadline
        self.history = {"train_error": [], "train_loss": [], "test_error": [], "seconds": []}
        self.stopped = "epochs"
        self.start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        elapsed = time.time() - self.start
        # Keras's training accuracy is the running mean over the epoch's
        # batches, the training error cuda-convnet printed for Figure 1.
        train_error = 1.0 - float(logs["accuracy"])
        test_error = 1.0 - float(logs["val_accuracy"]) if "val_accuracy" in logs else None
        for key, value in (("train_error", train_error), ("train_loss", float(logs["loss"])), ("test_error", test_error),
                           ("seconds", elapsed)):  # fmt: skip
            self.history[key].append(value)
        scalars = {"train_error": train_error, "train_loss": float(logs["loss"]), "seconds": elapsed}
        if test_error is not None:
            scalars["test_error"] = test_error
        self.writer.scalars(epoch + 1, scalars)
        print("%s epoch %d: train error %.4f, loss %.4f%s, %.1f s" % (
            self.name, epoch + 1, train_error, float(logs["loss"]),
            "" if test_error is None else ", test error %.4f" % test_error, elapsed), flush=True)  # fmt: skip
        if not np.isfinite(logs["loss"]):
            self.stopped = "loss not finite"
        elif self.config.stop_at_target and train_error <= self.config.target_error:
            self.stopped = "target reached"
        elif time.time() >= self.deadline:
            self.stopped = "time budget"
        else:
            return
        self.model.stop_training = True


def train_one(activation, seed, config, data, deadline, logdir, dataset_name, name=None):
    """Trains the Figure 1 network with one activation and seed.

    Args:
      activation: 'relu' or 'tanh'.
      seed: seed of the initial weights and of the batch order.
      config: a Config.
      data: (x_train, y_train, x_test, y_test, num_classes), images normalised.
      deadline: time.time() after which no new epoch starts.
      logdir: the experiment's TensorBoard directory; the run goes to
        logdir/<activation>_seed<seed>.
      dataset_name: recorded as an hparam.
      name: the run's name (default `run_name(activation, seed)`); the sweep adds the rate.

    Returns:
      dict with "name", "activation", "seed", "learning_rate", per-epoch "train_error", "train_loss", "test_error" (or
      None), "seconds" (cumulative), "epochs_to_target", "seconds_to_target",
      "stopped" (why training ended).
    """
    x_train, y_train, x_test, y_test, num_classes = data
    # One seed for weights and batch order: both activations start from the
    # same weights and see the same batches, so only the activation differs.
    keras.utils.set_random_seed(seed)
    model = build_figure1_net(activation, num_classes, config.image_size, config.init, seed)
    model.compile(
        optimizer=keras.optimizers.SGD(config.learning_rate, momentum=config.momentum),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    name = name or run_name(activation, seed)
    writer = tblog.RunWriter(os.path.join(logdir, name), hparams(config, activation, seed, dataset_name, len(x_train)), name)
    recorder = EpochRecorder(name, writer, config, deadline)
    try:
        model.fit(
            x_train,
            y_train,
            batch_size=config.batch_size,
            epochs=config.epochs,
            shuffle=True,
            validation_data=(x_test, y_test) if x_test is not None else None,
            callbacks=[recorder],
            verbose=0,
        )
    finally:
        writer.close()
    history = recorder.history
    reached = epochs_to_target(history["train_error"], config.target_error)
    return {
        "name": name,
        "activation": activation,
        "seed": seed,
        "learning_rate": config.learning_rate,
        **history,
        "epochs_to_target": reached,
        "seconds_to_target": history["seconds"][reached - 1] if reached else None,
        "stopped": recorder.stopped,
    }


def run_name(activation, seed, learning_rate=None):
    """The TensorBoard run (and HParams trial) name of one run; sweep runs name their rate."""
    if learning_rate is None:
        return "%s_seed%d" % (activation, seed)
    return "%s_seed%d_lr%g" % (activation, seed, learning_rate)


def hparams(config, activation, seed, dataset_name, train_examples):
    """The HParams record of one run."""
    return {
        "activation": activation,
        "learning_rate": config.learning_rate,
        "momentum": config.momentum,
        "batch_size": config.batch_size,
        "init": config.init,
        "seed": seed,
        "train_examples": train_examples,
        "target_error": config.target_error,
        "dataset": dataset_name,
    }
