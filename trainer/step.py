"""The training step, the same under every tf.distribute strategy, and what it trains.

Keras `fit` fails under MultiWorkerMirroredStrategy in Keras 3.15
(keras-team/keras#20585), so training is `strategy.run` inside a tf.function:

  loss = mean cross-entropy over the GLOBAL batch (tf.nn.compute_average_loss)

Each replica's gradient is of its share of that loss; the optimizer sums the
replicas' gradients, which gives exactly the gradient of the global-batch loss.
The paper's coupled weight decay is in the optimizer (trainer.optimizer.PaperSGD
adds 0.0005 * w to each kernel's gradient): the same update as an L2 term in
the loss, which would square, sum and differentiate every kernel inside the
tape each step. The reported objective still includes (0.0005 / 2) * ||w||^2,
read once per step outside the tape (trainer.optimizer.l2_penalty).
"""
import keras
import numpy as np
import tensorflow as tf

import model as model_lib
from trainer import checkpoints as ckpt_lib
from trainer import config as config_lib
from trainer import datasets
from trainer import evaluate as eval_lib
from trainer import optimizer as optimizer_lib


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def build_model(config, num_classes):
    """model.build_alexnet with the config's switches (call under the strategy's scope)."""
    return model_lib.build_alexnet(
        num_classes=num_classes,
        image_size=config.image_size,
        two_tower=config.two_tower,
        activation=config.activation,
        lrn=config.lrn,
        overlapping_pool=config.overlapping_pool,
        dropout_rate=config.dropout_rate,
        weight_decay=0.0,  # applied by the optimizer (build_optimizer), the cheaper way
        init=config.init,
    )


def build_optimizer(config, learning_rate):
    """SGD with momentum and the paper's coupled weight decay, wrapped for loss scaling under float16."""
    optimizer = optimizer_lib.PaperSGD(learning_rate=learning_rate, momentum=config.momentum, l2=config.weight_decay)
    if config.mixed_precision == "float16":
        # float16 gradients underflow without loss scaling; bfloat16 has float32's range.
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def _timed_next(iterator, previous, timed=True):
    """(the next batch, seconds spent waiting for it), measured inside the step function.

    The clock starts once `previous` (the loop's carried values, which the
    previous step's updates precede) exists, so the wait of one step does not
    overlap the computation of the one before, and stops when the whole batch
    is there. With a prefetching pipeline that keeps up, the wait is the time
    to take a ready batch; an input-bound pipeline makes it the time to make one.
    Under --deterministic TensorFlow refuses its clock op (tf.timestamp is not
    deterministic), so the wait is not measured and reads 0.
    """
    if not timed:
        return next(iterator), tf.constant(0.0, tf.float64)
    with tf.control_dependencies(previous):
        start = tf.timestamp()
    with tf.control_dependencies([start]):
        batch = next(iterator)
    with tf.control_dependencies(tf.nest.flatten(batch, expand_composites=True)):
        return batch, tf.timestamp() - start


class Trainer:
    """Model, optimizer, checkpointed state and compiled step functions under one strategy.

    Args:
      config: trainer.config.TrainConfig.
      strategy: a tf.distribute strategy.
      num_classes: classes of the data set.
      global_batch_size: examples per step over all replicas.
    """

    def __init__(self, config, strategy, num_classes, global_batch_size):
        self.config = config
        self.strategy = strategy
        self.num_classes = num_classes
        self.global_batch_size = global_batch_size
        self.num_replicas = strategy.num_replicas_in_sync
        # Several processes must agree on stopping (see train_steps' `stop`).
        self.multi_process = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        if global_batch_size % self.num_replicas:
            raise ValueError(
                "expected the global batch size to be divisible by the number of replicas (%d). Received: batch_size=%d"
                % (self.num_replicas, global_batch_size)
            )
        if config.seed is not None:
            keras.utils.set_random_seed(config.seed)
        with strategy.scope():
            self.model = build_model(config, num_classes)
            self.optimizer = build_optimizer(config, config_lib.effective_learning_rate(config))
            # Build the slots now so a checkpoint restores into existing variables.
            self.optimizer.build(self.model.trainable_variables)
            self.state = ckpt_lib.TrainingState()
        self.checkpoint = ckpt_lib.make_checkpoint(self.model, self.optimizer, self.state)
        self._train_call = self._make_train_call()
        self._eval_step = eval_lib.make_eval_step(strategy, self.model, num_classes, ten_view=False, jit_compile=config.xla)

    # ----------------------------------------------------------------- steps

    def _replica_step(self, batch, step, stop):
        model, optimizer = self.model, self.optimizer
        if len(batch) == 4:
            # uint8 crops and their draws (make_dataset's finish_on_device): the
            # flips, colour noise and mean are applied here, on this replica's device.
            images, labels = datasets.finish_crops(*batch)
        else:
            images, labels = batch
        with tf.GradientTape() as tape:
            logits = tf.cast(model(images, training=True), tf.float32)
            per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(labels, tf.int32), logits=logits)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=self.global_batch_size)
            if self.config.debug_nan_at_step >= 0:
                # Test aid: poison this step's loss so the NaN stop is exercised for real
                # (the gradients and weights become NaN too, as in a real divergence).
                loss = tf.where(tf.equal(step, self.config.debug_nan_at_step), tf.constant(np.nan, tf.float32), loss)
            scaled = optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, model.trainable_variables)
        # The weight-decay term of the objective, for the report only: PaperSGD
        # applies its gradient, and it is read before this step's update.
        penalty = optimizer_lib.l2_penalty(model.trainable_variables, self.config.weight_decay)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        sums = eval_lib.batch_sums(logits, labels, self.num_classes)
        # Report the full objective (mean over the global batch, weight decay included)
        # summed over replicas: each replica's share is 1 / num_replicas of it.
        sums["objective"] = loss + tf.nn.scale_regularization_loss(penalty)
        # This process's stop request; summed over every replica of every worker.
        sums["stop"] = tf.identity(stop)  # a tensor of its own per replica (an input is not per-replica)
        return sums

    def _make_train_call(self):
        strategy = self.strategy
        replica_step = self._replica_step
        if self.config.xla:
            replica_step = tf.function(replica_step, jit_compile=True)

        @tf.function
        def train_call(iterator, first_step, num_steps, stop):
            totals = {k: tf.constant(0.0) for k in eval_lib.METRIC_KEYS + ("objective", "stop")}
            waited = tf.constant(0.0, tf.float64)
            # Several steps per call amortise the Python and dispatch overhead.
            for i in tf.range(num_steps):
                batch, wait = _timed_next(iterator, tf.nest.flatten((totals, waited)), timed=not self.config.deterministic)
                sums = strategy.run(replica_step, args=(batch, first_step + tf.cast(i, tf.int64), stop))
                # Rebind the whole dict: AutoGraph carries reassigned names through the loop.
                totals = {k: totals[k] + strategy.reduce(tf.distribute.ReduceOp.SUM, sums[k], axis=None) for k in totals}
                waited += wait
            return totals, waited

        return train_call

    def train_steps(self, iterator, num_steps, stop=False):
        """Runs num_steps training steps from a distributed iterator.

        Args:
          stop: this process wants to stop (it received SIGTERM). The requests of
            all workers are summed with the metrics, so every worker learns from
            the same call's result that one of them wants to stop, and all stop
            (and save, a collective operation) after the same step.

        Returns:
          dict of float sums: examples, loss_sum (cross-entropy), top1_correct,
          top5_correct, objective (sum over steps of the optimised loss), stop
          (> 0 when some worker asked to stop), input_wait_seconds (how long
          this process's steps blocked on the next batch; see `_timed_next`).
        """
        totals, waited = self._train_call(
            iterator,
            tf.constant(int(self.state.step.numpy()), tf.int64),
            tf.constant(num_steps, tf.int64),
            tf.constant(1.0 if stop else 0.0, tf.float32),
        )
        self.state.step.assign_add(num_steps)
        out = {k: float(v) for k, v in totals.items()}
        out["input_wait_seconds"] = float(waited)
        return out

    def evaluate(self, dist_dataset, max_steps=0):
        return eval_lib.evaluate(self._eval_step, dist_dataset, max_steps)

    def set_learning_rate(self, value):
        self.optimizer.learning_rate = float(value)

    @property
    def learning_rate(self):
        return float(keras.ops.convert_to_numpy(self.optimizer.learning_rate))
