"""The command line the training-step stage and its two worker processes share.

The stage (`benchmarks.training_step`) builds the workers' commands with
`worker_args`; `benchmarks.keras_worker` and `benchmarks.torch_worker` parse them
with `worker_parser`. This module imports neither framework, so that TensorFlow and
PyTorch never share a process: their thread pools would compete for the same cores.
"""
import argparse
import sys

from benchmarks import common
from cli import EXIT_OK, EXIT_USAGE, Parser, UsageError, non_negative_int, positive_int

MATMUL_SIZE = 4096  # 137 GFLOP per product: long enough to time, large enough for full-speed GEMM kernels
TORCH_MISSING = "PyTorch is not installed: pip install -e '.[bench]' to compare"


def int_list(text):
    """argparse type: comma-separated positive integers, e.g. '32,128'."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError("expected comma-separated integers. Received: %r" % text) from err
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("expected positive integers. Received: %r" % text)
    return values


def worker_parser(prog, description):
    """The flags both workers take; each worker adds its framework's own."""
    parser = Parser(prog=prog, description=description)
    parser.add_argument("--batch_sizes", type=int_list, default=[32, 128])
    parser.add_argument("--image_size", type=positive_int, default=227)
    parser.add_argument("--num_classes", type=positive_int, default=1000)
    parser.add_argument("--warmup", type=non_negative_int, default=1, help="untimed runs before timing")
    parser.add_argument("--repeats", type=positive_int, default=3, help="timed runs per figure")
    parser.add_argument("--steps", type=positive_int, default=2, help="train steps per timed run")
    parser.add_argument("--matmul_size", type=positive_int, default=MATMUL_SIZE)
    parser.add_argument("--threads", type=non_negative_int, default=0, help="intra-op threads (0: framework default)")
    return parser


def worker_main(parser, measure, argv=None, check=None):
    """Parses a worker's flags, runs `measure(args)` and prints its result as the one marked JSON line.

    Args:
      parser: the worker's `worker_parser`.
      measure: args -> the result dict.
      argv: flags (default: sys.argv[1:]).
      check: args -> None, raising `cli.UsageError` for flags that parse but cannot be measured.

    Returns:
      `cli.EXIT_OK`, or `cli.EXIT_USAGE` after one error line on stderr for a bad flag.
    """
    try:
        args = parser.parse_args(argv)
        if check:
            check(args)
    except UsageError as err:
        sys.stderr.write("%s: error: %s\n" % (parser.prog, err))
        return EXIT_USAGE
    common.emit_result(measure(args))
    return EXIT_OK


def worker_args(batch_sizes, image_size, num_classes, warmup, repeats, steps, matmul_size, extra=()):
    """The command-line arguments of one worker run."""
    return [
        "--batch_sizes", ",".join(str(b) for b in batch_sizes), "--image_size", image_size,
        "--num_classes", num_classes, "--warmup", warmup, "--repeats", repeats, "--steps", steps,
        "--matmul_size", matmul_size, *extra,
    ]  # fmt: skip
