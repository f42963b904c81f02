"""The data of the Figure 1 experiment: CIFAR-10, or TFRecords shrunk to 32x32, in memory and normalised."""
import os

import keras
import numpy as np

from cli import UsageError
from experiments import cifar, records
from preprocessing import schema


def load_data(config):
    """Loads the train and test images for the experiment.

    Args:
      config: a Config.

    Returns:
      (x_train, y_train, x_test, y_test, num_classes, description): uint8 images
      (N, s, s, 3), int64 labels, and a one-line description of the source.

    Raises:
      UsageError: no data source could be read.
    """
    if config.cifar:
        try:
            (x_train, y_train), (x_test, y_test) = cifar.load_cifar10(os.path.expanduser(config.cifar))
        except ValueError as err:
            raise UsageError(str(err)) from err
        return x_train, y_train, x_test, y_test, cifar.NUM_CLASSES, "CIFAR-10 from %s" % config.cifar
    if config.data_dir:
        try:
            train = records.load_split(config.data_dir, schema.TRAIN, config.image_size)
            if train is None:
                raise UsageError(
                    "--data_dir expected TFRecord shards %s. Received: %s has none (make them with "
                    "python -m preprocessing.build_tfrecords)"
                    % (schema.shard_glob("", schema.TRAIN).lstrip("/"), config.data_dir)
                )
            test = records.load_split(
                config.data_dir, schema.VALIDATION, config.image_size, max_examples=config.test_examples
            )
        except ValueError as err:
            raise UsageError(str(err)) from err
        x_test, y_test = test if test is not None else (None, None)
        classes = records.num_classes(config.data_dir, train[1], y_test)
        description = "TFRecords from %s, resized to %dx%d" % (config.data_dir, config.image_size, config.image_size)
        return train[0], train[1], x_test, y_test, classes, description
    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    except Exception as err:  # keras raises a bare Exception for a failed download
        raise UsageError(
            "CIFAR-10 is not available (download failed: %s); pass --cifar PATH to cifar-10-python.tar.gz or its "
            "extracted folder, or --data_dir DIR of TFRecords from preprocessing.build_tfrecords "
            "(e.g. the demo set: python -m preprocessing.build_tfrecords --demo --output_dir DIR)"
            % str(err).splitlines()[0][:200]
        ) from err
    return x_train, y_train.reshape(-1).astype(np.int64), x_test, y_test.reshape(-1).astype(np.int64), 10, (
        "CIFAR-10 downloaded by keras.datasets.cifar10"
    )


def normalise(images, mean):
    # cuda-convnet subtracts the mean training image; pixels are scaled to [0, 1].
    return images.astype(np.float32) / 255.0 - mean


def prepare(config):
    """Loads the data, takes the configured subsets and normalises it as cuda-convnet did.

    Args:
      config: the experiment's Config.

    Returns:
      ((x_train, y_train, x_test, y_test, num_classes), description): images as float32
      in [0, 1] less the mean training image (x_test None without a test split).

    Raises:
      UsageError: no data, or images of another size than config.image_size.
    """
    x_train, y_train, x_test, y_test, num_classes, description = load_data(config)
    if len(x_train) == 0:
        raise UsageError("expected training examples. Received: an empty training split from %s" % description)
    rng = np.random.default_rng(config.seed)
    if config.train_examples and config.train_examples < len(x_train):
        keep = np.sort(rng.permutation(len(x_train))[: config.train_examples])
        x_train, y_train = x_train[keep], y_train[keep]
    if x_test is not None and config.test_examples:
        x_test, y_test = x_test[: config.test_examples], y_test[: config.test_examples]
    if x_train.shape[1:3] != (config.image_size, config.image_size):
        raise UsageError(
            "expected %dx%d training images. Received: %s" % (config.image_size, config.image_size, x_train.shape[1:3])
        )
    mean = x_train.astype(np.float32).mean(axis=0) / 255.0
    x_test = normalise(x_test, mean) if x_test is not None else None
    return (normalise(x_train, mean), y_train, x_test, y_test, num_classes), description
