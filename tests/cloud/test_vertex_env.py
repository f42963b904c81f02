"""The trainer in a Vertex-AI-shaped environment: AIP_* directories and a CLUSTER_SPEC.

Two `python -m trainer.task` processes play the two replicas of a
multi_worker_mirrored job on 127.0.0.1, with the arguments the submitter puts in
the job spec and the variables Vertex AI sets from `baseOutputDirectory`
(AIP_MODEL_DIR=<base>/model/, AIP_CHECKPOINT_DIR=<base>/checkpoints/,
AIP_TENSORBOARD_LOG_DIR=<base>/logs/) and its CLUSTER_SPEC (pool 0 = chief,
pool 1 = workers). TF_CONFIG is left unset so the trainer must read CLUSTER_SPEC.
"""
import json
import os
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.helpers.trainer_data import write_dataset
from cloud import job_spec

REPO = Path(__file__).resolve().parents[2]


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*"))


def test_trainer_writes_where_vertex_expects(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    # 3 classes, 24 train / 9 validation examples in 2 + 2 shards, stored at 72 (crops of 67).
    write_dataset(data, num_classes=3, train_per_class=8, val_per_class=3, size=72)
    base = tmp_path / "base"  # stands for gs://bucket/runs/TAG, the job's baseOutputDirectory

    spec = job_spec.build_job_spec(
        display_name="vertex-env-test",
        image_uri="alexnet-trainer:test",
        base_output_dir="gs://test-bucket/runs/t",
        strategy="multi_worker_mirrored",
        machines=2,
        gpus_per_machine=0,
        machine_type="n1-standard-4",
        accelerator_type="",
        trainer_args=[
            "--data_dir=%s" % data, "--image_size=67", "--batch_size=8", "--epochs=1", "--steps_per_epoch=3",
            "--val_steps=1", "--init=he", "--checkpoint_every_steps=2", "--seed=3",
        ],
    )
    pools = spec["jobSpec"]["workerPoolSpecs"]
    assert [p["replicaCount"] for p in pools] == [1, 1]
    addresses = ["127.0.0.1:%d" % p for p in _free_ports(2)]
    procs = []
    for index, pool in enumerate(pools):
        cluster_spec = {
            "cluster": {"workerpool0": [addresses[0]], "workerpool1": [addresses[1]]},
            "environment": "cloud",
            "task": {"type": "workerpool%d" % index, "index": 0, "trial": ""},
            "job": json.dumps(spec["jobSpec"]),
        }
        env = {k: v for k, v in os.environ.items() if k not in ("TF_CONFIG", "CLUSTER_SPEC") and not k.startswith("AIP_")}
        env.update(
            # Vertex AI's values end with a slash; the trainer must cope.
            AIP_MODEL_DIR="%s/model/" % base,
            AIP_CHECKPOINT_DIR="%s/checkpoints/" % base,
            AIP_TENSORBOARD_LOG_DIR="%s/logs/" % base,
            CLUSTER_SPEC=json.dumps(cluster_spec),
            PYTHONPATH=str(REPO),
            TF_CPP_MIN_LOG_LEVEL="2",
            TMPDIR=str(tmp_path / ("tmp%d" % index)),  # where a non-chief writes its throw-away copies
        )
        for d in ("cwd%d" % index, "tmp%d" % index):
            (tmp_path / d).mkdir()
        # The container's own working directory, not the repository: nothing may land there.
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "trainer.task", *pool["containerSpec"]["args"]],
                cwd=tmp_path / ("cwd%d" % index), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
        )
    outputs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=480)
            outputs.append((p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for code, out, _ in outputs:
        # Both replicas' ends: when one dies, the other's error only says it stopped sending heartbeats.
        assert code == 0, "\n---\n".join(e[-2500:] for _, _, e in outputs)
        assert "trained 1 epochs (3 steps)" in out.strip().splitlines()[-1], out[-2000:]

    # Exactly the three directories Vertex AI named, and nothing anywhere else.
    assert sorted(p.name for p in base.iterdir()) == ["checkpoints", "logs", "model"]
    assert _tree(tmp_path / "cwd0") == [] and _tree(tmp_path / "cwd1") == []
    assert _tree(tmp_path / "tmp1") == []  # the worker removed its private copies
    # Checkpoints (steps 2 and 3) in AIP_CHECKPOINT_DIR, written once, by the chief.
    assert sorted(p.name for p in (base / "checkpoints").glob("*.index")) == ["ckpt-2.index", "ckpt-3.index"]
    assert (base / "checkpoints" / "checkpoint").is_file()
    # TensorBoard event files in AIP_TENSORBOARD_LOG_DIR, one writer per run directory.
    events = sorted(p.relative_to(base / "logs") for p in (base / "logs").rglob("events.out.tfevents.*"))
    assert events, _tree(base / "logs")
    assert len({e.parent for e in events}) == len(events)
    assert Path("train") in {e.parent for e in events}
    # The trained model, its config and evaluation in AIP_MODEL_DIR.
    model = base / "model"
    assert (model / "config.json").is_file() and (model / "eval.json").is_file()
    assert json.loads((model / "config.json").read_text())["strategy"] == "multi_worker_mirrored"
    assert zipfile.is_zipfile(model / "export" / "alexnet.keras")
    assert (model / "export" / "saved_model" / "saved_model.pb").is_file()
