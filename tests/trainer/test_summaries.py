"""trainer.summaries: the histogram tensor, and what TensorBoard serves from the shared finished run's logs."""
import json
import subprocess
import sys
import time
import urllib.request

import numpy as np

from tests.helpers.trainer_data import RUN_STEPS, free_port, subprocess_env
from trainer import summaries


def test_histogram_buckets_match_a_hand_count():
    t = summaries.histogram_tensor(np.array([[0.0, 1.0, 1.0, 2.0], [3.0, 3.0, 3.0, 4.0]]), buckets=4)
    np.testing.assert_array_equal(t, [[0, 1, 1], [1, 2, 2], [2, 3, 1], [3, 4, 4]])


def _get(port, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
        return json.loads(r.read().decode("utf-8"))


def test_tensorboard_serves_runs_and_scalar_tags(finished_run):
    log_dir = finished_run["model_dir"] / "logs"
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "tensorboard.main", "--logdir", str(log_dir), "--host", "127.0.0.1", "--port", str(port),
            "--reload_interval", "1",
        ],
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
        assert [r[1] for r in train_loss] == [r[1] for r in objective] == [RUN_STEPS, 2 * RUN_STEPS]
        assert all(o[2] > loss[2] > 0 for o, loss in zip(objective, train_loss)), (objective, train_loss)
        scalars = _get(port, "/data/plugin/scalars/scalars?run=validation&tag=top1_accuracy")
        assert [row[1] for row in scalars] == [RUN_STEPS, 2 * RUN_STEPS]  # one point per epoch, at its global step
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
