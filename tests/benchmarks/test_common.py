"""Tests of benchmarks/common.py: timing, statistics, tables and the machine description."""
import pytest

from benchmarks import common


def test_time_runs_calls_warmup_then_times_repeats():
    calls = []
    durations = common.time_runs(lambda: calls.append(1), warmup=2, repeats=3)
    assert len(calls) == 5 and len(durations) == 3 and all(d >= 0 for d in durations)
    with pytest.raises(ValueError, match="repeats >= 1"):
        common.time_runs(lambda: None, 0, 0)


def test_rate_stats_median_min_max():
    stats = common.rate_stats(32, [2.0, 1.0, 4.0])
    assert stats["values"] == [16.0, 32.0, 8.0]
    assert (stats["median"], stats["min"], stats["max"], stats["n"]) == (16.0, 8.0, 32.0, 3)
    assert common.format_stats(stats) == "16.0 (8.0-32.0)"
    assert common.scale_stats(stats, 0.5)["max"] == 16.0


def test_onednn_cell_names_who_chose_the_setting():
    machine = {"TF_ENABLE_ONEDNN_OPTS": "1", "onednn_from_environment": None}
    assert common.describe_onednn(machine, False) == (
        "1 (the project's default, trainer/__init__.py); TensorFlow's own default on this CPU: off")
    machine = {"TF_ENABLE_ONEDNN_OPTS": "0", "onednn_from_environment": "0"}
    assert common.describe_onednn(machine, True) == "0 (set in the environment); TensorFlow's own default on this CPU: on"
    machine = {"TF_ENABLE_ONEDNN_OPTS": None, "onednn_from_environment": None}
    assert common.describe_onednn(machine, None).startswith("unset (TensorFlow started before")
    assert common.describe_onednn(machine, None).endswith("TensorFlow's own default on this CPU: unknown")


def test_markdown_table_escapes_and_checks_width():
    table = common.markdown_table(["a", "b"], [["x|y", 2]])
    assert table.splitlines() == ["| a | b |", "| --- | --- |", "| x\\|y | 2 |"]
    with pytest.raises(ValueError, match="rows of 2 cells"):
        common.markdown_table(["a", "b"], [[1]])


def test_error_line_picks_the_exception():
    out = "Traceback (most recent call last):\n  File x\nValueError: expected 3. Received: 4\n  Cf. https://x\n"
    assert common.error_line(out) == "ValueError: expected 3. Received: 4"
    assert common.error_line("") == "no output"
    # An installed package's absolute path is made relative (it names the machine).
    failed = "Traceback\nValueError: resource x (defined @ /opt/env/lib/python3.11/site-packages/keras/src/core.py:43)"
    assert common.error_line(failed) == "ValueError: resource x (defined @ keras/src/core.py:43)"


def test_cores_and_cpu_seconds():
    import os

    assert common.cores() == len(os.sched_getaffinity(0))
    own = common.cpu_seconds()
    assert 0 < own <= common.cpu_seconds(children=True)


def test_faster_gemms_keeps_the_faster_median_of_each():
    before = {"numpy": common.summarize([100.0]), "tf": common.summarize([300.0])}
    after = {"numpy": common.summarize([120.0]), "tf": common.summarize([250.0])}
    assert common.faster_gemms(before, after) == {"numpy": after["numpy"], "tf": before["tf"]}
