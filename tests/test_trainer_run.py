"""One finished training run (shared by the tests here): layout, TensorBoard over HTTP,
--eval_only, the exported SavedModel serving JPEG files, and config checks on resume.
"""
import json
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.helpers.trainer_data import free_port, subprocess_env, write_dataset
from trainer import config as config_lib
from trainer import task

EPOCHS, STEPS, BATCH = 2, 3, 8


def _args(data, model_dir, *extra):
    return [
        "--data_dir", str(data), "--model_dir", str(model_dir), "--image_size", "67", "--batch_size", str(BATCH),
        "--epochs", str(EPOCHS), "--steps_per_epoch", str(STEPS), "--init", "he", "--learning_rate", "0.01",
        "--checkpoint_every_steps", "2", "--keep_checkpoints", "2", "--profile_steps", "2,3", "--seed", "7", *extra,
    ]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("trainer_run")
    data = root / "data"
    written = write_dataset(data, num_classes=3, train_per_class=8, val_per_class=4, size=72)
    model_dir = root / "run"
    code = task.main(_args(data, model_dir, "--ten_crop"))
    assert code == 0
    return {"data": data, "model_dir": model_dir, "jpegs": written["jpegs"], "root": root}


def test_model_dir_layout_and_results(finished_run):
    m = finished_run["model_dir"]
    # Steps 2, 3 (epoch 1 end), 4, 6 (epoch 2 end): the last two kept.
    assert sorted(p.name for p in (m / "checkpoints").glob("*.index")) == ["ckpt-4.index", "ckpt-6.index"]
    assert len(list((m / "best").glob("best-*.index"))) == 1
    saved = json.loads((m / "config.json").read_text())
    assert config_lib.from_dict(saved).steps_per_epoch == STEPS and saved["ten_crop"] is True
    results = json.loads((m / "eval.json").read_text())
    assert results["step"] == EPOCHS * STEPS
    # Every validation example (3 classes x 4) counted exactly once, in both evaluations.
    assert results["centre_crop"]["examples"] == 12 and results["ten_view"]["examples"] == 12
    for view in ("centre_crop", "ten_view"):
        assert 0.0 <= results[view]["top1"] <= results[view]["top5"] <= 1.0
    assert (m / "export" / "alexnet.keras").is_file()
    assert (m / "export" / "saved_model" / "saved_model.pb").is_file()
    # The profiler trace of steps 2-3 went where TensorBoard's Profile tab looks.
    assert list((m / "logs" / "train" / "plugins" / "profile").rglob("*.xplane.pb"))


def _get(port, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
        return json.loads(r.read().decode("utf-8"))


def test_tensorboard_serves_runs_and_scalar_tags(finished_run):
    log_dir = finished_run["model_dir"] / "logs"
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(log_dir), "--host", "127.0.0.1", "--port", str(port), "--reload_interval", "1"],
        env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.time() + 120
        runs = []
        while time.time() < deadline:
            try:
                runs = _get(port, "/data/runs")
                if {"train", "validation"} <= set(runs):
                    break
            except OSError:
                pass
            time.sleep(1)
        assert {"train", "validation"} <= set(runs), runs
        tags = _get(port, "/data/plugin/scalars/tags")
        for run in ("train", "validation"):
            assert {"loss", "top1_accuracy", "top5_accuracy"} <= set(tags[run]), tags
        assert {"learning_rate", "images_per_second", "batch/loss", "objective", "batch/objective"} <= set(tags["train"])
        assert "objective" not in tags["validation"]
        # "loss" is the cross-entropy in both runs; train's "objective" adds the L2 term on top.
        train_loss = _get(port, "/data/plugin/scalars/scalars?run=train&tag=loss")
        objective = _get(port, "/data/plugin/scalars/scalars?run=train&tag=objective")
        assert [r[1] for r in train_loss] == [r[1] for r in objective] == [STEPS, 2 * STEPS]
        assert all(o[2] > l[2] > 0 for o, l in zip(objective, train_loss)), (objective, train_loss)
        scalars = _get(port, "/data/plugin/scalars/scalars?run=validation&tag=top1_accuracy")
        assert [row[1] for row in scalars] == [STEPS, 2 * STEPS]  # one point per epoch, at its global step
        assert "augmented_inputs" in _get(port, "/data/plugin/images/tags")["train"]
        assert "conv1/kernel" in _get(port, "/data/plugin/histograms/tags")["train"]
        assert "train_step" in _get(port, "/data/plugin/graphs/info")["train"]["tags"]
        request = urllib.request.Request(
            "http://127.0.0.1:%d/data/plugin/hparams/experiment" % port,
            data=json.dumps({"experimentName": ""}).encode(), headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            experiment = json.loads(r.read().decode("utf-8"))
        assert {"batch_size", "learning_rate", "init", "lrn"} <= {h["name"] for h in experiment["hparamInfos"]}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_exported_saved_model_classifies_jpeg_files(finished_run):
    """A fresh process that never imports the project loads the SavedModel and serves JPEG files."""
    jpegs = finished_run["jpegs"]
    script = (
        "import json, sys, tensorflow as tf\n"
        "m = tf.saved_model.load(sys.argv[1])\n"
        "serve = m.signatures['serving_default']\n"
        "paths = json.loads(sys.argv[2])\n"
        "out = serve(image_bytes=tf.constant([open(p, 'rb').read() for p in paths]))\n"
        "print(json.dumps({k: v.numpy().tolist() if v.dtype != tf.string else [[s.decode() for s in r] for r in v.numpy()] for k, v in out.items()}))\n"
    )
    saved_model = finished_run["model_dir"] / "export" / "saved_model"
    env = subprocess_env()
    env.pop("PYTHONPATH")
    proc = subprocess.run(
        [sys.executable, "-c", script, str(saved_model), json.dumps([p for p, _ in jpegs])],
        cwd=finished_run["root"], env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    meta = json.loads((finished_run["data"] / "metadata.json").read_text())
    assert len(out["classes"]) == len(jpegs) and all(len(row) == 3 for row in out["classes"])  # top-5 of 3 classes = 3
    for classes, synsets, probs in zip(out["classes"], out["synsets"], out["probabilities"]):
        assert synsets == [meta["synsets"][c] for c in classes]
        assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1.0, abs=1e-4)
    # Serving preprocessing is the validation pipeline's: top-1 over the JPEG files
    # equals the centre-crop top-1 the run measured on the same images.
    correct = sum(classes[0] == label for classes, (_, label) in zip(out["classes"], jpegs))
    results = json.loads((finished_run["model_dir"] / "eval.json").read_text())
    assert correct == round(results["centre_crop"]["top1"] * len(jpegs))


def test_eval_only_reports_both_views_of_the_latest_checkpoint(finished_run, capsys, tmp_path):
    before = json.loads((finished_run["model_dir"] / "eval.json").read_text())
    assert task.main(_args(finished_run["data"], finished_run["model_dir"], "--eval_only")) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "ckpt-6 (step 6) on 12 validation images" in line and "10 views top-1" in line
    after = json.loads((finished_run["model_dir"] / "eval.json").read_text())
    assert after["checkpoint"].endswith("ckpt-6") and after["step"] == 6
    for view in ("centre_crop", "ten_view"):
        assert after[view]["top1"] == pytest.approx(before[view]["top1"])
        assert after[view]["loss"] == pytest.approx(before[view]["loss"], rel=1e-4)
    # Nothing to evaluate is a user error, not a fresh model's accuracy.
    assert task.main(_args(finished_run["data"], tmp_path / "empty", "--eval_only")) == 2
    assert "found no checkpoint" in capsys.readouterr().err


def test_resume_refuses_a_changed_config_unless_allowed(finished_run, capsys):
    m = finished_run["model_dir"]
    assert task.main(_args(finished_run["data"], m, "--learning_rate", "0.02")) == 2
    err = capsys.readouterr().err
    assert "config.json differs" in err and "learning_rate: saved 0.01, now 0.02" in err
    assert json.loads((m / "config.json").read_text())["learning_rate"] == 0.01


def test_rerunning_a_finished_command_trains_no_further(finished_run, capsys):
    m = finished_run["model_dir"]
    assert task.main(_args(finished_run["data"], m, "--ten_crop", "--no_export")) == 0
    out = capsys.readouterr().out
    assert "resumed from" in out and "at step 6 (epoch 2 completed)" in out
    assert "epoch 1/2" not in out and "trained 2 epochs (6 steps)" in out.strip().splitlines()[-1]
    assert sorted(p.name for p in (m / "checkpoints").glob("*.index")) == ["ckpt-4.index", "ckpt-6.index"]


def test_serving_resizes_like_the_beam_job_before_the_eval_crop(finished_run):
    """A larger non-square JPEG is served as evaluation sees its Beam-processed copy.

    The data set stores 72-pixel squares (metadata.json image_size) and the model
    takes 67-pixel centre crops of them; a 144x180 client image must be resized
    like preprocessing.images does first, not centre-cropped at 67 pixels straight
    out of its original resolution.
    """
    import keras
    import numpy as np
    import tensorflow as tf

    import model  # noqa: F401  (registers the LRN layer for loading the .keras file)
    from preprocessing import images
    from tests.helpers.trainer_data import _jpeg, make_image
    from trainer import export, input_pipeline

    info = input_pipeline.read_data_info(str(finished_run["data"]))
    assert info.image_size == 72
    big = make_image(1, 0, 180, np.random.default_rng(1))[18:162]  # 144 x 180, about twice the stored size
    original = _jpeg(big)
    stored = images.process_image(original, info.image_size)[0]  # what the Beam job writes
    keras_model = keras.models.load_model(str(finished_run["model_dir"] / "export" / export.KERAS_FILE))

    def probabilities(image):
        return tf.nn.softmax(keras_model(image[tf.newaxis], training=False))[0].numpy()

    evaluated = probabilities(input_pipeline.decode_and_center_crop(tf.constant(stored), 67, info.rgb_mean))
    old = probabilities(input_pipeline.decode_and_center_crop(tf.constant(original), 67, info.rgb_mean))
    served = tf.saved_model.load(str(finished_run["model_dir"] / "export" / "saved_model"))
    out = served.signatures["serving_default"](image_bytes=tf.constant([original]))
    got = np.zeros(3)
    got[out["classes"].numpy()[0]] = out["probabilities"].numpy()[0]
    new_error, old_error = np.abs(got - evaluated).max(), np.abs(old - evaluated).max()
    assert new_error < 0.2 * old_error, (got, evaluated, old)
    # The model inputs themselves: JPEG re-encoding noise apart, the same pixels.
    new_input = export.serving_image(tf.constant(original), 67, info.image_size, info.rgb_mean)
    eval_input = input_pipeline.decode_and_center_crop(tf.constant(stored), 67, info.rgb_mean)
    old_input = export.serving_image(tf.constant(original), 67, None, info.rgb_mean)
    assert float(tf.reduce_mean(tf.abs(new_input - eval_input))) < 0.03
    assert float(tf.reduce_mean(tf.abs(old_input - eval_input))) > 0.1


def _copy_split(finished_run, dest, split):
    """A data folder holding metadata.json and only `split`'s shards of the run's data."""
    import shutil

    dest.mkdir()
    shutil.copy(finished_run["data"] / "metadata.json", dest)
    for shard in finished_run["data"].glob(split + "-*"):
        shutil.copy(shard, dest)
    return dest


def test_missing_validation_shards_are_one_line_before_training(finished_run, tmp_path, capsys):
    data = _copy_split(finished_run, tmp_path / "train_only", "train")
    assert task.main(_args(data, tmp_path / "run")) == 2
    captured = capsys.readouterr()
    assert len(captured.err.strip().splitlines()) == 1 and "no validation data" in captured.err
    assert "epoch 1/2" not in captured.out and not (tmp_path / "run" / "checkpoints").exists()


def test_eval_only_needs_only_validation_shards(finished_run, tmp_path, capsys):
    data = _copy_split(finished_run, tmp_path / "val_only", "validation")
    checkpoint = str(finished_run["model_dir"] / "checkpoints" / "ckpt-6")
    assert task.main(_args(data, tmp_path / "eval", "--eval_only", "--checkpoint", checkpoint)) == 0
    assert "on 12 validation images" in capsys.readouterr().out.strip().splitlines()[-1]
    # No training shards for a training run is the same kind of one-line error.
    assert task.main(_args(data, tmp_path / "train")) == 2
    assert "no train data" in capsys.readouterr().err


def test_resuming_a_changed_model_is_one_line_and_keeps_the_config(finished_run, tmp_path, capsys):
    """--allow_config_change with a change of weight shapes (--two_tower halves conv2's inputs)
    cannot restore the checkpoints: a RunError, and config.json is left as it was."""
    import os
    import shutil

    m = tmp_path / "run"
    (m / "checkpoints").mkdir(parents=True)
    shutil.copy(finished_run["model_dir"] / "config.json", m)
    for f in (finished_run["model_dir"] / "checkpoints").iterdir():
        # Hard links: the checkpoints are only read; the small state file is copied.
        (shutil.copy if f.name == "checkpoint" else os.link)(f, m / "checkpoints" / f.name)
    saved = (m / "config.json").read_text()
    assert task.main(_args(finished_run["data"], m, "--ten_crop", "--two_tower", "--allow_config_change")) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "cannot restore" in err and "ckpt-6" in err, err
    assert (m / "config.json").read_text() == saved and not list(m.glob("config-*"))


def test_a_non_chief_worker_writes_no_tensorboard_logs(finished_run, tmp_path, monkeypatch):
    """Summaries are enabled on the chief only (a non-chief's write dir is thrown away anyway)."""
    from trainer import strategy as strategy_lib

    monkeypatch.setattr(strategy_lib, "is_chief", lambda strategy: False)
    monkeypatch.setattr(strategy_lib, "write_dir", lambda directory, strategy: directory)
    monkeypatch.setattr(strategy_lib, "cleanup_write_dir", lambda directory, strategy: None)
    m = tmp_path / "worker"
    assert task.main(_args(finished_run["data"], m, "--epochs", "1", "--steps_per_epoch", "1", "--no_export")) == 0
    assert (m / "checkpoints").is_dir()  # it took part in saving
    assert not [p for p in (m / "logs").rglob("*") if p.is_file()]


@pytest.mark.parametrize("flags,warned", [({"avx2", "fma"}, True), ({"avx2", "avx512_bf16"}, False)])
def test_bfloat16_on_a_cpu_without_it_warns_once(finished_run, capsys, monkeypatch, flags, warned):
    # The CPU's flags are stubbed; the run (an evaluation under the bfloat16 policy) is real.
    from trainer import cpu as cpu_lib

    monkeypatch.setattr(cpu_lib, "cpu_flags", lambda: set(flags))
    assert task.main(_args(finished_run["data"], finished_run["model_dir"], "--eval_only", "--mixed_precision", "bfloat16")) == 0
    out = capsys.readouterr().out
    assert out.count("warning: --mixed_precision bfloat16 on a CPU without native bfloat16") == (1 if warned else 0)
    assert "centre crop top-1" in out.strip().splitlines()[-1]
