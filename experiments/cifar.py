"""Reads CIFAR-10 from the standard python archive, without extracting it.

The archive `cifar-10-python.tar.gz` (from the CIFAR-10 home page) holds
`cifar-10-batches-py/data_batch_1` .. `data_batch_5` and `test_batch`, each a
pickled dict with b"data", a (10000, 3072) uint8 array whose rows are an image
stored channel-major (1024 red values, then 1024 green, then 1024 blue, each a
32x32 row-major plane), and b"labels", a list of 10000 ints in 0..9.

The batches are Python pickles: load only archives from a source you trust
(the official archive, or one you made yourself).
"""
import os
import pickle
import tarfile

import numpy as np

BATCH_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple("data_batch_%d" % i for i in range(1, 6))
TEST_BATCH = "test_batch"
NUM_CLASSES = 10
IMAGE_SIZE = 32
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def batch_to_images(batch, source="batch"):
    """Converts one unpickled CIFAR batch dict to images and labels.

    Args:
      batch: dict with b"data" (N, 3072) uint8, channel-major rows, and
        b"labels" (N ints).
      source: name used in error messages.

    Returns:
      (images, labels): uint8 (N, 32, 32, 3) channels-last and int64 (N,).
    """
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise ValueError("%s: expected a dict with keys b'data' and b'labels'. Received: %s" % (source, keys))
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * IMAGE_SIZE * IMAGE_SIZE or data.dtype != np.uint8:
        raise ValueError(
            "%s: expected b'data' of shape (N, 3072) and dtype uint8. Received: shape %s, dtype %s"
            % (source, data.shape, data.dtype)
        )
    if labels.shape != (data.shape[0],):
        raise ValueError(
            "%s: expected one label per image (%d). Received: %d labels" % (source, data.shape[0], labels.size)
        )
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise ValueError(
            "%s: expected labels in 0..%d. Received: min %d, max %d"
            % (source, NUM_CLASSES - 1, labels.min(), labels.max())
        )
    # Rows are (channel, row, column); channels-last is what Keras convolutions expect.
    images = data.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def _find_batch_dir(folder):
    """The folder holding the batches: `folder` itself or its `cifar-10-batches-py`."""
    for candidate in (folder, os.path.join(folder, BATCH_DIR)):
        if os.path.isfile(os.path.join(candidate, TEST_BATCH)):
            return candidate
    raise ValueError(
        "%s: expected the CIFAR-10 python batches (%s, %s) in it or in its %s/ folder. Received: a folder "
        "without them" % (folder, ", ".join(TRAIN_BATCHES), TEST_BATCH, BATCH_DIR)
    )


def _read_folder(folder):
    batch_dir = _find_batch_dir(folder)
    batches = {}
    for name in TRAIN_BATCHES + (TEST_BATCH,):
        path = os.path.join(batch_dir, name)
        if not os.path.isfile(path):
            raise ValueError("%s: expected CIFAR-10 batch file %s. Received: it is missing" % (batch_dir, name))
        with open(path, "rb") as f:
            batches[name] = _unpickle(f, path)
    return batches


def _read_archive(path):
    batches = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar.getmembers():
                name = os.path.basename(member.name)
                if member.isfile() and name in TRAIN_BATCHES + (TEST_BATCH,):
                    batches[name] = _unpickle(tar.extractfile(member), "%s:%s" % (path, member.name))
    except tarfile.TarError as err:
        raise ValueError("%s: expected a tar archive of CIFAR-10 batches. Received: %s" % (path, err)) from err
    missing = [n for n in TRAIN_BATCHES + (TEST_BATCH,) if n not in batches]
    if missing:
        raise ValueError(
            "%s: expected the CIFAR-10 batches %s in the archive. Received: an archive without %s"
            % (path, ", ".join(TRAIN_BATCHES + (TEST_BATCH,)), ", ".join(missing))
        )
    return batches


def _unpickle(fileobj, source):
    try:
        # The archive was pickled by Python 2: bytes keys, latin-1 safe.
        return pickle.load(fileobj, encoding="bytes")
    except Exception as err:  # pickle raises many types for a damaged file
        raise ValueError("%s: expected a pickled CIFAR-10 batch. Received: unreadable (%s)" % (source, err)) from err


def load_cifar10(path):
    """Loads CIFAR-10 from `cifar-10-python.tar.gz` or its extracted folder.

    Args:
      path: the archive (any tar compression), the extracted top folder, or the
        `cifar-10-batches-py` folder itself.

    Returns:
      ((x_train, y_train), (x_test, y_test)): uint8 images (N, 32, 32, 3) and
      int64 labels, training batches 1..5 concatenated in order: the layout of
      `keras.datasets.cifar10.load_data()` (whose labels are (N, 1)).

    Raises:
      ValueError: the path is missing or does not hold valid CIFAR-10 batches.
    """
    if os.path.isdir(path):
        batches = _read_folder(path)
    elif os.path.isfile(path):
        batches = _read_archive(path)
    else:
        raise ValueError("--cifar expected cifar-10-python.tar.gz or its extracted folder. Received: %s (not found)" % path)
    train = [batch_to_images(batches[name], name) for name in TRAIN_BATCHES]
    x_test, y_test = batch_to_images(batches[TEST_BATCH], TEST_BATCH)
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return (x_train, y_train), (x_test, y_test)
