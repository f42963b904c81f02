"""The record schema shared by the TFRecord writer and every reader.

`preprocessing.build_tfrecords` writes these features; `trainer.input_pipeline`
parses them. Both import the constants from here so the two sides cannot drift.
Importing this module imports TensorFlow but never Apache Beam, so the trainer
container does not need Beam at run time. Its names and constants come from
`preprocessing.fields`, which imports neither (the Beam job uses that one).

The keys are those of the widely used TensorFlow ImageNet shards. Those shards
store 1-based labels with 0 = background (1001 classes); ours store 0-based
indices into the sorted synset list. `metadata.json` says which (`label_offset`).
"""
import json
import os

import tensorflow as tf

# The names and constants live in the TensorFlow-free `fields` module (the
# Beam job imports only that); they are part of this module's interface too.
from preprocessing.fields import (  # noqa: F401  pylint: disable=unused-import
    CHANNELS,
    COLORSPACE,
    ENCODED,
    FILENAME,
    FORMAT,
    HEIGHT,
    IMAGENET_EIGENVALUES,
    IMAGENET_EIGENVECTORS,
    IMAGENET_RGB_MEAN,
    IMAGENET_RGB_STD,
    LABEL,
    METADATA_FILE,
    METADATA_FORMAT_VERSION,
    SPLITS,
    SYNSET,
    TEXT,
    TRAIN,
    VALIDATION,
    WIDTH,
    shard_name,
)

# Parsing spec for tf.io.parse_single_example / parse_example. Defaults let the
# reader accept shards that lack the optional text fields.
FEATURE_SPEC = {
    ENCODED: tf.io.FixedLenFeature([], tf.string),
    FORMAT: tf.io.FixedLenFeature([], tf.string, default_value="JPEG"),
    HEIGHT: tf.io.FixedLenFeature([], tf.int64, default_value=0),
    WIDTH: tf.io.FixedLenFeature([], tf.int64, default_value=0),
    CHANNELS: tf.io.FixedLenFeature([], tf.int64, default_value=3),
    COLORSPACE: tf.io.FixedLenFeature([], tf.string, default_value="RGB"),
    LABEL: tf.io.FixedLenFeature([], tf.int64),
    SYNSET: tf.io.FixedLenFeature([], tf.string, default_value=""),
    TEXT: tf.io.FixedLenFeature([], tf.string, default_value=""),
    FILENAME: tf.io.FixedLenFeature([], tf.string, default_value=""),
}


def _bytes(value):
    if isinstance(value, str):
        value = value.encode("utf-8")
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int64(value):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def make_example(encoded, label, height, width, synset="", text="", filename=""):
    """Builds one tf.train.Example of an RGB JPEG image.

    Args:
      encoded: JPEG bytes of a 3-channel 8-bit RGB image.
      label: 0-based class index.
      height, width: pixel size of the encoded image.
      synset, text, filename: str or bytes, stored for inspection and export.

    Returns:
      A tf.train.Example.
    """
    return tf.train.Example(
        features=tf.train.Features(
            feature={
                ENCODED: _bytes(encoded),
                FORMAT: _bytes("JPEG"),
                HEIGHT: _int64(height),
                WIDTH: _int64(width),
                CHANNELS: _int64(3),
                COLORSPACE: _bytes("RGB"),
                LABEL: _int64(label),
                SYNSET: _bytes(synset),
                TEXT: _bytes(text),
                FILENAME: _bytes(filename),
            }
        )
    )


def serialize_example(example):
    """Serialises deterministically: the feature map's order otherwise varies
    between processes, and reruns must give byte-identical shards."""
    return example.SerializeToString(deterministic=True)


def shard_glob(data_dir, split):
    return os.path.join(data_dir, "%s-*-of-*" % split)


def load_metadata(data_dir):
    """Reads `metadata.json` beside the shards, or returns None if there is none.

    Works for local and gs:// directories (tf.io.gfile).

    Layout (format_version 1), as written by preprocessing.build_tfrecords:
      format_version: int
      num_classes: int
      label_offset: int, 0 for our shards (1 for TF's ImageNet shards)
      synsets: [str] in label order; class_names: [str] in label order
      image_size: int or null (every stored image is this side or larger;
        null = original sizes kept, or some images kept small)
      kept_small: {"train": int, "validation": int} stored under image_size (--keep_small)
      counts: {"train": int, "validation": int} examples written
      rejected: {"train": int, "validation": int} (listed in rejects.tsv)
      skipped: {"train": int, "validation": int} files not images by name (skipped.tsv)
      inputs: {"train": int, "validation": int} = counts + rejected + skipped
      shards: {"train": int, "validation": int}
      rgb: {pixel_scale: "[0, 1]", mean: [3], std: [3], covariance: [[3]x3],
            eigenvalues: [3] descending, eigenvectors: [[3]x3] where
            eigenvectors[i] is the unit eigenvector of eigenvalues[i],
            pixels: int number of pixels the statistics were computed over,
            sampling: str}
      options: {flag: value} the job ran with
    """
    path = os.path.join(data_dir, METADATA_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path, "r") as f:
        meta = json.load(f)
    version = meta.get("format_version")
    if version != METADATA_FORMAT_VERSION:
        raise ValueError(
            "%s has format_version %r; this code reads version %d. Rebuild the shards "
            "with this version of preprocessing.build_tfrecords." % (path, version, METADATA_FORMAT_VERSION)
        )
    return meta
