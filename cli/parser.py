"""The strict flag parser of every entry point: a mistake is one error line, not a usage block."""
import argparse


class UsageError(Exception):
    """A user mistake: reported as one line on stderr with exit code 2."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors raise UsageError instead of printing the
    whole usage block: a user mistake is one line on stderr."""

    def error(self, message):
        raise UsageError(message)


def positive_int(text):
    """argparse type: an int >= 1."""
    try:
        value = int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError("expected an int >= 1. Received: %r" % text) from err
    if value < 1:
        raise argparse.ArgumentTypeError("expected an int >= 1. Received: %s" % text)
    return value


def non_negative_int(text):
    """argparse type: an int >= 0."""
    try:
        value = int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError("expected an int >= 0. Received: %r" % text) from err
    if value < 0:
        raise argparse.ArgumentTypeError("expected an int >= 0. Received: %s" % text)
    return value


def positive_float(text):
    """argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError("expected a number > 0. Received: %r" % text) from err
    if not value > 0:
        raise argparse.ArgumentTypeError("expected a number > 0. Received: %s" % text)
    return value


def fraction(text):
    """argparse type: a number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError("expected a number in (0, 1). Received: %r" % text) from err
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError("expected a number in (0, 1). Received: %s" % text)
    return value
