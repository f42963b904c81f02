"""The exit codes (cli/exit_codes.py): defined once, distinct, and as README.md's table says."""
import re
from pathlib import Path

import cli
from cli import exit_codes

README = Path(__file__).resolve().parents[2] / "README.md"
# A row of the README's exit-code table: | 143 | `EXIT_PREEMPTED` | what it means |
ROW = re.compile(r"^\|\s*(\d+)\s*\|\s*`(EXIT_[A-Z]+)`\s*\|")


def defined():
    return {name: value for name, value in vars(exit_codes).items() if name.startswith("EXIT_")}


def readme_table():
    rows = {}
    for number, line in enumerate(README.read_text(encoding="utf-8").splitlines(), 1):
        match = ROW.match(line)
        if match:
            assert match.group(2) not in rows, "README.md:%d: %s is in the exit-code table twice" % (number, match.group(2))
            rows[match.group(2)] = int(match.group(1))
    return rows


def test_the_codes_are_distinct_and_exported_by_cli():
    codes = defined()
    assert set(codes) == {"EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_DIVERGED", "EXIT_DATA", "EXIT_PREEMPTED"}
    assert len(set(codes.values())) == len(codes)
    for name, value in codes.items():
        assert getattr(cli, name) == value
    assert (cli.EXIT_OK, cli.EXIT_USAGE, cli.EXIT_PREEMPTED) == (0, 2, 128 + 15)


def test_readme_table_agrees_with_cli_exit_codes():
    table = readme_table()
    assert table, "README.md has no exit-code table (rows like | 2 | `EXIT_USAGE` | ... |)"
    assert table == defined()
