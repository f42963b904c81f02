"""Reading a training curve, shared by the experiments' reports."""


def epochs_to_target(errors, target):
    """The first 1-based epoch whose error is at or below `target`, or None.

    Args:
      errors: per-epoch errors, epoch 1 first.
      target: the error to reach.

    Returns:
      An int epoch, or None if the curve never reaches the target.
    """
    for epoch, error in enumerate(errors, start=1):
        if error <= target:
            return epoch
    return None
