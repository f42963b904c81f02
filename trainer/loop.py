"""The epoch loop: steps, progress, validation, the learning-rate schedule, summaries, checkpoints.

What it reports while it runs (time left, the share of time spent waiting for
data, the input-bound and stall warnings) is worked out by trainer.progress
from what the loop measures here.

An epoch is `steps_per_epoch` steps of an endlessly repeated training set,
followed by validation, the learning-rate schedule, TensorBoard summaries and a
checkpoint. A run killed mid-epoch restarts at its last checkpoint's step and
runs only the steps that epoch still lacks (the data order after a resume is
a fresh shuffle, not a replay). SIGTERM (what preemption sends) becomes a flag
checked between step calls: the loop saves a checkpoint and returns.
"""
import dataclasses
import math
import signal
import time

from trainer import config as config_lib
from trainer import evaluate as eval_lib
from trainer import progress as progress_lib
from trainer import schedules
from trainer.step import TrainingDiverged


@dataclasses.dataclass
class EpochResult:
    epoch: int
    step: int
    train: dict
    validation: dict
    learning_rate: float
    images_per_second: float


@dataclasses.dataclass
class _EpochSteps:
    """What the steps of one epoch left: the global step after them, their summed metrics, the last rate."""

    step: int
    totals: dict
    steps_run: int
    learning_rate: float
    seconds: float
    preempted: bool = False


class SigtermFlag:
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


def fit(
    trainer, config, train_dataset, val_dataset, steps_per_epoch, managers, summaries,
    log=print, sample_images=None, rgb_mean=None,
):
    """Trains to config.epochs, resuming from the trainer's restored state.

    Args:
      trainer: a trainer.step.Trainer (state already restored when resuming).
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
    state = trainer.state
    iterator = iter(train_dataset)
    step = int(state.step.numpy())
    epoch = int(state.epoch.numpy())
    plateau = schedules.PlateauState(
        drops=int(state.lr_drops.numpy()), best_top1=float(state.best_top1.numpy()), bad_epochs=int(state.bad_epochs.numpy())
    )
    last_result = None
    if sample_images is not None and step == 0:
        summaries.images(sample_images, rgb_mean, step=0)
    with SigtermFlag() as sigterm:
        epochs = _Epochs(trainer, config, iterator, val_dataset, steps_per_epoch, managers, summaries, log, sigterm)
        while epoch < config.epochs:
            ran = epochs.train(epoch, step, plateau)
            step = ran.step
            if ran.preempted:
                summaries.close()
                return {"status": "preempted", "step": step, "epoch": epoch, "best_top1": plateau.best_top1, "last": last_result}
            epoch, plateau, last_result = epochs.finish(epoch, ran, plateau)
    summaries.stop_profiler()
    return {"status": "completed", "step": step, "epoch": epoch, "best_top1": plateau.best_top1, "last": last_result}


class _Epochs:
    """The two halves of an epoch (its steps; then validation, schedule, summaries, checkpoint) for `fit`."""

    def __init__(self, trainer, config, iterator, val_dataset, steps_per_epoch, managers, summaries, log, sigterm):
        self.trainer, self.config, self.iterator, self.val_dataset = trainer, config, iterator, val_dataset
        self.steps_per_epoch, self.summaries, self.log, self.sigterm = steps_per_epoch, summaries, log, sigterm
        self.last_manager, self.best_manager = managers
        self.peak_lr = config_lib.effective_learning_rate(config)
        self.profile = config_lib.parse_profile_steps(config.profile_steps)
        self.started = time.monotonic()
        self.warmup = True  # the process's first call: tracing and filling the input pipeline
        self.times = progress_lib.TimeLeft(steps_per_epoch, config.epochs)
        self.waits = progress_lib.InputWait()
        self.stall = progress_lib.StallCheck(trainer.num_classes, config.stall_steps)

    def train(self, epoch, step, plateau):
        """Runs the steps epoch `epoch` still lacks from global step `step`; stops early on SIGTERM."""
        config, spe = self.config, self.steps_per_epoch
        epoch_end = (epoch + 1) * spe
        done_in_epoch = step - epoch * spe
        if config.lr_schedule == "plateau":
            drops = plateau.drops
        else:
            drops = schedules.step_drops(epoch, config.lr_step_epochs, config.max_lr_drops)
        progress = progress_lib.Progress(epoch, config.epochs, spe, config.log_every_steps, done=done_in_epoch)
        self.waits.start_epoch()
        totals = {k: 0.0 for k in eval_lib.METRIC_KEYS + ("objective",)}
        steps_run = 0
        last_logged = done_in_epoch
        start = time.time()
        mark = time.monotonic()  # the end of the previous call (or the epoch's start)
        first_call = True
        # Set before the loop too: a run resumed exactly at an epoch's end runs no step of it.
        lr = schedules.learning_rate_at(step, spe, self.peak_lr, config.warmup_epochs, drops)
        while step < epoch_end:
            n = min(config.steps_per_call, epoch_end - step)
            lr = schedules.learning_rate_at(step, spe, self.peak_lr, config.warmup_epochs, drops)
            called = time.monotonic()
            sums = self._call(step, n, lr, first_call and step == 0, epoch)
            now = time.monotonic()
            call = progress_lib.Call(n, now - mark, now - called, sums["input_wait_seconds"], warmup=self.warmup)
            mark, first_call, self.warmup = now, False, False
            prev_step, step = step, step + n
            self._watch(progress, call, step, sums)
            for k in totals:
                totals[k] += sums[k]
            steps_run += n
            last_logged = self._progress(progress, totals, steps_run, step - epoch * spe, lr, last_logged, step)
            # (At the epoch's last step the epoch-end save below comes right after validation.)
            every = config.checkpoint_every_steps
            if every and step < epoch_end and step // every > prev_step // every:
                _save(self.trainer, self.last_manager, plateau)
            # One process alone stops as soon as it sees the signal; workers stop
            # when the step's all-reduced totals say one of them received it.
            if sums["stop"] > 0 or (self.sigterm.received and not self.trainer.multi_process):
                path = _save(self.trainer, self.last_manager, plateau)
                who = "SIGTERM received" if self.sigterm.received else "SIGTERM received by another worker"
                self.log("%s: saved checkpoint %s at step %d; rerun the same command to resume." % (who, path, step))
                return _EpochSteps(step, totals, steps_run, lr, time.time() - start, preempted=True)
        return _EpochSteps(step, totals, steps_run, lr, max(time.time() - start, 1e-9))

    def _call(self, step, n, lr, trace, epoch):
        """One call of the compiled step (n steps from `step`), profiled and traced when asked."""
        summaries, profile = self.summaries, self.profile
        if profile and profile[0] - 1 <= step < profile[1]:
            summaries.start_profiler()
        self.trainer.set_learning_rate(lr)
        if trace:
            summaries.start_graph_trace()
        sums = self.trainer.train_steps(self.iterator, n, stop=self.sigterm.received)
        if trace:
            summaries.stop_graph_trace(step=0)
        if profile and step + n >= profile[1]:
            summaries.stop_profiler()
        if not math.isfinite(sums["objective"]):
            summaries.close()
            last_good = self.last_manager.latest_checkpoint or "none (no checkpoint was saved yet)"
            raise TrainingDiverged(
                "loss is %s at global step %d (epoch %d, learning rate %.3g); stopped without saving. "
                "The last good checkpoint is %s. Lower --learning_rate, use --warmup_epochs, or check the data."
                % (sums["objective"], step + n, epoch + 1, lr, last_good)
            )
        return sums

    def _watch(self, progress, call, step, sums):
        """Feeds one call's measurements to the estimates; the input-bound and stall warnings, once each."""
        self.times.add(call)
        self.waits.add(call)
        config, warnings = self.config, []
        bound = self.waits.check()
        if bound:
            warnings.append(progress_lib.input_bound_message(*bound, augment_on_host=config.augment_on_host))
        stalled = self.stall.add(step, call.steps, sums["loss_sum"], sums["examples"])
        if stalled:
            warnings.append(progress_lib.stall_message(
                *stalled, step, self.trainer.num_classes, config.init, self.peak_lr, config.warmup_epochs
            ))  # fmt: skip
        for warning in warnings:
            progress.break_line()
            self.log(warning)

    def _progress(self, progress, totals, steps_run, done, lr, last_logged, step):
        """Updates the progress bar or line; writes the batch scalars whenever a line was logged."""
        running = eval_lib.summarize(totals)
        # "loss" is the cross-entropy, as in validation; "objective" adds the L2 term.
        values = {"loss": running["loss"], "objective": totals["objective"] / steps_run, "top1": running["top1"], "lr": lr}
        epoch_left, run_left = self.times.left(step)
        share = self.waits.epoch_share()
        status = {"elapsed": time.monotonic() - self.started, "epoch_left": epoch_left, "run_left": run_left, "input_wait": share}
        new_logged = progress.update(done, values, last_logged, status)
        if new_logged != last_logged:
            batch = {
                "batch/loss": values["loss"],
                "batch/objective": values["objective"],
                "batch/top1_accuracy": values["top1"],
                "batch/learning_rate": lr,
            }
            if share is not None:
                batch["batch/input_wait_fraction"] = share
            self.summaries.scalars("train", batch, step)
        return new_logged

    def finish(self, epoch, ran, plateau):
        """Validation, the schedule, summaries, the log line and the checkpoints at the end of `epoch`.

        Returns:
          (the next epoch, the new PlateauState, this epoch's EpochResult).
        """
        trainer, config, summaries = self.trainer, self.config, self.summaries
        started = time.monotonic()
        step, lr, totals = ran.step, ran.learning_rate, ran.totals
        images_per_second = totals["examples"] / ran.seconds if ran.steps_run else 0.0
        train_metrics = eval_lib.summarize(totals)
        train_metrics["objective"] = totals["objective"] / ran.steps_run if ran.steps_run else 0.0
        validation = trainer.evaluate(self.val_dataset(), config.val_steps)
        improved = validation["examples"] > 0 and validation["top1"] > plateau.best_top1
        if config.lr_schedule == "plateau":
            plateau, dropped = schedules.plateau_update(plateau, validation["top1"], config.plateau_patience, config.max_lr_drops)
            if dropped:
                self.log(
                    "validation top-1 stopped improving: learning rate divided by 10 (drop %d of at most %d)"
                    % (plateau.drops, config.max_lr_drops)
                )
        else:
            plateau = dataclasses.replace(plateau, best_top1=max(plateau.best_top1, validation["top1"]))
        epoch += 1
        trainer.state.epoch.assign(epoch)
        result = EpochResult(epoch, step, train_metrics, validation, lr, images_per_second)
        train_scalars = {
            "loss": train_metrics["loss"],
            "objective": train_metrics["objective"],
            "top1_accuracy": train_metrics["top1"],
            "top5_accuracy": train_metrics["top5"],
            "learning_rate": lr,
            "images_per_second": images_per_second,
        }
        share = self.waits.epoch_share()
        if share is not None:
            train_scalars["input_wait_fraction"] = share
        summaries.scalars("train", train_scalars, step)
        validation_scalars = {
            "loss": validation["loss"], "top1_accuracy": validation["top1"], "top5_accuracy": validation["top5"]
        }
        summaries.scalars("validation", validation_scalars, step)
        summaries.histograms(trainer.model, step)
        summaries.flush()
        self.log(
            "epoch %d/%d step %d: train loss %.4f (objective %.4f) top-1 %.4f top-5 %.4f | "
            "validation loss %.4f top-1 %.4f top-5 %.4f (%d examples) | lr %.3g | input wait %s | %.1f images/s"
            % (
                epoch, config.epochs, step,
                train_metrics["loss"], train_metrics["objective"], train_metrics["top1"], train_metrics["top5"],
                validation["loss"], validation["top1"], validation["top5"], validation["examples"],
                lr, progress_lib.format_share(share), images_per_second,
            )
        )
        _save(trainer, self.last_manager, plateau)
        if improved:
            self.best_manager.save(checkpoint_number=step)
        self.times.epoch_ended(time.monotonic() - started)
        return epoch, plateau, result


def _save(trainer, manager, plateau):
    state = trainer.state
    state.lr_drops.assign(plateau.drops)
    state.best_top1.assign(plateau.best_top1)
    state.bad_epochs.assign(plateau.bad_epochs)
    return manager.save(checkpoint_number=int(state.step.numpy()))
