"""The custom training loop, the same under every tf.distribute strategy.

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

An epoch is `steps_per_epoch` steps of an endlessly repeated training set,
followed by validation, the learning-rate schedule, TensorBoard summaries and a
checkpoint. A run killed mid-epoch restarts at its last checkpoint's step and
runs only the steps that epoch still lacks (the data order after a resume is
a fresh shuffle, not a replay).
"""
import dataclasses
import json
import math
import os
import signal
import sys
import time

import keras
import numpy as np
import tensorflow as tf

import model as model_lib
from trainer import checkpoints as ckpt_lib
from trainer import config as config_lib
from trainer import cpu as cpu_lib
from trainer import evaluate as eval_lib
from trainer import input_pipeline
from trainer import optimizer as optimizer_lib
from trainer import schedules


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclasses.dataclass
class EpochResult:
    epoch: int
    step: int
    train: dict
    validation: dict
    learning_rate: float
    images_per_second: float


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
            images, labels = input_pipeline.finish_crops(*batch)
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
            # Several steps per call amortise the Python and dispatch overhead.
            for i in tf.range(num_steps):
                batch = next(iterator)
                sums = strategy.run(replica_step, args=(batch, first_step + tf.cast(i, tf.int64), stop))
                # Rebind the whole dict: AutoGraph carries reassigned names through the loop.
                totals = {k: totals[k] + strategy.reduce(tf.distribute.ReduceOp.SUM, sums[k], axis=None) for k in totals}
            return totals

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
          (> 0 when some worker asked to stop).
        """
        totals = self._train_call(
            iterator,
            tf.constant(int(self.state.step.numpy()), tf.int64),
            tf.constant(num_steps, tf.int64),
            tf.constant(1.0 if stop else 0.0, tf.float32),
        )
        self.state.step.assign_add(num_steps)
        return {k: float(v) for k, v in totals.items()}

    def evaluate(self, dist_dataset, max_steps=0):
        return eval_lib.evaluate(self._eval_step, dist_dataset, max_steps)

    def set_learning_rate(self, value):
        self.optimizer.learning_rate = float(value)

    @property
    def learning_rate(self):
        return float(keras.ops.convert_to_numpy(self.optimizer.learning_rate))


class _SigtermFlag:
    """Turns SIGTERM (what preemption sends) into a flag the loop checks between calls."""

    def __init__(self):
        self.received = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread (e.g. an embedding app): no handler, no flag
            self._previous = None
        return self

    def _handle(self, signum, frame):
        self.received = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
        return False


class Progress:
    """A Keras progress bar on a terminal; plain log lines every `every` steps otherwise."""

    def __init__(self, epoch, epochs, steps, every, done=0, stream=None):
        self.stream = stream or sys.stdout
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.epoch, self.epochs, self.steps, self.every = epoch, epochs, steps, max(1, every)
        resuming = " (resuming after step %d of this epoch)" % done if done else ""
        print("epoch %d/%d: %d steps%s" % (epoch + 1, epochs, steps, resuming), file=self.stream, flush=True)
        self._bar = None
        if self.tty:
            self._bar = keras.utils.Progbar(steps, stateful_metrics=["loss", "objective", "top1", "lr"])
            if done:
                self._bar.update(done)

    def update(self, done, values, last_logged):
        if self._bar is not None:
            self._bar.update(done, values=list(values.items()))
            return done
        if done - last_logged >= self.every or done == self.steps:
            text = " ".join("%s=%.4g" % kv for kv in values.items())
            print("epoch %d/%d step %d/%d %s" % (self.epoch + 1, self.epochs, done, self.steps, text), file=self.stream, flush=True)
            return done
        return last_logged


def fit(trainer, config, train_dataset, val_dataset, steps_per_epoch, managers, summaries, log=print, sample_images=None, rgb_mean=None):
    """Trains to config.epochs, resuming from the trainer's restored state.

    Args:
      trainer: a Trainer (state already restored when resuming).
      config: TrainConfig.
      train_dataset: distributed, endlessly repeated training dataset.
      val_dataset: callable returning a fresh distributed validation dataset.
      steps_per_epoch: training steps per epoch.
      managers: (last, best) tf.train.CheckpointManager.
      summaries: trainer.summaries.Summaries.
      log: print-like function for progress lines.
      sample_images: optional (B, S, S, 3) augmented inputs for the TensorBoard image grid.
      rgb_mean: the mean subtracted from those inputs (added back for display).

    Returns:
      dict with the final state: step, epoch, best_top1, last EpochResult (or None),
      and status 'completed' or 'preempted'.

    Raises:
      TrainingDiverged: on a NaN or infinite loss (nothing is saved after it).
    """
    last_manager, best_manager = managers
    state = trainer.state
    peak_lr = config_lib.effective_learning_rate(config)
    profile = config_lib.parse_profile_steps(config.profile_steps)
    iterator = iter(train_dataset)
    step = int(state.step.numpy())
    epoch = int(state.epoch.numpy())
    plateau = schedules.PlateauState(drops=int(state.lr_drops.numpy()), best_top1=float(state.best_top1.numpy()), bad_epochs=int(state.bad_epochs.numpy()))
    last_result = None
    if sample_images is not None and step == 0:
        summaries.images(sample_images, rgb_mean, step=0)
    with _SigtermFlag() as sigterm:
        while epoch < config.epochs:
            epoch_end = (epoch + 1) * steps_per_epoch
            done_in_epoch = step - epoch * steps_per_epoch
            drops = plateau.drops if config.lr_schedule == "plateau" else schedules.step_drops(epoch, config.lr_step_epochs, config.max_lr_drops)
            progress = Progress(epoch, config.epochs, steps_per_epoch, config.log_every_steps, done=done_in_epoch)
            totals = {k: 0.0 for k in eval_lib.METRIC_KEYS + ("objective",)}
            steps_run = 0
            last_logged = done_in_epoch
            start = time.time()
            first_call = True
            # Set before the loop too: a run resumed exactly at an epoch's end runs no step of it.
            lr = schedules.learning_rate_at(step, steps_per_epoch, peak_lr, config.warmup_epochs, drops)
            while step < epoch_end:
                n = min(config.steps_per_call, epoch_end - step)
                if profile and profile[0] - 1 <= step < profile[1]:
                    summaries.start_profiler()
                lr = schedules.learning_rate_at(step, steps_per_epoch, peak_lr, config.warmup_epochs, drops)
                trainer.set_learning_rate(lr)
                trace = first_call and step == 0
                if trace:
                    summaries.start_graph_trace()
                sums = trainer.train_steps(iterator, n, stop=sigterm.received)
                if trace:
                    summaries.stop_graph_trace(step=0)
                first_call = False
                prev_step, step = step, step + n
                if profile and step >= profile[1]:
                    summaries.stop_profiler()
                if not math.isfinite(sums["objective"]):
                    summaries.close()
                    raise TrainingDiverged(
                        "loss is %s at global step %d (epoch %d, learning rate %.3g); stopped without saving. "
                        "The last good checkpoint is %s. Lower --learning_rate, use --warmup_epochs, or check the data."
                        % (sums["objective"], step, epoch + 1, lr, last_manager.latest_checkpoint or "none (no checkpoint was saved yet)")
                    )
                for k in totals:
                    totals[k] += sums[k]
                steps_run += n
                running = eval_lib.summarize(totals)
                # "loss" is the cross-entropy, as in validation; "objective" adds the L2 term.
                values = {"loss": running["loss"], "objective": totals["objective"] / steps_run, "top1": running["top1"], "lr": lr}
                new_logged = progress.update(step - epoch * steps_per_epoch, values, last_logged)
                if new_logged != last_logged:
                    summaries.scalars(
                        "train",
                        {"batch/loss": values["loss"], "batch/objective": values["objective"], "batch/top1_accuracy": values["top1"], "batch/learning_rate": lr},
                        step,
                    )
                    last_logged = new_logged
                # (At the epoch's last step the epoch-end save below comes right after validation.)
                if config.checkpoint_every_steps and step < epoch_end and step // config.checkpoint_every_steps > prev_step // config.checkpoint_every_steps:
                    _save(trainer, last_manager, plateau)
                # One process alone stops as soon as it sees the signal; workers stop
                # when the step's all-reduced totals say one of them received it.
                if sums["stop"] > 0 or (sigterm.received and not trainer.multi_process):
                    path = _save(trainer, last_manager, plateau)
                    who = "SIGTERM received" if sigterm.received else "SIGTERM received by another worker"
                    log("%s: saved checkpoint %s at step %d; rerun the same command to resume." % (who, path, step))
                    summaries.close()
                    return {"status": "preempted", "step": step, "epoch": epoch, "best_top1": plateau.best_top1, "last": last_result}
            elapsed = max(time.time() - start, 1e-9)
            images_per_second = totals["examples"] / elapsed if steps_run else 0.0
            train_metrics = eval_lib.summarize(totals)
            train_metrics["objective"] = totals["objective"] / steps_run if steps_run else 0.0
            validation = trainer.evaluate(val_dataset(), config.val_steps)
            improved = validation["examples"] > 0 and validation["top1"] > plateau.best_top1
            if config.lr_schedule == "plateau":
                plateau, dropped = schedules.plateau_update(plateau, validation["top1"], config.plateau_patience, config.max_lr_drops)
                if dropped:
                    log("validation top-1 stopped improving: learning rate divided by 10 (drop %d of at most %d)" % (plateau.drops, config.max_lr_drops))
            else:
                plateau = dataclasses.replace(plateau, best_top1=max(plateau.best_top1, validation["top1"]))
            epoch += 1
            state.epoch.assign(epoch)
            last_result = EpochResult(epoch, step, train_metrics, validation, lr, images_per_second)
            summaries.scalars(
                "train",
                {"loss": train_metrics["loss"], "objective": train_metrics["objective"], "top1_accuracy": train_metrics["top1"], "top5_accuracy": train_metrics["top5"], "learning_rate": lr, "images_per_second": images_per_second},
                step,
            )
            summaries.scalars("validation", {"loss": validation["loss"], "top1_accuracy": validation["top1"], "top5_accuracy": validation["top5"]}, step)
            summaries.histograms(trainer.model, step)
            summaries.flush()
            log(
                "epoch %d/%d step %d: train loss %.4f (objective %.4f) top-1 %.4f top-5 %.4f | validation loss %.4f top-1 %.4f top-5 %.4f (%d examples) | lr %.3g | %.1f images/s"
                % (epoch, config.epochs, step, train_metrics["loss"], train_metrics["objective"], train_metrics["top1"], train_metrics["top5"], validation["loss"], validation["top1"], validation["top5"], validation["examples"], lr, images_per_second)
            )
            _save(trainer, last_manager, plateau)
            if improved:
                best_manager.save(checkpoint_number=step)
    summaries.stop_profiler()
    return {"status": "completed", "step": step, "epoch": epoch, "best_top1": plateau.best_top1, "last": last_result}


def _save(trainer, manager, plateau):
    state = trainer.state
    state.lr_drops.assign(plateau.drops)
    state.best_top1.assign(plateau.best_top1)
    state.bad_epochs.assign(plateau.bad_epochs)
    return manager.save(checkpoint_number=int(state.step.numpy()))


# --------------------------------------------------------------------- the job


class RunError(ValueError):
    """A user mistake found while setting up the run (bad data dir, config clash, no checkpoint)."""


def _ensure_demo_data(config, log):
    """Builds the demo data set with preprocessing.build_tfrecords if it is not there yet."""
    from preprocessing import schema

    if schema.load_metadata(config.data_dir) is not None:
        log("demo data: using %s" % config.data_dir)
        return
    from preprocessing import build_tfrecords

    argv = ["--demo", "--output_dir", config.data_dir, "--image_size", str(config_lib.DEMO_STORED_SIZE)]
    if config.demo_train_per_class:
        argv += ["--demo_train_per_class", str(config.demo_train_per_class)]
    if config.demo_val_per_class:
        argv += ["--demo_val_per_class", str(config.demo_val_per_class)]
    if tf.io.gfile.exists(config.data_dir) and tf.io.gfile.listdir(config.data_dir):
        # No metadata.json but files: an interrupted demo build (metadata is written
        # last). The builder's --overwrite replaces only its own files.
        log("demo data: %s has no %s (an interrupted build?); rebuilding it" % (config.data_dir, schema.METADATA_FILE))
        argv.append("--overwrite")
    log("demo data: building %s (python -m preprocessing.build_tfrecords %s)" % (config.data_dir, " ".join(argv)))
    try:
        build_tfrecords.run(argv)
    except SystemExit as err:  # the builder's own user-error exit, after its message on stderr
        raise RunError("building the demo data set in %s failed (exit code %s)" % (config.data_dir, err.code)) from err
    if schema.load_metadata(config.data_dir) is None:
        raise RunError("building the demo data set in %s wrote no %s" % (config.data_dir, schema.METADATA_FILE))


def _check_config(config, model_dir, latest, chief, log):
    """Compares this run's config with the saved config.json when resuming.

    Only the chief reads and writes it: another worker could read the file
    while the chief is writing it.

    Returns:
      A function that archives the old config.json (when an allowed change
      replaces it) and writes this run's; called once the checkpoint restored,
      so a run that cannot resume leaves the model directory as it was.
    """
    if not chief:
        return lambda: None
    archive = False
    saved = ckpt_lib.read_saved_config(model_dir)
    if saved is not None:
        diffs = config_lib.config_differences(saved, config)
        if diffs:
            text = "; ".join("%s: saved %r, now %r" % d for d in diffs)
            if not config.allow_config_change:
                raise RunError(
                    "%s/config.json differs from this run's config (%s). Use the saved flags, another --model_dir, "
                    "or --allow_config_change to continue anyway." % (model_dir, text)
                )
            log("config changed on resume (allowed): %s" % text)
            archive = True
    elif latest and not config.allow_config_change:
        raise RunError("%s has checkpoints but no config.json; cannot check the config. Use --allow_config_change to resume anyway." % model_dir)

    def write():
        if archive:
            ckpt_lib.archive_config(model_dir, ckpt_lib.step_of(latest) if latest else 0)
        ckpt_lib.write_config(model_dir, config)

    return write


def _restore(trainer, path, hint=""):
    """Restores a checkpoint into the trainer; RunError when it does not fit the model."""
    try:
        ckpt_lib.restore(trainer.checkpoint, path)
    except (tf.errors.OpError, AssertionError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RunError("cannot restore %s into this model (%s)%s" % (path, first, hint)) from err


def _data_info(config):
    try:
        return input_pipeline.read_data_info(
            config.data_dir,
            label_offset=None if config.label_offset < 0 else config.label_offset,
            num_classes=config.num_classes or None,
        )
    except (ValueError, FileNotFoundError) as err:
        raise RunError(str(err)) from err


def _check_shards(config):
    """RunError unless the splits this run reads have shards (validation always, train unless --eval_only).

    Checked before anything is built: validation is first read after the first
    epoch, and a missing split should not cost an epoch and end in a traceback.
    """
    for split in ("validation",) if config.eval_only else ("train", "validation"):
        try:
            input_pipeline.list_shards(config.data_dir, split)
        except (ValueError, FileNotFoundError, tf.errors.OpError) as err:
            raise RunError("no %s data: %s" % (split, err)) from err


def _make_datasets(config, strategy, info, seed, train=True):
    """(distributed endless training dataset or None when not `train`,
    function returning a distributed validation dataset)."""

    def dataset_fn(split, ctx, **options):
        return input_pipeline.make_dataset(
            config.data_dir,
            split,
            config.batch_size,
            image_size=config.image_size,
            info=info,
            input_context=ctx,
            skip_corrupt=config.skip_corrupt,
            **options,
        )

    def train_fn(ctx):
        return dataset_fn(
            "train", ctx, training=True, seed=seed, pca_noise=config.pca_noise, finish_on_device=not config.augment_on_host
        )

    def validation(ten_crop=False):
        return strategy.distribute_datasets_from_function(
            lambda ctx: dataset_fn("validation", ctx, training=False, ten_crop=ten_crop)
        )

    try:
        train_dataset = strategy.distribute_datasets_from_function(train_fn) if train else None
        # Built once now so a problem with the validation shards (e.g. fewer shards
        # than workers) is a RunError here, not a traceback after the first epoch.
        validation()
    except (ValueError, FileNotFoundError) as err:
        raise RunError(str(err)) from err
    return train_dataset, validation


def _sample_images(config, info, seed):
    ds = input_pipeline.make_dataset(config.data_dir, "train", 16, training=True, image_size=config.image_size, info=info, seed=seed, pca_noise=config.pca_noise, shuffle_buffer=64)
    for images, _ in ds.take(1):
        return images
    return None


def final_evaluation(trainer, validation, config, ten_view):
    """Centre-crop (and optionally 10-view) accuracy over the validation split."""
    out = {"centre_crop": trainer.evaluate(validation(False), config.val_steps)}
    if ten_view:
        step = eval_lib.make_eval_step(trainer.strategy, trainer.model, trainer.num_classes, ten_view=True, jit_compile=config.xla)
        out["ten_view"] = eval_lib.evaluate(step, validation(True), config.val_steps)
    return out


def _write_json(path, value):
    tf.io.gfile.makedirs(os.path.dirname(path))  # --eval_only --checkpoint may name a new model_dir
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(value, indent=2, sort_keys=True) + "\n")


def run(config, tf_config=None, log=None):
    """Runs the job a TrainConfig describes: train (resuming if possible), evaluate, export.

    Args:
      config: trainer.config.TrainConfig.
      tf_config: parsed TF_CONFIG dict for multi-worker training, or None.
      log: print-like function for progress lines (default: print to stdout, flushed).

    Returns:
      Exit code: 0 done, 143 stopped by SIGTERM after saving a checkpoint.

    Raises:
      RunError: a user mistake (message says which).
      TrainingDiverged: NaN or infinite loss.
    """
    from trainer import strategy as strategy_lib
    from trainer import summaries as summaries_lib

    log = log or (lambda *a: print(*a, flush=True))
    try:
        strategy_lib.configure_cpu_replicas(config.cpu_replicas)
        strategy = strategy_lib.make_strategy(config.strategy, tf_config, config.tpu)
        if config.xla:
            strategy_lib.check_xla(strategy)
    except (strategy_lib.StrategyError, RuntimeError, ValueError) as err:
        raise RunError(str(err)) from err
    accelerators = len(tf.config.list_logical_devices("GPU")) + len(tf.config.list_logical_devices("TPU"))
    warning = cpu_lib.bfloat16_warning(config.mixed_precision, config.xla, accelerators, cpu_lib.cpu_flags())
    if warning:
        log(warning)
    previous_policy = keras.mixed_precision.dtype_policy()
    if config.mixed_precision != "none":
        keras.mixed_precision.set_dtype_policy("mixed_" + config.mixed_precision)
    try:
        return _run(config, strategy, log, strategy_lib, summaries_lib)
    finally:
        keras.mixed_precision.set_dtype_policy(previous_policy)


def _run(config, strategy, log, strategy_lib, summaries_lib):
    started = time.time()
    chief = strategy_lib.is_chief(strategy)
    if config.demo and chief:
        _ensure_demo_data(config, log)
    info = _data_info(config)
    _check_shards(config)
    train_count = info.counts.get("train")
    steps_per_epoch = config.steps_per_epoch or ((train_count or 0) // config.batch_size)
    if steps_per_epoch < 1 and not config.eval_only:
        raise RunError(
            "cannot tell the epoch length: %s has %s training examples for global batch %d. Give --steps_per_epoch."
            % (config.data_dir, train_count, config.batch_size)
        )
    model_dir = config.model_dir
    checkpoint_dir = config.resolved_checkpoint_dir
    latest = tf.train.latest_checkpoint(checkpoint_dir)
    if config.eval_only:
        path = config.checkpoint or latest
        if not path:
            raise RunError("--eval_only found no checkpoint in %s. Train first or give --checkpoint." % checkpoint_dir)
    else:
        write_config = _check_config(config, model_dir, latest, chief, log)

    write_ckpt_dir = strategy_lib.write_dir(checkpoint_dir, strategy)
    write_best_dir = strategy_lib.write_dir(os.path.join(model_dir, "best"), strategy)
    write_log_dir = strategy_lib.write_dir(config.resolved_log_dir, strategy)
    trainer = Trainer(config, strategy, info.num_classes, config.batch_size)
    managers = ckpt_lib.make_managers(trainer.checkpoint, write_ckpt_dir, write_best_dir, config.keep_checkpoints)

    if config.eval_only:
        _restore(trainer, path)
        _, validation = _make_datasets(config, strategy, info, config.seed, train=False)
        results = final_evaluation(trainer, validation, config, ten_view=True)
        results.update({"checkpoint": path, "step": int(trainer.state.step.numpy())})
        if chief:
            _write_json(os.path.join(model_dir, "eval.json"), results)
        c, t = results["centre_crop"], results["ten_view"]
        print(
            "trainer.task: eval of %s (step %d) on %d validation images: centre crop top-1 %.4f top-5 %.4f; 10 views top-1 %.4f top-5 %.4f; wrote %s"
            % (path, results["step"], c["examples"], c["top1"], c["top5"], t["top1"], t["top5"], os.path.join(model_dir, "eval.json")),
            flush=True,
        )
        return 0

    if latest:
        hint = ""
        if config.allow_config_change:
            hint = "; --allow_config_change cannot resume a model whose weights changed shape: use another --model_dir"
        _restore(trainer, latest, hint)
        log("resumed from %s at step %d (epoch %d completed)" % (latest, int(trainer.state.step.numpy()), int(trainer.state.epoch.numpy())))
    write_config()
    start_step = int(trainer.state.step.numpy())
    # A resumed run reshuffles with a seed of its own instead of replaying the first batches.
    train, validation = _make_datasets(config, strategy, info, config.seed + start_step)
    # Only the chief's logs are kept: the others skip histograms, graph and profile.
    summaries = summaries_lib.Summaries(write_log_dir, enabled=chief)
    sample = None
    if start_step == 0 and chief:
        summaries.hparams(config)
        sample = _sample_images(config, info, config.seed)
    outcome = fit(trainer, config, train, validation, steps_per_epoch, managers, summaries, log=log, sample_images=sample, rgb_mean=info.rgb_mean)
    if outcome["status"] == "preempted":
        _cleanup(strategy_lib, strategy, (write_ckpt_dir, write_best_dir, write_log_dir))
        return 143

    results = final_evaluation(trainer, validation, config, ten_view=config.ten_crop)
    results.update({"checkpoint": managers[0].latest_checkpoint, "step": outcome["step"]})
    export_dir = os.path.join(model_dir, "export")
    if chief:
        _write_json(os.path.join(model_dir, "eval.json"), results)
        if config.export:
            from trainer import export as export_lib

            export_lib.export(config, trainer.model, info, export_dir)
    if config.dump_weights:
        np.savez(config.dump_weights, *[keras.ops.convert_to_numpy(w) for w in trainer.model.weights])
    summaries.close()
    _cleanup(strategy_lib, strategy, (write_ckpt_dir, write_best_dir, write_log_dir))
    c = results["centre_crop"]
    line = "trainer.task: trained %d epochs (%d steps) in %s: validation top-1 %.4f top-5 %.4f (centre crop, %d images)" % (
        outcome["epoch"],
        outcome["step"],
        model_dir,
        c["top1"],
        c["top5"],
        c["examples"],
    )
    if "ten_view" in results:
        line += ", 10 views top-1 %.4f top-5 %.4f" % (results["ten_view"]["top1"], results["ten_view"]["top5"])
    line += "; %.0f s" % (time.time() - started)
    if config.demo:
        log("TensorBoard logs are in %s; open them with: tensorboard --logdir %s" % (config.resolved_log_dir, config.resolved_log_dir))
    print(line, flush=True)
    return 0


def _cleanup(strategy_lib, strategy, dirs):
    for d in dirs:
        strategy_lib.cleanup_write_dir(d, strategy)
