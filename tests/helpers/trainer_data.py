"""Shared helpers of the trainer tests: tiny TFRecord data sets and subprocess runs.

The data is written with the project's own record writer
(`preprocessing.schema.make_example` / `serialize_example`) and a metadata.json
in the documented layout, so the trainer reads it exactly as it reads the Beam
job's output.
"""
import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
# Colours of the synthetic classes: far apart, so a few steps can separate them.
_COLOURS = [(220, 40, 40), (40, 200, 60), (50, 70, 230), (230, 220, 40), (200, 60, 210), (40, 210, 220)]


def _jpeg(array):
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def make_image(label, index, size, rng):
    """A size x size RGB image of class `label`: a coloured square on a noisy background."""
    img = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8)
    colour = np.array(_COLOURS[label % len(_COLOURS)], np.uint8)
    half = size // 4 + (index % 3)
    c = size // 2
    img[c - half : c + half, c - half : c + half] = colour
    return img


def write_dataset(out_dir, num_classes=3, train_per_class=8, val_per_class=4, size=80, train_shards=2, val_shards=2, seed=0):
    """Writes train/validation shards and metadata.json; returns {split: [jpeg paths]} of validation JPEGs too.

    Args:
      out_dir: destination directory.
      num_classes, train_per_class, val_per_class: data set size.
      size: stored image side.
      train_shards, val_shards: shard counts (>= 2 so two workers each get one).

    Returns:
      dict with 'jpegs' (list of (path, label) validation JPEG files written beside the
      shards, for serving tests) and 'counts'.
    """
    import tensorflow as tf

    from preprocessing import schema

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    synsets = ["n%08d" % (1000 + i) for i in range(num_classes)]
    names = ["class %d" % i for i in range(num_classes)]
    counts = {}
    pixels = []
    jpeg_dir = out_dir / "jpegs"
    jpeg_dir.mkdir(exist_ok=True)
    jpegs = []
    for split, per_class, shards in (("train", train_per_class, train_shards), ("validation", val_per_class, val_shards)):
        examples = []
        for label in range(num_classes):
            for i in range(per_class):
                img = make_image(label, i, size, rng)
                if split == "train":
                    pixels.append(img.reshape(-1, 3)[::7] / 255.0)
                data = _jpeg(img)
                name = "%s_%s_%d.JPEG" % (split, synsets[label], i)
                if split == "validation":
                    (jpeg_dir / name).write_bytes(data)
                    jpegs.append((str(jpeg_dir / name), label))
                examples.append(schema.make_example(data, label, size, size, synsets[label], names[label], name))
        order = rng.permutation(len(examples))
        writers = [tf.io.TFRecordWriter(str(out_dir / schema.shard_name(split, s, shards))) for s in range(shards)]
        for k, idx in enumerate(order):
            writers[k % shards].write(schema.serialize_example(examples[idx]))
        for w in writers:
            w.close()
        counts[split] = len(examples)
    pix = np.concatenate(pixels)
    cov = np.cov(pix, rowvar=False)
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1]
    meta = {
        "format_version": schema.METADATA_FORMAT_VERSION,
        "num_classes": num_classes,
        "label_offset": 0,
        "synsets": synsets,
        "class_names": names,
        "image_size": size,
        "counts": counts,
        "rejected": {"train": 0, "validation": 0},
        "shards": {"train": train_shards, "validation": val_shards},
        "rgb": {
            "pixel_scale": "[0, 1]",
            "mean": pix.mean(0).tolist(),
            "std": pix.std(0).tolist(),
            "covariance": cov.tolist(),
            "eigenvalues": values[order].tolist(),
            "eigenvectors": vectors[:, order].T.tolist(),
            "pixels": int(pix.shape[0]),
            "sampling": "every 7th pixel (test fixture)",
        },
        "options": {"writer": "tests/helpers/trainer_data.py"},
    }
    (out_dir / schema.METADATA_FILE).write_text(json.dumps(meta, indent=2))
    return {"jpegs": jpegs, "counts": counts}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def subprocess_env(**extra):
    """Environment for a child Python: quiet TF, repo importable, no cluster from the parent."""
    env = dict(os.environ)
    env.pop("TF_CONFIG", None)
    env.pop("CLUSTER_SPEC", None)
    for k in ("AIP_MODEL_DIR", "AIP_CHECKPOINT_DIR", "AIP_TENSORBOARD_LOG_DIR"):
        env.pop(k, None)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def task_command(*args):
    return [sys.executable, "-m", "trainer.task", *[str(a) for a in args]]


def run_task(*args, timeout=300, env=None):
    """Runs `python -m trainer.task args` to completion; returns the CompletedProcess."""
    return subprocess.run(task_command(*args), cwd=REPO, env=env or subprocess_env(), capture_output=True, text=True, timeout=timeout)


def test_written_dataset_is_read_by_the_input_pipeline(tmp_path):
    """The fixture's shards and metadata.json parse through the real input pipeline with exact counts."""
    from trainer import input_pipeline

    write_dataset(tmp_path, num_classes=3, train_per_class=4, val_per_class=3, size=72)
    info = input_pipeline.read_data_info(str(tmp_path))
    assert info.num_classes == 3 and info.counts == {"train": 12, "validation": 9}
    labels = []
    for images, lab in input_pipeline.make_dataset(str(tmp_path), "validation", 4, training=False, image_size=67, info=info):
        assert images.shape[1:] == (67, 67, 3)
        labels.extend(lab.numpy().tolist())
    assert sorted(labels) == [0, 0, 0, 1, 1, 1, 2, 2, 2]


if __name__ == "__main__":
    pytest.main([__file__])
