"""What the experiment tests share: a CIFAR-format archive and TFRecords of a learnable pattern.

The data is written with the project's own record writer (`preprocessing.schema`) and in
the CIFAR-10 python archive's layout, so the experiments read it as they read the real thing.
"""
import io
import os
import pickle
import tarfile

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from experiments import cifar
from preprocessing import schema

NUM_CLASSES = 10


def _pattern_images(rng, labels, size):
    """A learnable pattern: a bright block whose grid cell is the class."""
    images = rng.integers(0, 60, (len(labels), size, size, 3)).astype(np.uint8)
    cell = size // 8
    for i, k in enumerate(labels):
        row, col = divmod(int(k), 5)
        top, left = cell + 4 * cell * row, cell // 2 + (3 * cell // 2) * col
        images[i, top : top + 2 * cell, left : left + cell, :] = 250
    return images


def _cifar_batch(rng, n):
    labels = rng.integers(0, NUM_CLASSES, n)
    images = _pattern_images(rng, labels, 32)
    # The archive's layout: rows are (channel, row, column), 3 x 1024 values.
    return {b"data": images.transpose(0, 3, 1, 2).reshape(n, 3072), b"labels": [int(x) for x in labels], b"batch_label": b"x"}


def write_cifar_archive(path, per_batch, test, seed=0):
    """Writes a cifar-10-python.tar.gz with tiny pickled batches; returns the batches."""
    rng = np.random.default_rng(seed)
    batches = {name: _cifar_batch(rng, per_batch) for name in cifar.TRAIN_BATCHES}
    batches[cifar.TEST_BATCH] = _cifar_batch(rng, test)
    with tarfile.open(path, "w:gz") as tar:
        for name, batch in batches.items():
            data = pickle.dumps(batch, protocol=2)
            info = tarfile.TarInfo("%s/%s" % (cifar.BATCH_DIR, name))
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return batches


def write_records(data_dir, split, count, size, seed, shards=2):
    """Writes `count` JPEG records of the pattern with the project's record writer; returns labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % NUM_CLASSES
    rng.shuffle(labels)
    images = _pattern_images(rng, labels, size)
    os.makedirs(data_dir, exist_ok=True)
    writers = [tf.io.TFRecordWriter(os.path.join(data_dir, schema.shard_name(split, i, shards))) for i in range(shards)]
    for i, (image, label) in enumerate(zip(images, labels)):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=95)
        example = schema.make_example(buffer.getvalue(), int(label), size, size, synset="n%08d" % label)
        writers[i % shards].write(schema.serialize_example(example))
    for writer in writers:
        writer.close()
    return labels


@pytest.fixture(scope="module")
def cifar_archive(tmp_path_factory):
    path = tmp_path_factory.mktemp("cifar") / "cifar-10-python.tar.gz"
    batches = write_cifar_archive(str(path), per_batch=60, test=50)
    return str(path), batches


@pytest.fixture(scope="module")
def records_dir(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("records"))
    # 80 px: more than AlexNet's smallest crop (67), shrunk to 32 for Figure 1.
    train = write_records(data_dir, schema.TRAIN, 120, 80, seed=1)
    validation = write_records(data_dir, schema.VALIDATION, 40, 80, seed=2)
    return data_dir, train, validation


def _check_png(path):
    """A 640x480 PNG with something drawn on it."""
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (640, 480)
        pixels = np.asarray(image.convert("L"))
    # Not a blank canvas: axes, curves and text draw dark pixels.
    assert (pixels < 100).sum() > 1000


@pytest.fixture
def check_png():
    """Checks that a file is a 640x480 PNG with axes, curves and text drawn on it."""
    return _check_png


@pytest.fixture
def cifar_batch():
    """`_cifar_batch(rng, n)`: one unpickled CIFAR batch dict of n pattern images."""
    return _cifar_batch
