"""`python -m trainer.task --demo`, end to end in a reduced form.

The full demo (1,300 training images, 15 epochs, about 10 minutes on 2 cores)
is measured outside the suite; this runs the same path with 6 training and 3
validation images per class and one short epoch: the Beam job builds the demo
shards (in a child process: the trainer imports no Beam), the trainer trains on them with the demo recipe, evaluates both views,
exports, and prints where the logs are.
"""
import json
import subprocess
import sys

import pytest

import cli
from tests.helpers.trainer_data import REPO, subprocess_env
from trainer import config as config_lib
from trainer import demo_data
from trainer import task


def test_demo_builds_its_data_trains_and_prints_the_tensorboard_command(tmp_path, capsys):
    data_dir, model_dir = tmp_path / "demo_data", tmp_path / "runs" / "demo"
    # What an interrupted build leaves: a partial shard and no metadata.json.
    data_dir.mkdir()
    (data_dir / "train-00000-of-00004").write_bytes(b"partial")
    argv = [
        "--demo", "--data_dir", str(data_dir), "--model_dir", str(model_dir),
        "--demo_train_per_class", "6", "--demo_val_per_class", "3", "--epochs", "1", "--batch_size", "20",
    ]
    assert task.main(argv) == 0
    out = capsys.readouterr().out
    meta = json.loads((data_dir / "metadata.json").read_text())
    assert meta["num_classes"] == 10 and meta["counts"] == {"train": 60, "validation": 30}
    assert meta["image_size"] == config_lib.DEMO_STORED_SIZE
    config = json.loads((model_dir / "config.json").read_text())
    assert (config["init"], config["image_size"], config["demo"]) == ("he", 127, True)
    assert "demo data: building %s" % data_dir in out
    assert "an interrupted build?" in out
    assert not (data_dir / "train-00000-of-00004").exists()
    assert "tensorboard --logdir %s" % (model_dir / "logs") in out
    last = out.strip().splitlines()[-1]
    assert "trained 1 epochs (3 steps)" in last and "(centre crop, 30 images)" in last and "10 views top-1" in last
    results = json.loads((model_dir / "eval.json").read_text())
    assert results["centre_crop"]["examples"] == 30 and results["ten_view"]["examples"] == 30
    assert (model_dir / "export" / "saved_model" / "saved_model.pb").is_file()


def test_a_failed_demo_build_is_one_line_naming_the_command(tmp_path, monkeypatch):
    # A builder module that does not exist fails the way a crashed build does: a non-zero exit.
    monkeypatch.setattr(demo_data, "BUILDER", "preprocessing.no_such_builder")
    config = config_lib.TrainConfig(demo=True, data_dir=str(tmp_path / "demo_data"))
    with pytest.raises(cli.UsageError) as caught:
        demo_data.ensure_demo_data(config, log=lambda *a: None)
    message = str(caught.value)
    assert "\n" not in message
    command = "python -m preprocessing.no_such_builder --demo --output_dir %s --image_size %d" % (
        config.data_dir, config_lib.DEMO_STORED_SIZE)
    assert message.startswith("building the demo data set failed: %s exited with code 1: " % command)
    assert "No module named preprocessing.no_such_builder" in message


def test_the_trainer_imports_no_apache_beam():
    code = "import sys, trainer.task, trainer.run; print([m for m in sys.modules if m.startswith('apache_beam')])"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"
