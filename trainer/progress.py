"""Watching a run: time left, the share of time spent waiting for data, and whether it learns.

What a person watching a run asks, answered from what the loop measures:

- How long will this take? `TimeLeft` keeps the wall time of the recent steps
  (the loop's whole cost between two step calls: the step, waiting for data,
  progress output, step checkpoints). The time left is their moving average
  times the steps left, plus, once an epoch has ended, the measured time of an
  epoch's end (validation, summaries, checkpoint) for each epoch end to come.
- Is the input pipeline the bottleneck? The step function measures how long
  each step blocks on the next batch (trainer.step); `InputWait` sets that
  against the call's wall time, and above INPUT_BOUND_SHARE the loop says once
  what to do about it (`input_bound_message`).
- Has it started to learn? `StallCheck` compares the mean training loss of the
  last STALL_WINDOW_STEPS steps with ln(number of classes), the loss of a
  uniform guess, where AlexNet with the paper's initialisation is known to sit.

The process's first step call is left out of the averages (while there is
anything else): it traces the step function and fills the input pipeline's
buffers, a one-off cost that says nothing about the steady state.

`Progress` shows it all: a progress bar redrawn in place when the output is a
terminal, plain `key=value` lines every --log_every_steps steps otherwise.
"""
import collections
import dataclasses
import math
import sys

ETA_WINDOW_STEPS = 100  # the moving average of step times spans at least the last 100 steps
# Above this share of the step calls' time spent waiting for the next batch, the run is input-bound.
INPUT_BOUND_SHARE = 0.25
INPUT_CHECK_STEPS = 5  # steady-state steps measured before the input-bound check may warn
STALL_WINDOW_STEPS = 20  # the stall check averages the loss of the last 20 steps (one batch's loss is noisy)
# "At ln(C)": a mean loss above ln(C) minus 5% of it. A model that has started to learn
# is below; the paper's initialisation sits at ln(C) (6.908 for 1,000 classes).
STALL_MARGIN = 0.05


@dataclasses.dataclass(frozen=True)
class Call:
    """What one call of the step function took.

    Attributes:
      steps: training steps the call ran.
      seconds: wall time since the previous call ended (or the epoch began): everything the loop spent on them.
      call_seconds: the call alone.
      wait_seconds: of the call, the time its steps blocked on the next batch.
      warmup: the process's first call (tracing, filling the input pipeline).
    """

    steps: int
    seconds: float
    call_seconds: float
    wait_seconds: float
    warmup: bool = False


def format_duration(seconds):
    """Seconds with one decimal and an 's' under a minute, 'M:SS' under an hour, 'H:MM:SS' above; '?' when None."""
    if seconds is None:
        return "?"
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return "%.1fs" % seconds
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return "%d:%02d:%02d" % (hours, minutes, secs)
    return "%d:%02d" % (minutes, secs)


def format_share(share):
    """0.123 -> '12.3%'; None -> '?'."""
    return "?" if share is None else "%.1f%%" % (100.0 * share)


class _Recent:
    """The most recent items (steps, *values) that together cover at least `steps` steps."""

    def __init__(self, steps):
        self.steps = steps
        self._items = collections.deque()

    def add(self, steps, *values):
        self._items.append((steps,) + values)
        while len(self._items) > 1 and sum(i[0] for i in self._items) - self._items[0][0] >= self.steps:
            self._items.popleft()

    def sums(self):
        """(steps, sum of each value) over the items kept."""
        if not self._items:
            return None
        return tuple(sum(column) for column in zip(*self._items))


class TimeLeft:
    """Estimates of the time left for the epoch and the run.

    Args:
      steps_per_epoch: training steps in an epoch.
      epochs: epochs of the run.
      window: steps the moving average spans (at least).
    """

    def __init__(self, steps_per_epoch, epochs, window=ETA_WINDOW_STEPS):
        self.steps_per_epoch, self.epochs = steps_per_epoch, epochs
        self._recent = _Recent(window)
        self._warmup = None
        self._epoch_end_seconds = None

    def add(self, call):
        if call.warmup:
            self._warmup = call
        elif call.steps:
            self._recent.add(call.steps, call.seconds)

    def epoch_ended(self, seconds):
        """The time an epoch's end took (validation, summaries, checkpoint): the estimate of each to come."""
        self._epoch_end_seconds = seconds

    def seconds_per_step(self):
        """The moving average of the recent steps' wall time; the warm-up call's alone; None before any."""
        sums = self._recent.sums()
        if sums:
            return sums[1] / sums[0]
        if self._warmup is not None and self._warmup.steps:
            return self._warmup.seconds / self._warmup.steps
        return None

    def left(self, step):
        """(seconds left in this epoch, seconds left in the run) after global step `step` (>= 1), before its epoch's end.

        (None, None) before any call.
        """
        per_step = self.seconds_per_step()
        if per_step is None:
            return None, None
        spe = self.steps_per_epoch
        epoch_steps_left = -step % spe
        run_steps_left = max(0, spe * self.epochs - step)
        ends_left = max(0, self.epochs - (step - 1) // spe)  # this epoch's end is still to come
        end_cost = self._epoch_end_seconds or 0.0
        return per_step * epoch_steps_left, per_step * run_steps_left + end_cost * ends_left


class InputWait:
    """The share of step-call time spent waiting for the next batch: this epoch's, the run's; one warning.

    Args:
      threshold: the share above which the run is input-bound.
      min_steps: steady-state steps measured before the check may warn.
    """

    def __init__(self, threshold=INPUT_BOUND_SHARE, min_steps=INPUT_CHECK_STEPS):
        self.threshold, self.min_steps = threshold, min_steps
        self._run = [0, 0.0, 0.0]  # steady-state steps, call seconds, wait seconds
        self._epoch = [0, 0.0, 0.0]
        self._epoch_warmup = None
        self.warned = False

    def start_epoch(self):
        self._epoch = [0, 0.0, 0.0]
        self._epoch_warmup = None

    def add(self, call):
        if call.warmup:
            self._epoch_warmup = (call.steps, call.call_seconds, call.wait_seconds)
            return
        for sums in (self._run, self._epoch):
            sums[0] += call.steps
            sums[1] += call.call_seconds
            sums[2] += call.wait_seconds

    @staticmethod
    def _share(sums):
        return sums[2] / sums[1] if sums[0] and sums[1] > 0 else None

    def epoch_share(self):
        """This epoch's share (its warm-up call alone when it had no other); None before any call."""
        share = self._share(self._epoch)
        if share is None and self._epoch_warmup is not None:
            share = self._share(self._epoch_warmup)
        return share

    def run_share(self):
        """The share over every steady-state step of this process so far; None before any."""
        return self._share(self._run)

    def check(self):
        """(share, steps) the first time the run's share exceeds the threshold after min_steps steps; else None."""
        share = self.run_share()
        if self.warned or share is None or self._run[0] < self.min_steps or share <= self.threshold:
            return None
        self.warned = True
        return share, self._run[0]


def input_bound_message(share, steps, threshold=INPUT_BOUND_SHARE, augment_on_host=False):
    """The one-line warning of an input-bound run, with what to do about it."""
    remedies = ["more hosts (each reads its own shards, so fewer shards per host)"]
    if augment_on_host:
        remedies.append("drop --augment_on_host (the flips, colour noise and mean then run on the accelerator)")
    remedies.append("faster storage (local disk, or a bucket in the training region)")
    return (
        "warning: the input pipeline is the bottleneck: the steps waited for the next batch %s of the time over %d steps "
        "(input-bound above %s). To feed them faster: %s."
        % (format_share(share), steps, format_share(threshold), "; ".join(remedies))
    )


class StallCheck:
    """Warns once when the training loss still sits at ln(num_classes) after `after_steps` steps.

    Args:
      num_classes: classes of the data set.
      after_steps: global step from which the check runs; 0 turns it off.
      window: steps the loss is averaged over.
      margin: the fraction of ln(num_classes) the mean loss must fall below it by.
    """

    def __init__(self, num_classes, after_steps, window=STALL_WINDOW_STEPS, margin=STALL_MARGIN):
        self.chance = math.log(num_classes) if num_classes > 1 else 0.0
        self.after_steps, self.margin = after_steps, margin
        self._window = min(window, max(after_steps, 1))
        self._recent = _Recent(self._window)
        self.warned = False

    def add(self, step, steps, loss_sum, examples):
        """Records a call's summed cross-entropy ending at global step `step`.

        Returns:
          (mean loss, steps averaged) the first time the check finds the loss at
          ln(num_classes); None otherwise.
        """
        if self.warned or self.after_steps <= 0 or not steps:
            return None
        self._recent.add(steps, loss_sum, examples)
        recent_steps, loss, count = self._recent.sums()
        if step < self.after_steps or recent_steps < self._window or not count or self.chance <= 0:
            return None
        mean = loss / count
        if mean <= self.chance * (1.0 - self.margin):
            return None
        self.warned = True
        return mean, recent_steps


def stall_message(mean_loss, steps, step, num_classes, init, learning_rate, warmup_epochs, margin=STALL_MARGIN):
    """The one-line warning of a run that has not started to learn, with the known causes and switches.

    Args:
      mean_loss, steps: what StallCheck found (the mean loss of the last `steps` steps).
      step: the global step.
      init, learning_rate, warmup_epochs: the run's values (learning_rate: the peak, after batch scaling).
    """
    return (
        "warning: training has not started to learn: the training loss, %.4f over the last %d steps at step %d, is not "
        "%s below ln(%d) = %.4f, the loss of a uniform guess. Known causes and their switches: the initialisation "
        "(--init, now %s: the paper's N(0, 0.01) is known to sit at ln(classes), he starts sooner), the learning rate "
        "(--learning_rate, peak now %.3g: too high or too low), no warm-up for a large batch (--warmup_epochs, now %g), "
        "labels that do not match the images."
        % (mean_loss, steps, step, format_share(margin), num_classes, math.log(num_classes), init, learning_rate, warmup_epochs)
    )


class Progress:
    """A progress bar redrawn in place on a terminal; plain `key=value` lines every `every` steps otherwise.

    Args:
      epoch, epochs: this epoch (0-based) and the run's epochs.
      steps: steps in the epoch.
      every: steps between plain lines.
      done: steps of this epoch already done (a resumed run).
      stream: where to write (default sys.stdout).
    """

    BAR_WIDTH = 20

    def __init__(self, epoch, epochs, steps, every, done=0, stream=None):
        self.stream = stream or sys.stdout
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.epoch, self.epochs, self.steps, self.every = epoch, epochs, steps, max(1, every)
        resuming = " (resuming after step %d of this epoch)" % done if done else ""
        print("epoch %d/%d: %d steps%s" % (epoch + 1, epochs, steps, resuming), file=self.stream, flush=True)
        self._bar_open = False  # a bar is drawn on the current line (a message must start a new one)
        self._bar_width = 0

    def break_line(self):
        """Ends a half-drawn bar's line, so that a message printed next has a line of its own."""
        if self._bar_open:
            self.stream.write("\n")
            self.stream.flush()
            self._bar_open = False

    def update(self, done, values, last_logged, status):
        """Shows the progress after `done` steps of the epoch.

        Args:
          values: {name: number} of the running metrics.
          last_logged: steps done at the last plain line.
          status: {"elapsed", "epoch_left", "run_left": seconds or None, "input_wait": share or None}.

        Returns:
          The steps done at the last line written (== done when a line was written now).
        """
        if self.tty:
            text = self.bar_text(done, values, status)
            self.stream.write("\r" + text + " " * max(0, self._bar_width - len(text)))  # blank what a longer text left
            self._bar_width = len(text)
            self._bar_open = done < self.steps
            if not self._bar_open:
                self.stream.write("\n")
            self.stream.flush()
            return done
        if done - last_logged >= self.every or done == self.steps:
            print(self.line_text(done, values, status), file=self.stream, flush=True)
            return done
        return last_logged

    def line_text(self, done, values, status):
        """'epoch 1/2 step 3/6 loss=... lr=... input_wait=P% elapsed=T epoch_left=T run_left=T' (T: format_duration)."""
        text = " ".join("%s=%.4g" % kv for kv in values.items())
        timing = "input_wait=%s elapsed=%s epoch_left=%s run_left=%s" % (
            format_share(status["input_wait"]), format_duration(status["elapsed"]),
            format_duration(status["epoch_left"]), format_duration(status["run_left"]),
        )  # fmt: skip
        return "epoch %d/%d step %d/%d %s %s" % (self.epoch + 1, self.epochs, done, self.steps, text, timing)

    def bar_text(self, done, values, status):
        """'3/6 ━━━━━━━━━━────────── ELAPSED, LEFT left (run LEFT) - loss: ... - input wait: P%'."""
        filled = int(self.BAR_WIDTH * done / max(1, self.steps))
        bar = "━" * filled + "─" * (self.BAR_WIDTH - filled)
        if done < self.steps:
            times = "%s, %s left (run %s)" % (
                format_duration(status["elapsed"]), format_duration(status["epoch_left"]), format_duration(status["run_left"])
            )
        else:
            times = "%s (run %s left)" % (format_duration(status["elapsed"]), format_duration(status["run_left"]))
        metrics = "".join(" - %s: %.4f" % kv for kv in values.items())
        return "%d/%d %s %s%s - input wait: %s" % (done, self.steps, bar, times, metrics, format_share(status["input_wait"]))
