"""Tests of experiments/figure1_report.py: medians over seeds and the ratio, with their bounds."""
from experiments import figure1_report


def _run(reached, ran):
    return {"epochs_to_target": reached, "train_error": [0.5] * ran}


def test_median_epochs_to_target_and_ratio():
    median = figure1_report.median_epochs_to_target
    assert median([_run(6, 6), _run(2, 2), _run(9, 9)]) == (6, True)
    assert median([_run(6, 6), _run(2, 2)]) == (4, True)
    # A seed that never got there in 10 epochs needs at least 11: above the middle, the median stays exact...
    assert median([_run(6, 6), _run(2, 2), _run(None, 10)]) == (6, True)
    # ...at the middle, the median is only a lower bound.
    assert median([_run(6, 6), _run(None, 10), _run(None, 12)]) == (11, False)
    # A run cut short by the budget (3 epochs) below an exact one: the true order is unknown.
    assert median([_run(None, 3), _run(6, 6), _run(9, 9)]) == (6, False)
    assert figure1_report.speedup((2, True), (12, True)) == (6.0, "measured")
    assert figure1_report.speedup((2, True), (11, False)) == (5.5, "lower bound")
    assert figure1_report.speedup((11, False), (4, True)) == (4 / 11, "upper bound")
    assert figure1_report.speedup((11, False), (11, False)) == (None, "none")
