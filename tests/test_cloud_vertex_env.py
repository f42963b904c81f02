"""The trainer in a Vertex-AI-shaped environment: AIP_* directories and a CLUSTER_SPEC.

Two `python -m trainer.task` processes play the two replicas of a
multi_worker_mirrored job on 127.0.0.1, with the arguments the submitter puts in
the job spec and the variables Vertex AI sets from `baseOutputDirectory`
(AIP_MODEL_DIR=<base>/model/, AIP_CHECKPOINT_DIR=<base>/checkpoints/,
AIP_TENSORBOARD_LOG_DIR=<base>/logs/) and its CLUSTER_SPEC (pool 0 = chief,
pool 1 = workers). TF_CONFIG is left unset so the trainer must read CLUSTER_SPEC.
"""
import io
import json
import os
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from trainer import vertex

REPO = Path(__file__).resolve().parents[1]
NUM_CLASSES = 3
STORED = 72  # stored side; the trainer crops 67 (the smallest input AlexNet accepts)


def _write_shards(out_dir):
    """3 classes of coloured squares: 24 train / 9 validation examples in 2 + 2 shards, and metadata.json."""
    import tensorflow as tf
    from PIL import Image

    from preprocessing import schema

    rng = np.random.default_rng(0)
    colours = [(220, 40, 40), (40, 200, 60), (50, 70, 230)]
    synsets = ["n%08d" % (100 + i) for i in range(NUM_CLASSES)]
    pixels = []
    counts = {}
    for split, per_class in (("train", 8), ("validation", 3)):
        writers = [tf.io.TFRecordWriter(str(out_dir / schema.shard_name(split, s, 2))) for s in range(2)]
        n = 0
        for label in range(NUM_CLASSES):
            for i in range(per_class):
                img = rng.integers(0, 60, size=(STORED, STORED, 3), dtype=np.uint8)
                img[18:54, 18:54] = colours[label]
                pixels.append(img.reshape(-1, 3)[::11] / 255.0)
                buf = io.BytesIO()
                Image.fromarray(img).save(buf, format="JPEG", quality=90)
                example = schema.make_example(buf.getvalue(), label, STORED, STORED, synsets[label], "class %d" % label, "%s_%d.JPEG" % (split, n))
                writers[n % 2].write(schema.serialize_example(example))
                n += 1
        for w in writers:
            w.close()
        counts[split] = n
    pix = np.concatenate(pixels)
    cov = np.cov(pix, rowvar=False)
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1]
    meta = {
        "format_version": schema.METADATA_FORMAT_VERSION,
        "num_classes": NUM_CLASSES,
        "label_offset": 0,
        "synsets": synsets,
        "class_names": ["class %d" % i for i in range(NUM_CLASSES)],
        "image_size": STORED,
        "counts": counts,
        "rejected": {"train": 0, "validation": 0},
        "shards": {"train": 2, "validation": 2},
        "rgb": {
            "pixel_scale": "[0, 1]",
            "mean": pix.mean(0).tolist(),
            "std": pix.std(0).tolist(),
            "covariance": cov.tolist(),
            "eigenvalues": values[order].tolist(),
            "eigenvectors": vectors[:, order].T.tolist(),
            "pixels": int(pix.shape[0]),
            "sampling": "every 11th pixel (test fixture)",
        },
        "options": {"writer": "tests/test_cloud_vertex_env.py"},
    }
    (out_dir / schema.METADATA_FILE).write_text(json.dumps(meta))


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
    _write_shards(data)
    base = tmp_path / "base"  # stands for gs://bucket/runs/TAG, the job's baseOutputDirectory

    spec = vertex.build_job_spec(
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
    for code, out, err in outputs:
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
