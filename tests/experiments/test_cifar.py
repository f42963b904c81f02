"""Tests of experiments/cifar.py: the CIFAR-10 python archive read without extracting it."""
import io
import pickle
import tarfile

import numpy as np
import pytest

from experiments import cifar


def test_load_cifar10_matches_numpy_reference(cifar_archive, tmp_path):
    path, batches = cifar_archive
    (x_train, y_train), (x_test, y_test) = cifar.load_cifar10(path)
    assert x_train.shape == (300, 32, 32, 3) and x_train.dtype == np.uint8
    assert x_test.shape == (50, 32, 32, 3)
    # Pixel (row 3, column 7) of image 0 of batch 2: red at 3 * 32 + 7, green 1024 later, blue 2048 later.
    row = batches["data_batch_2"][b"data"][0]
    np.testing.assert_array_equal(x_train[60, 3, 7], [row[103], row[1024 + 103], row[2048 + 103]])
    expected = np.concatenate([batches[n][b"data"] for n in cifar.TRAIN_BATCHES]).reshape(-1, 3, 32, 32)
    np.testing.assert_array_equal(x_train, expected.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(y_train, np.concatenate([batches[n][b"labels"] for n in cifar.TRAIN_BATCHES]))
    np.testing.assert_array_equal(y_test, batches["test_batch"][b"labels"])

    # The extracted folder and the batches folder itself give the same arrays.
    with tarfile.open(path) as tar:
        tar.extractall(tmp_path, filter="data")
    for folder in (tmp_path, tmp_path / cifar.BATCH_DIR):
        (x2, y2), (xt2, yt2) = cifar.load_cifar10(str(folder))
        np.testing.assert_array_equal(x2, x_train)
        np.testing.assert_array_equal(yt2, y_test)


def test_load_cifar10_names_what_is_missing(tmp_path, cifar_batch):
    path = tmp_path / "partial.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        data = pickle.dumps(cifar_batch(np.random.default_rng(0), 4))
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ValueError, match="without data_batch_2, data_batch_3, data_batch_4, data_batch_5, test_batch"):
        cifar.load_cifar10(str(path))
    with pytest.raises(ValueError, match="not found"):
        cifar.load_cifar10(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match=r"shape \(N, 3072\)"):
        cifar.batch_to_images({b"data": np.zeros((2, 3000), np.uint8), b"labels": [0, 1]})
