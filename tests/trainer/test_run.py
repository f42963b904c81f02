"""trainer.run through `trainer.task.main` on the shared finished run (the `finished_run` fixture):
the model directory's layout, --eval_only, resuming and its config checks, missing shards, a
non-chief worker, the bfloat16 warning; and two --deterministic runs in processes of their own.

Some tests here rerun the command in the run's model directory (an evaluation, a resume
that trains nothing); the run's own results are kept in the fixture.
"""
import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from tests.helpers.trainer_data import (
    REPO, RUN_EPOCHS, RUN_STEPS, run_args, subprocess_env, task_command, write_dataset,
)
from trainer import config as config_lib
from trainer import cpu as cpu_lib
from trainer import strategy as strategy_lib
from trainer import task


def test_model_dir_layout_and_results(finished_run):
    m = finished_run["model_dir"]
    # Steps 2, 3 (epoch 1 end), 4, 6 (epoch 2 end): the last two kept.
    assert sorted(p.name for p in (m / "checkpoints").glob("*.index")) == ["ckpt-4.index", "ckpt-6.index"]
    assert len(list((m / "best").glob("best-*.index"))) == 1
    saved = json.loads((m / "config.json").read_text())
    assert config_lib.from_dict(saved).steps_per_epoch == RUN_STEPS and saved["ten_crop"] is True
    results = finished_run["results"]  # eval.json as the run wrote it
    assert results["step"] == RUN_EPOCHS * RUN_STEPS
    # Every validation example (3 classes x 4) counted exactly once, in both evaluations.
    assert results["centre_crop"]["examples"] == 12 and results["ten_view"]["examples"] == 12
    for view in ("centre_crop", "ten_view"):
        assert 0.0 <= results[view]["top1"] <= results[view]["top5"] <= 1.0
    assert (m / "export" / "alexnet.keras").is_file()
    assert (m / "export" / "saved_model" / "saved_model.pb").is_file()
    # The profiler trace of steps 2-3 went where TensorBoard's Profile tab looks.
    assert list((m / "logs" / "train" / "plugins" / "profile").rglob("*.xplane.pb"))


def test_eval_only_reports_both_views_of_the_latest_checkpoint(finished_run, capsys, tmp_path):
    before = finished_run["results"]  # eval.json as the run wrote it
    assert task.main(run_args(finished_run["data"], finished_run["model_dir"], "--eval_only")) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "ckpt-6 (step 6) on 12 validation images" in line and "10 views top-1" in line
    after = json.loads((finished_run["model_dir"] / "eval.json").read_text())
    assert after["checkpoint"].endswith("ckpt-6") and after["step"] == 6
    for view in ("centre_crop", "ten_view"):
        assert after[view]["top1"] == pytest.approx(before[view]["top1"])
        assert after[view]["loss"] == pytest.approx(before[view]["loss"], rel=1e-4)
    # Nothing to evaluate is a user error, not a fresh model's accuracy.
    assert task.main(run_args(finished_run["data"], tmp_path / "empty", "--eval_only")) == 2
    assert "found no checkpoint" in capsys.readouterr().err


def test_resume_refuses_a_changed_config_unless_allowed(finished_run, capsys):
    m = finished_run["model_dir"]
    assert task.main(run_args(finished_run["data"], m, "--learning_rate", "0.02")) == 2
    err = capsys.readouterr().err
    assert "config.json differs" in err and "learning_rate: saved 0.01, now 0.02" in err
    assert json.loads((m / "config.json").read_text())["learning_rate"] == 0.01


def test_rerunning_a_finished_command_trains_no_further(finished_run, capsys):
    m = finished_run["model_dir"]
    assert task.main(run_args(finished_run["data"], m, "--ten_crop", "--no_export")) == 0
    out = capsys.readouterr().out
    assert "resumed from" in out and "at step 6 (epoch 2 completed)" in out
    assert "epoch 1/2" not in out and "trained 2 epochs (6 steps)" in out.strip().splitlines()[-1]
    assert sorted(p.name for p in (m / "checkpoints").glob("*.index")) == ["ckpt-4.index", "ckpt-6.index"]


def _copy_split(finished_run, dest, split):
    """A data folder holding metadata.json and only `split`'s shards of the run's data."""
    dest.mkdir()
    shutil.copy(finished_run["data"] / "metadata.json", dest)
    for shard in finished_run["data"].glob(split + "-*"):
        shutil.copy(shard, dest)
    return dest


def test_missing_validation_shards_are_one_line_before_training(finished_run, tmp_path, capsys):
    data = _copy_split(finished_run, tmp_path / "train_only", "train")
    assert task.main(run_args(data, tmp_path / "run")) == 2
    captured = capsys.readouterr()
    assert len(captured.err.strip().splitlines()) == 1 and "no validation data" in captured.err
    assert "epoch 1/2" not in captured.out and not (tmp_path / "run" / "checkpoints").exists()


def test_eval_only_needs_only_validation_shards(finished_run, tmp_path, capsys):
    data = _copy_split(finished_run, tmp_path / "val_only", "validation")
    checkpoint = str(finished_run["model_dir"] / "checkpoints" / "ckpt-6")
    assert task.main(run_args(data, tmp_path / "eval", "--eval_only", "--checkpoint", checkpoint)) == 0
    assert "on 12 validation images" in capsys.readouterr().out.strip().splitlines()[-1]
    # No training shards for a training run is the same kind of one-line error.
    assert task.main(run_args(data, tmp_path / "train")) == 2
    assert "no train data" in capsys.readouterr().err


def test_resuming_a_changed_model_is_one_line_and_keeps_the_config(finished_run, tmp_path, capsys):
    """--allow_config_change with a change of weight shapes (--two_tower halves conv2's inputs)
    cannot restore the checkpoints: a cli.UsageError, and config.json is left as it was."""
    m = tmp_path / "run"
    (m / "checkpoints").mkdir(parents=True)
    shutil.copy(finished_run["model_dir"] / "config.json", m)
    for f in (finished_run["model_dir"] / "checkpoints").iterdir():
        # Hard links: the checkpoints are only read; the small state file is copied.
        (shutil.copy if f.name == "checkpoint" else os.link)(f, m / "checkpoints" / f.name)
    saved = (m / "config.json").read_text()
    assert task.main(run_args(finished_run["data"], m, "--ten_crop", "--two_tower", "--allow_config_change")) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "cannot restore" in err and "ckpt-6" in err, err
    assert (m / "config.json").read_text() == saved and not list(m.glob("config-*"))


def test_a_non_chief_worker_writes_no_tensorboard_logs(finished_run, tmp_path, monkeypatch):
    """Summaries are enabled on the chief only (a non-chief's write dir is thrown away anyway)."""
    monkeypatch.setattr(strategy_lib, "is_chief", lambda strategy: False)
    monkeypatch.setattr(strategy_lib, "write_dir", lambda directory, strategy: directory)
    monkeypatch.setattr(strategy_lib, "cleanup_write_dir", lambda directory, strategy: None)
    m = tmp_path / "worker"
    assert task.main(run_args(finished_run["data"], m, "--epochs", "1", "--steps_per_epoch", "1", "--no_export")) == 0
    assert (m / "checkpoints").is_dir()  # it took part in saving
    assert not [p for p in (m / "logs").rglob("*") if p.is_file()]


@pytest.mark.parametrize("flags,warned", [({"avx2", "fma"}, True), ({"avx2", "avx512_bf16"}, False)])
def test_bfloat16_on_a_cpu_without_it_warns_once(finished_run, capsys, monkeypatch, flags, warned):
    # The CPU's flags are stubbed; the run (an evaluation under the bfloat16 policy) is real.
    monkeypatch.setattr(cpu_lib, "cpu_flags", lambda: set(flags))
    args = run_args(finished_run["data"], finished_run["model_dir"], "--eval_only", "--mixed_precision", "bfloat16")
    assert task.main(args) == 0
    out = capsys.readouterr().out
    assert out.count("warning: --mixed_precision bfloat16 on a CPU without native bfloat16") == (1 if warned else 0)
    assert "centre crop top-1" in out.strip().splitlines()[-1]


@pytest.mark.parametrize("strategy", [[], ["--strategy", "mirrored", "--cpu_replicas", "2"]], ids=["default", "mirrored"])
def test_two_deterministic_runs_give_byte_identical_weights(tmp_path, strategy):
    """Two processes at once, the same seed, data and strategy, every augmentation and dropout on:
    the final weights are equal bit for bit, and config.json records the switch."""
    data = tmp_path / "data"
    # 4 classes x 4 validation images: every replica's evaluation batches are full under mirrored.
    write_dataset(data, num_classes=4, train_per_class=8, val_per_class=4, size=72)
    procs = [
        subprocess.Popen(
            task_command(*run_args(data, tmp_path / ("run%d" % i), "--deterministic", "--no_export",
                                   "--dump_weights", tmp_path / ("w%d.npz" % i), *strategy)),
            cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
    first, second = (np.load(tmp_path / ("w%d.npz" % i)) for i in range(2))
    assert first.files == second.files and len(first.files) == 16  # 8 layers' kernels and biases
    for name in first.files:
        assert first[name].tobytes() == second[name].tobytes(), name
    saved = json.loads((tmp_path / "run0" / "config.json").read_text())
    assert saved["deterministic"] is True and saved["seed"] == 7
