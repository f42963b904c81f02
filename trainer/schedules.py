"""Learning-rate schedules as pure functions of the training state.

The optimizer's learning rate is a variable the loop sets before each call of
the step function, so the schedule is plain Python that is easy to test and
to save (its whole state is `drops`, `best_top1` and `bad_epochs`, kept in the
checkpoint).
"""
import dataclasses


@dataclasses.dataclass(frozen=True)
class PlateauState:
    """State of the divide-by-10-on-plateau rule (the paper's schedule)."""

    drops: int = 0  # times the rate has been divided by 10
    best_top1: float = -1.0  # best validation top-1 so far
    bad_epochs: int = 0  # epochs since best_top1 last improved (reset by a drop)


def plateau_update(state, val_top1, patience, max_drops):
    """Applies one epoch's validation top-1 to the plateau rule.

    The paper divided the rate by 10 "when the validation error rate stopped
    improving", three times in total. Here: after `patience` epochs without a
    new best validation top-1, drop once (at most `max_drops` times) and restart
    the count.

    Args:
      state: PlateauState before this epoch.
      val_top1: this epoch's validation top-1 accuracy.
      patience: epochs without improvement that make a plateau.
      max_drops: most drops allowed.

    Returns:
      (new PlateauState, dropped: bool).
    """
    if val_top1 > state.best_top1:
        return dataclasses.replace(state, best_top1=val_top1, bad_epochs=0), False
    bad = state.bad_epochs + 1
    if bad >= patience and state.drops < max_drops:
        return dataclasses.replace(state, drops=state.drops + 1, bad_epochs=0), True
    return dataclasses.replace(state, bad_epochs=bad), False


def step_drops(epoch, step_epochs, max_drops):
    """Drops of the step schedule at the start of 0-based `epoch`: one every step_epochs epochs."""
    if step_epochs <= 0:
        return 0
    return min(max_drops, epoch // step_epochs)


def learning_rate_at(step, steps_per_epoch, peak_lr, warmup_epochs, drops):
    """The learning rate for global step `step` (0-based, the step about to run).

    Args:
      step: global step about to run.
      steps_per_epoch: steps in one epoch.
      peak_lr: the (linearly scaled) rate after warm-up.
      warmup_epochs: length of the linear ramp from peak_lr / warmup_steps to peak_lr.
      drops: divisions by 10 so far.

    Returns:
      A float learning rate.
    """
    lr = peak_lr * (0.1**drops)
    warmup_steps = int(round(warmup_epochs * steps_per_epoch))
    if warmup_steps > 0 and step < warmup_steps:
        # Goyal et al. 2017: ramp linearly over the first epochs so a large batch's
        # scaled rate does not blow up the still-random network.
        lr *= (step + 1) / warmup_steps
    return lr
