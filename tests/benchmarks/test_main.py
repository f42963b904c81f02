"""Tests of `python -m benchmarks` (benchmarks/__main__.py): the machinery, not the speed.

Benchmarks are not tests: the suite runs the command in --tiny mode and checks
that it writes a well-formed report whose cells are measured numbers or
explicit "not measured" notes, and that flag mistakes are one line.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import __main__ as bench_main
from benchmarks import input_pipeline, step_workers
from benchmarks.keras_worker import CONV_OPS

REPO = Path(__file__).resolve().parents[2]


def test_input_rate_is_the_trainer_pipeline_of_the_input_stage():
    stats = {"median": 3873.0, "min": 3787.0, "max": 4533.0, "n": 3}
    assert bench_main.input_rate({"input": {"train": {"images_per_s": stats}, "decode_only": {}}}) == 3873.0
    assert bench_main.input_rate({}) is None and bench_main.input_rate({"input": {"error": "x"}}) is None


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--stages", "train,gpu"], "expected a comma-separated subset of"),
        (["--repeats", "0"], "argument --repeats: expected an int >= 1. Received: 0"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_flags_exit_2_with_one_line(argv, message, capsys):
    assert bench_main.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_missing_output_directory_is_a_usage_error(tmp_path, capsys):
    assert bench_main.main(["--tiny", "--output", str(tmp_path / "nope" / "B.md")]) == 2
    err = capsys.readouterr().err
    assert "the directory of --output does not exist" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "nope").exists()


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    """Runs `python -m benchmarks --tiny` once, with PyTorch hidden, as a user would."""
    tmp = tmp_path_factory.mktemp("bench")
    hidden = tmp / "hide_torch" / "torch"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text('raise ImportError("No module named \'torch\' (hidden by the test)")\n')
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=os.pathsep.join([str(tmp / "hide_torch"), str(REPO)]))
    # As a user's shell: TF_ENABLE_ONEDNN_OPTS unset (this process's import of `benchmarks` set it).
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)
    output = tmp / "BENCHMARKS.md"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--tiny", "--repeats", "2", "--output", str(output),
         "--stages", "preprocessing,input,train,distribute"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return proc, output


def test_tiny_run_writes_a_well_formed_report(tiny_report, tables, stats_cell):
    proc, output = tiny_report
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = output.read_text()
    assert text.startswith("# Benchmarks\n") and "## Machine" in text and "--tiny run" in text
    report = tables(text)
    machine = {row[0]: row[1] for row in report[0][1:]}
    assert machine["CPUs usable"] == str(len(os.sched_getaffinity(0)))
    assert machine["command"].startswith("`python -m benchmarks --tiny --repeats 2")
    # The project's oneDNN default reached the workers, whatever TensorFlow's own default on this CPU.
    assert re.match(r"^1 \(the project's default, trainer/__init__.py\); TensorFlow's own default on this CPU: (on|off)$",
                    machine["TF_ENABLE_ONEDNN_OPTS"]), machine["TF_ENABLE_ONEDNN_OPTS"]
    assert "(oneDNN on, threads" in text
    assert not list(output.parent.glob(".benchmarks-*")), "the temporary file must be renamed onto the output"

    train = next(t for t in report if t[0][:3] == ["batch", "Keras images/s", "PyTorch images/s"])
    assert len(train) == 2 and train[1][0] == "4"
    assert stats_cell.match(train[1][1]), train[1]
    # PyTorch is hidden: the cell says so, and no ratio or GFLOP/s is made up for it.
    assert train[1][2] == step_workers.TORCH_MISSING
    assert train[1][3] == "n/a" and train[1][6:] == ["n/a", "n/a"]
    assert re.match(r"^\d+\.\d$", train[1][4]) and re.match(r"^\d+%$", train[1][5])
    targets = {row[0]: row[1:] for row in next(t for t in report if t[0][:2] == ["target", "measured"])[1:]}
    assert targets["Keras step >= 1.3x PyTorch, batch 4"] == [step_workers.TORCH_MISSING, "not measured"]
    assert targets["Keras step >= 80% of the float32 GEMM ceiling, batch 4"][1] in ("met", "**missed**")
    assert re.match(r"^\d+% \(its convolutions, each op timed by itself: \d+%\)$",
                    targets["Keras step >= 80% of the float32 GEMM ceiling, batch 4"][0])
    convs = next(t for t in report if t[0][:2] == ["batch", "forward ms"])
    assert len(convs) == 2 and convs[1][0] == "4" and all(re.match(r"^\d+(\.\d)?%?$", cell) for cell in convs[1][:-1])
    assert re.match(r"^\d+ GFLOP/s \(\d+%\)$", convs[1][-1])
    per_layer = next(t for t in report if t[0] == ["layer"] + list(CONV_OPS))
    assert [row[0] for row in per_layer[1:]] == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    op_cell = re.compile(r"^\d+(\.\d)? ms, \d+ GFLOP/s \(\d+%\)$")
    assert per_layer[1][2] == "-" and all(op_cell.match(c) for row in per_layer[2:] for c in row[1:])
    gemm = next(t for t in report if t[0] == ["GEMM", "size", "GFLOP/s"])
    assert {row[0].split(" ")[0] for row in gemm[1:]} == {"tf.linalg.matmul", "numpy"}
    assert all(stats_cell.match(row[2]) for row in gemm[1:])

    dist = next(t for t in report if t[0][:4] == ["devices", "precision", "XLA", "images/s"])
    assert [row[0] for row in dist[1:]] == ["1 CPU", "mirrored, 2 logical CPU devices"]
    assert all(stats_cell.match(row[3]) for row in dist[1:]), dist
    assert dist[1][4] == "1.00x" and "No GPU present" in text
    # The input stage ran first: each configuration's rate as a percentage of the trainer's input pipeline's.
    assert dist[0][5] == "% of the input pipeline's rate", dist[0]
    assert all(re.match(r"^(\d+|\d\.\d+|0\.0*[1-9]\d?)%$", row[5]) and row[5] != "0%" for row in dist[1:]), dist

    # The contributed stages (their own modules' run_benchmark) ran: a section each, a target row each.
    assert "### Preprocessing (Beam job vs bare Pillow loop)" in text
    assert "### Input pipeline (full augmentation vs decode-only)" in text
    assert "Beam job >= 0.8 of the bare Pillow loop, per core" in targets
    assert "input, full augmentation >= 0.8 of decode-only" in targets
    pipelines = next(t for t in report if t[0][:3] == ["pipeline", "images/s", "images/s per core"])
    assert [row[0] for row in pipelines[1:]] == [label for _, label in input_pipeline.INPUT_ROWS]
    assert all(re.match(r"^\d+ \(\d+-\d+\)$", cell) for row in pipelines[1:] for cell in row[1:]), pipelines
