"""The training loop under MirroredStrategy (2 logical CPUs) and MultiWorkerMirroredStrategy (2 processes).

Both run in subprocesses: logical devices must be configured before TensorFlow
initialises, and multi-worker training needs one process per worker.
"""
import json
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers.trainer_data import REPO, free_port, run_task, subprocess_env, task_command, write_dataset

# One step under MirroredStrategy over /cpu:0 and /cpu:1 against one device, same
# global batch of 8, same initial weights; prints the losses and weight differences.
_MIRRORED_SCRIPT = r"""
import json, sys
import numpy as np
import tensorflow as tf
from trainer import config as config_lib, step, strategy as strategy_lib

strategy_lib.configure_cpu_replicas(2)
config = config_lib.TrainConfig(data_dir="unused", image_size=67, dropout_rate=0.0, init="he", seed=1, learning_rate=0.05)
rng = np.random.default_rng(0)
images = rng.normal(size=(8, 67, 67, 3)).astype("float32")
labels = rng.integers(0, 3, size=(8,)).astype("int32")

def dataset_fn(ctx):
    batch = ctx.get_per_replica_batch_size(8)
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch).repeat()

one = strategy_lib.make_strategy("one_device", None)
mirrored = strategy_lib.make_strategy("mirrored", None)
assert mirrored.num_replicas_in_sync == 2, mirrored.extended.worker_devices
t1 = step.Trainer(config, one, num_classes=3, global_batch_size=8)
t2 = step.Trainer(config, mirrored, num_classes=3, global_batch_size=8)
t2.model.set_weights(t1.model.get_weights())
before = [w.copy() for w in t1.model.get_weights()]
s1 = t1.train_steps(iter(one.distribute_datasets_from_function(dataset_fn)), 1)
s2 = t2.train_steps(iter(mirrored.distribute_datasets_from_function(dataset_fn)), 1)
w1, w2 = t1.model.get_weights(), t2.model.get_weights()
print(json.dumps({
    "replicas": mirrored.num_replicas_in_sync,
    "devices": list(mirrored.extended.worker_devices),
    "loss_one": s1["objective"], "loss_mirrored": s2["objective"],
    "examples": [s1["examples"], s2["examples"]],
    "max_weight_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(w1, w2)),
    "max_update": max(float(np.max(np.abs(a - b))) for a, b in zip(w1, before)),
    "steps": [int(t1.state.step.numpy()), int(t2.state.step.numpy())],
}))
"""


def test_mirrored_two_cpus_matches_one_device():
    proc = subprocess.run(
        [sys.executable, "-c", _MIRRORED_SCRIPT], cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2 and len(out["devices"]) == 2
    assert out["examples"] == [8.0, 8.0] and out["steps"] == [1, 1]
    assert out["loss_mirrored"] == pytest.approx(out["loss_one"], rel=1e-5)
    # The step really moved the weights, and both strategies moved them the same way.
    assert out["max_update"] > 1e-4
    assert out["max_weight_diff"] < 1e-5 * max(1.0, out["max_update"] * 100)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("mw_data")
    write_dataset(root, num_classes=3, train_per_class=8, val_per_class=4, size=72, train_shards=2, val_shards=2)
    return root


@pytest.mark.parametrize("strategy", ["mirrored", "auto"])
def test_xla_over_logical_cpu_devices_is_refused_in_one_line(tiny_data, tmp_path, strategy):
    """XLA cannot run the mirrored step over 2 logical CPUs (TensorFlow stops with a
    cross-device resource error, keras-team/keras#19005): one error line, exit 2,
    before the run writes anything."""
    model_dir = tmp_path / "run"
    proc = run_task(
        "--data_dir", tiny_data, "--model_dir", model_dir, "--strategy", strategy, "--cpu_replicas", "2", "--xla",
        "--image_size", "67", "--batch_size", "4", "--epochs", "1", "--no_export",
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "InvalidArgumentError" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("python -m trainer.task")]
    assert errors == [
        "python -m trainer.task: error: --xla cannot run the step mirrored over 2 logical CPU devices "
        "(--cpu_replicas 2): each replica's variables live on its own device and XLA reads them from /cpu:0 "
        "(keras-team/keras#19005). Drop --xla, or use --cpu_replicas 1."
    ]
    assert not model_dir.exists()


def _start_workers(data_dir, model_dir, flags_of, **env):
    """Two trainer processes forming one multi-worker cluster on loopback.

    Args:
      data_dir, model_dir: shared by both workers (only the chief writes).
      flags_of: index -> the worker's trainer flags beyond the shared ones (later flags win).
      **env: environment variables of both workers.

    Returns:
      The two Popen objects, worker 0 (the chief) first.
    """
    cluster = {"worker": ["127.0.0.1:%d" % free_port() for _ in range(2)]}
    procs = []
    try:
        for index in range(2):
            task = {"type": "worker", "index": index}
            worker_env = subprocess_env(TF_CONFIG=json.dumps({"cluster": cluster, "task": task}), **env)
            args = [
                "--data_dir", data_dir, "--model_dir", model_dir, "--strategy", "multi_worker_mirrored",
                "--image_size", "67", "--batch_size", "8", "--epochs", "1", "--init", "he", "--no_export",
                "--val_steps", "1", "--seed", "3", *flags_of(index),
            ]  # fmt: skip
            procs.append(subprocess.Popen(
                task_command(*args), cwd=REPO, env=worker_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            ))
    except BaseException:
        _kill_running(procs)  # worker 0 would wait for its missing peer
        raise
    return procs


def _kill_running(procs):
    for p in procs:
        if p.poll() is None:
            p.kill()


def _finish(procs, timeout):
    """(exit code, stdout, stderr) of each process; any still running at the end is killed."""
    outputs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            outputs.append((p.returncode, out, err))
    finally:
        _kill_running(procs)
    return outputs


def test_two_multi_worker_processes_end_with_identical_weights(tiny_data, tmp_path):
    model_dir = tmp_path / "run"
    procs = _start_workers(tiny_data, model_dir, lambda index: [
        "--steps_per_epoch", "3", "--checkpoint_every_steps", "0", "--dump_weights", tmp_path / ("weights-%d.npz" % index),
    ])  # fmt: skip
    outputs = _finish(procs, timeout=400)
    for code, out, err in outputs:
        assert code == 0, err[-3000:]
        assert "trained 1 epochs (3 steps)" in out.strip().splitlines()[-1]
    a = np.load(tmp_path / "weights-0.npz")
    b = np.load(tmp_path / "weights-1.npz")
    assert len(a.files) == len(b.files) == 16  # 8 layers x (kernel, bias)
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key])
    # Only the chief (worker 0) wrote into the shared model_dir: one set of event files,
    # the epoch-end checkpoint, and config.json.
    assert sorted(p.name for p in (model_dir / "checkpoints").glob("*.index")) == ["ckpt-3.index"]
    assert len(list((model_dir / "logs" / "train").glob("events.out.tfevents.*"))) == 1
    assert (model_dir / "config.json").exists()


def test_sigterm_to_one_worker_stops_both_at_the_same_step(tiny_data, tmp_path):
    """Preemption may signal one worker only: the stop request travels with the step's
    all-reduced totals, so both workers stop, save together and exit 143 at one step."""
    import re
    import signal
    import time

    import tensorflow as tf

    from trainer import checkpoints as ckpt_lib

    model_dir = tmp_path / "run"
    procs = _start_workers(tiny_data, model_dir, lambda index: ["--steps_per_epoch", "400", "--checkpoint_every_steps", "2"])
    try:
        deadline = time.time() + 240
        while not tf.train.latest_checkpoint(str(model_dir / "checkpoints")):
            assert time.time() < deadline and all(p.poll() is None for p in procs), "no checkpoint from the running workers"
            time.sleep(0.1)
        procs[1].send_signal(signal.SIGTERM)  # the non-chief only
    except BaseException:
        _kill_running(procs)
        raise
    outputs = _finish(procs, timeout=60)
    steps = []
    for code, out, err in outputs:
        assert code == 143, err[-3000:]
        steps.append(int(re.search(r"at step (\d+); rerun", out).group(1)))
    assert "SIGTERM received by another worker" in outputs[0][1] and "SIGTERM received: saved" in outputs[1][1]
    assert steps[0] == steps[1] < 400
    assert ckpt_lib.step_of(tf.train.latest_checkpoint(str(model_dir / "checkpoints"))) == steps[0]


# --- evaluation on validation sets that divide evenly neither between the workers nor by the batch.
# oneDNN on: its Conv2D returns its input for an empty batch, which is how a replica handed one
# crashed (at lrn1, "Incompatible shapes: [0,67,67,3] vs. [0,15,15,96]").
_ONEDNN = {"TF_ENABLE_ONEDNN_OPTS": "1"}
_UNEVEN_SHARDS = (300, 290, 260, 250)  # 1,100 examples; worker 0 reads shards 0 and 2, worker 1 shards 1 and 3


def _assert_every_example_counted(model_dir, total, class_counts):
    """eval.json counts `total` in both views; the per-class files agree with it and with the classes' sizes."""
    from trainer import per_class

    results = json.loads((model_dir / "eval.json").read_text())
    reports = json.loads((model_dir / per_class.PER_CLASS_FILE).read_text())
    for view in ("centre_crop", "ten_view"):
        assert results[view]["examples"] == total
        classes = reports[view]["classes"]
        assert [c["examples"] for c in classes] == list(class_counts)
        weighted = sum(c["top1"] * c["examples"] for c in classes) / total
        assert weighted == pytest.approx(results[view]["top1"], abs=1e-9)
        rows = (model_dir / (per_class.CONFUSION_FILE % view)).read_text().splitlines()[1:]
        assert sum(int(v) for row in rows for v in row.split(",")[1:]) == total


def test_multi_worker_evaluation_counts_every_example_of_an_uneven_split(tmp_path):
    """560 and 540 validation examples on the two workers, per-replica batch 8: worker 1's data ends
    3 steps before worker 0's (and with a part batch); both exit 0 and every example counts once."""
    data = tmp_path / "data"
    write_dataset(data, num_classes=4, train_per_class=8, val_per_class=275, size=72, val_shard_sizes=_UNEVEN_SHARDS)
    model_dir = tmp_path / "run"
    procs = _start_workers(data, model_dir, lambda index: [
        "--batch_size", "16", "--val_steps", "0", "--steps_per_epoch", "2", "--checkpoint_every_steps", "0", "--ten_crop",
    ], **_ONEDNN)  # fmt: skip
    outputs = _finish(procs, timeout=600)
    for code, out, err in outputs:
        assert code == 0, err[-3000:]
        assert "(1100 examples)" in out and "(centre crop, 1100 images)" in out.strip().splitlines()[-1]
    _assert_every_example_counted(model_dir, 1100, [275] * 4)


def test_mirrored_over_two_cpus_evaluates_one_more_than_whole_batches(tmp_path):
    """1 + 3 * 16 validation examples, global batch 16 over 2 replicas: the last step has one example
    for replica 0 and none for replica 1; the trainer exits 0 and counts all 49."""
    data = tmp_path / "data"
    write_dataset(data, num_classes=3, train_per_class=8, val_per_class=(17, 16, 16), size=72)
    model_dir = tmp_path / "run"
    proc = run_task(
        "--data_dir", data, "--model_dir", model_dir, "--strategy", "mirrored", "--cpu_replicas", "2",
        "--image_size", "67", "--batch_size", "16", "--epochs", "1", "--steps_per_epoch", "1", "--init", "he",
        "--no_export", "--ten_crop", "--seed", "3",
        env=subprocess_env(**_ONEDNN),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "(49 examples)" in proc.stdout and "(centre crop, 49 images)" in proc.stdout.strip().splitlines()[-1]
    _assert_every_example_counted(model_dir, 49, [17, 16, 16])
