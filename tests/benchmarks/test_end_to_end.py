"""Tests of benchmarks/end_to_end.py: the trainer's epoch lines, the bare step around each run, the table."""
import os
import re
import subprocess
import sys
from pathlib import Path

from benchmarks import common, end_to_end
from preprocessing import schema

REPO = Path(__file__).resolve().parents[2]


def test_trainer_epoch_line_pattern():
    line = ("epoch 2/4 step 12: train loss 6.9078 top-1 0.0000 top-5 0.0000 | validation loss 6.9 top-1 0.0 "
            "top-5 0.0 (32 examples) | lr 0.01 | 17.9 images/s")  # fmt: skip
    match = end_to_end.EPOCH_LINE.match(line)
    assert match and match.group(1, 2, 3, 4) == ("2", "4", "12", "17.9")


def _stats(median, spread=1.0, values=None):
    values = values or [median - spread, median, median + spread]
    return {"median": median, "min": min(values), "max": max(values), "n": len(values), "values": values}


def test_end_to_end_table_gives_the_bare_step_timed_around_the_trainer(tables):
    stage = {
        "settings": end_to_end.stage_settings(False, 3),
        "data": "made-up shards",
        "runs": [
            {"strategy": "default", "replicas": 1, "trainer": _stats(18.0, 0.5), "epoch_overhead_s": _stats(2.0, 0.5),
             "bare_before": _stats(20.5), "bare_after": _stats(19.5),
             "bare": common.summarize(_stats(20.5)["values"] + _stats(19.5)["values"]),
             "command": "python -m trainer.task --strategy default", "bare_command": "python -m benchmarks.distribute"},
            {"strategy": "mirrored", "replicas": 2, "error": "python -m trainer.task exited with code 1: boom"},
        ],
    }  # fmt: skip
    text = end_to_end.render(stage)
    (table,) = tables(text)
    assert table[0] == ["strategy", "trainer images/s", "bare step images/s", "trainer / bare", "fixed cost per epoch",
                        "commands"]  # fmt: skip
    # 18.0 / 20.0 = 0.90 meets the target; an ImageNet epoch at 18 images/s is 71,176 s, 2 s of it 0.003%.
    assert table[1][:5] == ["default", "18.0 (17.5-18.5)", "20.0 (18.5-21.5); before 20.5, after 19.5", "0.90 (met)",
                            "2.0 (1.5-2.5) s (0.003% of an ImageNet epoch)"]  # fmt: skip
    failed = "failed: python -m trainer.task exited with code 1: boom"
    assert table[2] == ["mirrored, 2 logical CPU devices", failed] + ["n/a"] * 4
    assert "right before and right after the trainer run" in text


def test_end_to_end_stage_pools_the_bare_workers_timed_around_each_trainer_run(tmp_path, monkeypatch):
    calls, rates = [], iter([[20.0, 21.0, 22.0], [18.0, 19.0, 23.0], [10.0, 10.5, 11.0], [9.0, 9.5, 12.0]])

    def build_shards(image_source, out_dir, tiny, log):
        os.makedirs(out_dir)
        with open(os.path.join(out_dir, "metadata.json"), "w", encoding="utf-8") as f:
            f.write('{"format_version": %d, "num_classes": 7}' % schema.METADATA_FORMAT_VERSION)
        return out_dir, "made-up shards"

    def bare_step(settings, strategy):
        calls.append(("bare", strategy))
        return common.summarize(next(rates)), "bare command " + strategy

    def run_trainer(data_dir, model_dir, strategy, replicas, settings):
        calls.append(("trainer", strategy))
        assert settings["num_classes"] == 7 and replicas == (2 if strategy == "mirrored" else 1)
        return {"trainer": _stats(19.0), "epoch_overhead_s": _stats(2.0), "command": "trainer " + strategy}

    monkeypatch.setattr(end_to_end, "build_shards", build_shards)
    monkeypatch.setattr(end_to_end, "bare_step", bare_step)
    monkeypatch.setattr(end_to_end, "run_trainer", run_trainer)
    stage = end_to_end.run_stage(False, 3, str(tmp_path), None, log=lambda _: None)
    assert calls == [("bare", "default"), ("trainer", "default"), ("bare", "default"),
                     ("bare", "mirrored"), ("trainer", "mirrored"), ("bare", "mirrored")]  # fmt: skip
    default, mirrored = stage["runs"]
    # Pooled over both workers: six values, median 20.5 (not either worker's own median, 21.0 or 19.0).
    assert default["bare"] == common.summarize([20.0, 21.0, 22.0, 18.0, 19.0, 23.0])
    assert default["bare"]["median"] == 20.5 and default["bare_before"]["median"] == 21.0
    assert default["bare_after"]["median"] == 19.0 and default["bare_command"] == "bare command default"
    assert mirrored["bare"] == common.summarize([10.0, 10.5, 11.0, 9.0, 9.5, 12.0])


def test_tiny_end_to_end_stage_times_the_bare_step_right_around_each_trainer_run(tmp_path, tables, stats_cell):
    """The real stage: shards from the preprocessing job, trainer.task under both strategies, bare workers."""
    output = tmp_path / "BENCHMARKS.md"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--tiny", "--repeats", "2", "--stages", "end_to_end", "--output", str(output)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Each trainer run sits between its two bare-step workers, with nothing else in between.
    steps = [line.split("] ", 1)[1] for line in proc.stdout.splitlines() if "] end_to_end: " in line]
    for strategy in ("default", "mirrored"):
        i = steps.index("end_to_end: trainer.task --strategy %s" % strategy)
        assert steps[i - 1 : i + 2] == ["end_to_end: bare step before the trainer, %s" % strategy, steps[i],
                                        "end_to_end: bare step after the trainer, %s" % strategy], steps  # fmt: skip
    text = output.read_text()
    table = next(t for t in tables(text) if t[0][:3] == ["strategy", "trainer images/s", "bare step images/s"])
    assert [row[0] for row in table[1:]] == ["default", "mirrored, 2 logical CPU devices"]
    bare_cell = re.compile(r"^(\d+\.\d) \((\d+\.\d)-(\d+\.\d)\); before (\d+\.\d), after (\d+\.\d)$")
    targets = {row[0]: row[1] for row in next(t for t in tables(text) if t[0][:2] == ["target", "measured"])[1:]}
    for row in table[1:]:
        assert stats_cell.match(row[1]), row
        median, low, high, before, after = map(float, bare_cell.match(row[2]).groups())
        assert low <= min(before, after) <= median <= max(before, after) <= high, row
        ratio = float(row[3].split(" ")[0])
        # The cells are rounded to 0.1 images/s and the ratio to 0.01: the ratio lies within that rounding.
        trainer = float(row[1].split(" ")[0])
        assert (trainer - 0.05) / (median + 0.05) - 0.005 <= ratio <= (trainer + 0.05) / (median - 0.05) + 0.005, row
        assert row[3].endswith("(met)" if ratio >= 0.9 else "(missed)")
        assert targets["trainer.task >= 0.9 of the bare step, " + row[0].split(",")[0]] == "%.2f" % ratio
        assert "python -m trainer.task --data_dir SHARDS --model_dir RUN_DIR" in row[5]
        assert "bare: `python -m benchmarks.distribute" in row[5]
