"""What the benchmark tests share: reading the markdown tables the stages write."""
import re

import pytest

# A 'median (min-max)' cell, e.g. '18.4 (17.9-18.8)'.
STATS_CELL = re.compile(r"^\d+\.\d+ \(\d+\.\d+-\d+\.\d+\)$")


def parse_tables(text):
    """Every markdown table in `text` as a list of rows of cells (header first, separator dropped)."""
    tables, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    parsed = []
    for lines in tables:
        rows = [[c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]] for line in lines]
        assert all(len(r) == len(rows[0]) for r in rows), lines  # well-formed: every row as wide as the header
        assert set(rows[1]) == {"---"}, lines
        parsed.append([rows[0]] + rows[2:])
    return parsed


@pytest.fixture
def tables():
    """`parse_tables`: every markdown table of a text as rows of cells, each checked to be well formed."""
    return parse_tables


@pytest.fixture
def stats_cell():
    """The pattern of a 'median (min-max)' cell."""
    return STATS_CELL
