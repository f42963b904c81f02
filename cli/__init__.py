"""What every entry point shares: one strict flag parser and one set of exit codes.

Each command (`python -m preprocessing.build_tfrecords`, `python -m trainer.task`,
`python -m cloud.vertex`, the experiments, `python -m benchmarks`) parses its flags
with `cli.Parser`, so a mistyped flag or a bad value is one line on stderr with exit
code `EXIT_USAGE`, never argparse's usage block. This package imports nothing but
the standard library, so the Beam job and the trainer can both use it without
importing each other.
"""
from cli.exit_codes import EXIT_DATA, EXIT_DIVERGED, EXIT_FAILED, EXIT_OK, EXIT_PREEMPTED, EXIT_USAGE
from cli.parser import Parser, UsageError, fraction, non_negative_int, positive_float, positive_int

__all__ = [
    "EXIT_DATA",
    "EXIT_DIVERGED",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_PREEMPTED",
    "EXIT_USAGE",
    "Parser",
    "UsageError",
    "fraction",
    "non_negative_int",
    "positive_float",
    "positive_int",
]
