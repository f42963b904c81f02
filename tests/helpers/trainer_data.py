"""Shared helpers of the trainer tests: tiny TFRecord data sets and subprocess runs (and
`program_lines`, a child's stderr without TensorFlow's log lines).

The data is written with the project's own record writer
(`preprocessing.schema.make_example` / `serialize_example`) and a metadata.json
in the documented layout, so the trainer reads it exactly as it reads the Beam
job's output. Two kinds of data set:

- `write_dataset`: a few coloured-square classes a model can learn in a few steps
  (the training-run tests), or, with `shuffle_labels`, cannot learn at all;
- `write_labelled_shards`: every training example its own label, random pixels
  encoded without chroma subsampling (the input-pipeline tests: a label identifies
  its example, and a decoded crop matches numpy slices of the whole image exactly).
"""
import io
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

from preprocessing import schema

REPO = Path(__file__).resolve().parents[2]
# Colours of the synthetic classes: far apart, so a few steps can separate them.
_COLOURS = [(220, 40, 40), (40, 200, 60), (50, 70, 230), (230, 220, 40), (200, 60, 210), (40, 210, 220)]


def jpeg(array):
    """JPEG bytes of a uint8 (H, W, 3) array (quality 90, Pillow's defaults otherwise)."""
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


def _shuffled_labels(num_classes, per_class, rng):
    """Labels for the examples of each class in turn: every label as evenly as the count allows, in a random order.

    Neither an image's colour nor its square's size (its index) tells its label,
    and the labels stay balanced over the set, so the lowest loss a model can
    reach without memorising single images is about ln(num_classes).
    """
    out = []
    for label in range(num_classes):
        out += [int(x) for x in rng.permutation([(label + k) % num_classes for k in range(per_class)])]
    return out


def write_dataset(
    out_dir, num_classes=3, train_per_class=8, val_per_class=4, size=80, train_shards=2, val_shards=2, seed=0,
    val_shard_sizes=None, shuffle_labels=False,
):
    """Writes train/validation shards and metadata.json; returns {split: [jpeg paths]} of validation JPEGs too.

    Args:
      out_dir: destination directory.
      num_classes, train_per_class: data set size.
      val_per_class: validation examples of each class: an int, or one count per class.
      size: stored image side.
      train_shards, val_shards: shard counts (>= 2 so two workers each get one).
      val_shard_sizes: validation examples in each shard (their number replaces
        val_shards); None deals the examples out in turn.
      shuffle_labels: training labels unrelated to the images (`_shuffled_labels`): a set
        no model can learn, only memorise.

    Returns:
      dict with 'jpegs' (list of (path, label) validation JPEG files written beside the
      shards, for serving tests) and 'counts'.
    """
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
    val_counts = [val_per_class] * num_classes if isinstance(val_per_class, int) else list(val_per_class)
    if val_shard_sizes is not None:
        assert sum(val_shard_sizes) == sum(val_counts), (val_shard_sizes, val_counts)
        val_shards = len(val_shard_sizes)
    splits = (("train", [train_per_class] * num_classes, train_shards), ("validation", val_counts, val_shards))
    for split, per_class, shards in splits:
        examples = []
        # (class drawn, index) of each example; the label recorded is the class unless shuffled.
        drawn = [(label, i) for label in range(num_classes) for i in range(per_class[label])]
        recorded = [label for label, _ in drawn]
        if shuffle_labels and split == "train":
            recorded = _shuffled_labels(num_classes, train_per_class, np.random.default_rng(seed + 1))
        for (label, i), kept in zip(drawn, recorded):
            img = make_image(label, i, size, rng)
            if split == "train":
                pixels.append(img.reshape(-1, 3)[::7] / 255.0)
            data = jpeg(img)
            name = "%s_%s_%d.JPEG" % (split, synsets[label], i)
            if split == "validation":
                (jpeg_dir / name).write_bytes(data)
                jpegs.append((str(jpeg_dir / name), label))
            examples.append(schema.make_example(data, kept, size, size, synsets[kept], names[kept], name))
        order = rng.permutation(len(examples))
        writers = [tf.io.TFRecordWriter(str(out_dir / schema.shard_name(split, s, shards))) for s in range(shards)]
        if split == "validation" and val_shard_sizes is not None:
            shard_of = np.repeat(np.arange(shards), val_shard_sizes)
        else:
            shard_of = np.arange(len(order)) % shards
        for k, idx in enumerate(order):
            writers[shard_of[k]].write(schema.serialize_example(examples[idx]))
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


# A line TensorFlow's C++ logging wrote (absl format "I0000 00:00:1700000000.123456  1234 file.cc:12] ...")
# or its notice before logging starts; everything else on stderr is the program's own.
_LOG_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] |^WARNING: All log messages before absl::")


def program_lines(stderr):
    """The lines of `stderr` that are not TensorFlow log lines (run with TF_CPP_MIN_LOG_LEVEL=2,
    as subprocess_env sets, so no multi-line INFO message is among them)."""
    return [line for line in stderr.splitlines() if line.strip() and not _LOG_LINE.match(line)]


def run_task(*args, timeout=300, env=None):
    """Runs `python -m trainer.task args` to completion; returns the CompletedProcess."""
    return subprocess.run(
        task_command(*args), cwd=REPO, env=env or subprocess_env(), capture_output=True, text=True, timeout=timeout
    )


# --- the shared training run of tests/trainer/test_run.py, test_export.py, test_summaries.py

RUN_EPOCHS, RUN_STEPS, RUN_BATCH = 2, 3, 8


def run_args(data, model_dir, *extra):
    """The flags of the shared training run (2 epochs of 3 steps at 67 px), plus `extra`."""
    return [
        "--data_dir", str(data), "--model_dir", str(model_dir), "--image_size", "67", "--batch_size", str(RUN_BATCH),
        "--epochs", str(RUN_EPOCHS), "--steps_per_epoch", str(RUN_STEPS), "--init", "he", "--learning_rate", "0.01",
        "--checkpoint_every_steps", "2", "--keep_checkpoints", "2", "--profile_steps", "2,3", "--seed", "7", *extra,
    ]  # fmt: skip


# --- labelled shards: one label per example, for the input-pipeline tests

TRAIN_SHARDS, PER_SHARD = 4, 6  # 24 training examples, labels 0..23
VAL_COUNTS = (6, 5)  # 11 validation examples over 2 shards
STORED = (80, 88)  # stored image size (h, w): at least the reference square of 67 crops (76), so crops are plain windows
CROP = 67
RGB_MEAN = (0.5, 0.4, 0.3)
EIGENVALUES = (0.2, 0.02, 0.004)
EIGENVECTORS = ((-0.6, -0.6, -0.53), (0.7, 0.0, -0.71), (0.4, -0.8, 0.44))


def encode(pixels):
    """JPEG bytes without chroma subsampling: a decoded crop equals a numpy slice of the full decode."""
    return tf.io.encode_jpeg(pixels, quality=95, chroma_downsampling=False).numpy()


def write_shards(directory, split, labels_per_shard, size, rng, label_base=0):
    """Writes shards; returns {label: decoded full image} (labels unique per split)."""
    images = {}
    for index, labels in enumerate(labels_per_shard):
        path = os.path.join(directory, schema.shard_name(split, index, len(labels_per_shard)))
        with tf.io.TFRecordWriter(path) as writer:
            for label in labels:
                encoded = encode(rng.integers(0, 256, size + (3,), dtype=np.uint8))
                example = schema.make_example(
                    encoded, label + label_base, size[0], size[1], filename="img_%s_%d.JPEG" % (split, label)
                )
                writer.write(schema.serialize_example(example))
                images[label] = tf.io.decode_jpeg(encoded, channels=3).numpy()
    return images


def write_metadata(directory, num_classes, counts, image_size=None):
    """A metadata.json in the documented layout with RGB_MEAN and the PCA above."""
    meta = {
        "format_version": schema.METADATA_FORMAT_VERSION,
        "num_classes": num_classes,
        "label_offset": 0,
        "synsets": ["n%08d" % i for i in range(num_classes)],
        "class_names": ["class %d" % i for i in range(num_classes)],
        "image_size": image_size,
        "counts": counts,
        "rejected": {k: 0 for k in counts},
        "shards": {},
        "rgb": {
            "pixel_scale": "[0, 1]",
            "mean": list(RGB_MEAN),
            "std": [0.2, 0.2, 0.2],
            "covariance": [[0.0] * 3] * 3,
            "eigenvalues": list(EIGENVALUES),
            "eigenvectors": [list(r) for r in EIGENVECTORS],
            "pixels": 1,
            "sampling": "test",
        },
        "options": {},
    }
    with open(os.path.join(directory, schema.METADATA_FILE), "w") as f:
        json.dump(meta, f)


def write_labelled_shards(directory):
    """Our shards with metadata.json: 4 train shards (labels 6i..6i+5), 2 validation shards.

    Returns:
      (directory, {label: decoded train image}, {label: decoded validation image}).
    """
    rng = np.random.default_rng(0)
    n = TRAIN_SHARDS * PER_SHARD
    train = write_shards(
        directory, "train", [range(i * PER_SHARD, (i + 1) * PER_SHARD) for i in range(TRAIN_SHARDS)], STORED, rng
    )
    val = write_shards(directory, "validation", [range(0, 6), range(6, 11)], STORED, rng)
    # image_size: every stored image is at least 80 on a side, so the pipeline
    # takes its fast path (no per-image upscaling branch).
    write_metadata(directory, n, {"train": n, "validation": sum(VAL_COUNTS)}, image_size=min(STORED))
    return directory, train, val


def collect(ds):
    """([images of each batch], [labels of each batch]) as numpy arrays."""
    images, labels = [], []
    for x, y in ds:
        images.append(x.numpy())
        labels.append(y.numpy())
    return images, labels


def center(full):
    """The CROP x CROP centre of a decoded uint8 image, scaled to [0, 1]."""
    y, x = (full.shape[0] - CROP) // 2, (full.shape[1] - CROP) // 2
    return full[y : y + CROP, x : x + CROP].astype(np.float32) / 255.0
