"""The per-activation learning-rate sweep of the Figure 1 experiment.

The paper chose each network's learning rate independently "to make training as fast as
possible". With --sweep_learning_rates the experiment does the same: every activation trains
once (the first seed) at each rate, the rate that reaches the target error in the fewest epochs
is chosen for that activation, and the other seeds train at it.
"""

def rank_key(run):
    """Sort key of a sweep run: reached the target first, then fewer epochs, then lower final error.

    A run that never reached the target ranks after every run that did, by its last training
    error; ties go to the lower learning rate (the safer of two equally fast rates).
    """
    final = run["train_error"][-1] if run["train_error"] else 1.0
    if run["epochs_to_target"]:
        return (0, run["epochs_to_target"], final, run["learning_rate"])
    return (1, 0, final, run["learning_rate"])


def best_rates(sweep_runs):
    """{activation: the chosen learning rate} from the sweep's runs (dicts with "activation", "learning_rate")."""
    best = {}
    for run in sorted(sweep_runs, key=rank_key):
        best.setdefault(run["activation"], run["learning_rate"])
    return best
