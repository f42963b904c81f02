"""trainer.schedules: the plateau and step schedules and the warm-up."""
import pytest

from trainer import schedules


def test_plateau_divides_by_ten_after_patience_at_most_three_times():
    state = schedules.PlateauState()
    history = []
    for top1 in [0.1, 0.2, 0.2, 0.19, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]:
        state, dropped = schedules.plateau_update(state, top1, patience=2, max_drops=3)
        history.append(dropped)
    # Drops after two epochs without a new best: epochs 4, 7, 9; none after the third.
    assert [i + 1 for i, d in enumerate(history) if d] == [4, 7, 9]
    assert state.drops == 3 and state.best_top1 == 0.3
    assert schedules.learning_rate_at(0, 100, 0.01, 0, state.drops) == pytest.approx(1e-5)


def test_step_schedule_and_warmup():
    assert [schedules.step_drops(e, 30, 3) for e in (0, 29, 30, 60, 89, 120)] == [0, 0, 1, 2, 2, 3]
    # Warm-up over 2 epochs of 10 steps: linear from lr/20 up to lr, then flat.
    lrs = [schedules.learning_rate_at(s, 10, 0.04, 2, 0) for s in (0, 9, 19, 20, 50)]
    assert lrs == pytest.approx([0.002, 0.02, 0.04, 0.04, 0.04])
