"""Facts about cli.Parser, cli.UsageError and the flag types (cli/parser.py)."""
import argparse
import subprocess
import sys
from pathlib import Path

import pytest

import cli

REPO = Path(__file__).resolve().parents[2]


def parser():
    p = cli.Parser(prog="demo")
    p.add_argument("--data_dir", required=True)
    p.add_argument("--epochs", type=cli.positive_int, default=1)
    p.add_argument("--lr", type=cli.positive_float, default=0.01)
    p.add_argument("--drop", type=cli.fraction, default=0.5)
    p.add_argument("--strategy", choices=("default", "mirrored"), default="default")
    return p


def test_good_flags_parse():
    args = parser().parse_args(["--data_dir", "d", "--epochs", "3", "--lr", "0.5", "--drop", "0.25"])
    assert (args.data_dir, args.epochs, args.lr, args.drop, args.strategy) == ("d", 3, 0.5, 0.25, "default")


@pytest.mark.parametrize(
    "argv,match",
    [
        (["--data_dir", "d", "--epcohs", "3"], "unrecognized arguments: --epcohs 3"),
        ([], "the following arguments are required: --data_dir"),
        (["--data_dir", "d", "--epochs", "0"], r"argument --epochs: expected an int >= 1. Received: 0"),
        (["--data_dir", "d", "--epochs", "x"], r"argument --epochs: expected an int >= 1. Received: 'x'"),
        (["--data_dir", "d", "--lr", "-1"], r"argument --lr: expected a number > 0. Received: -1"),
        (["--data_dir", "d", "--drop", "1"], r"argument --drop: expected a number in \(0, 1\). Received: 1"),
        (["--data_dir", "d", "--strategy", "tpu"], "argument --strategy: invalid choice: 'tpu'"),
    ],
)
def test_a_mistake_is_a_usage_error_not_a_usage_block(argv, match, capsys):
    with pytest.raises(cli.UsageError, match=match):
        parser().parse_args(argv)
    assert capsys.readouterr().err == ""  # argparse's usage block is never printed


def test_help_still_prints_and_exits_0(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parser().parse_args(["--help"])
    assert exit_info.value.code == 0
    assert "--data_dir" in capsys.readouterr().out


@pytest.mark.parametrize(
    "kind,good,bad",
    [
        (cli.positive_int, [("1", 1), ("128", 128)], ["0", "-3", "1.5", "", "one"]),
        (cli.positive_float, [("1e-4", 1e-4), ("2", 2.0)], ["0", "-0.1", "nan", "x"]),
        (cli.fraction, [("0.5", 0.5), ("1e-3", 1e-3)], ["0", "1", "1.5", "nan", "x"]),
    ],
)
def test_flag_types(kind, good, bad):
    for text, value in good:
        assert kind(text) == value
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError, match="Received"):
            kind(text)


def test_usage_error_is_an_exception_of_its_own():
    assert issubclass(cli.UsageError, Exception)
    assert not issubclass(cli.UsageError, (SystemExit, ValueError))


def test_cli_imports_only_the_standard_library():
    # The Beam job and the trainer both import cli: it must pull in neither's dependencies.
    code = "import sys, cli; print(sorted(m for m in ('tensorflow', 'keras', 'apache_beam', 'numpy') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
