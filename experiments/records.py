"""Loads a small TFRecord data set into memory at a small image size.

The Figure 1 experiment trains a network on 32x32 images, so any data set made
by `preprocessing.build_tfrecords` (the demo set, a subset of ImageNet) can
stand in for CIFAR-10: each stored JPEG is decoded and shrunk to 32x32 once and
the whole split is kept as a numpy array. Only the shared record schema is
used, so this does not depend on the trainer's input pipeline.
"""
import numpy as np
import tensorflow as tf

from preprocessing import schema


def _decode(serialized, image_size):
    features = tf.io.parse_single_example(serialized, schema.FEATURE_SPEC)
    image = tf.io.decode_jpeg(features[schema.ENCODED], channels=3)
    # Area resampling averages the pixels a small output pixel covers, so a
    # 256 -> 32 shrink does not alias the way bilinear sampling would.
    image = tf.image.resize(image, (image_size, image_size), method="area", antialias=True)
    image = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
    return image, features[schema.LABEL]


def load_split(data_dir, split, image_size=32, max_examples=None):
    """Reads one split of TFRecord shards into numpy arrays.

    Args:
      data_dir: folder (local or gs://) with `<split>-NNNNN-of-NNNNN` shards and,
        usually, `metadata.json`.
      split: `schema.TRAIN` or `schema.VALIDATION`.
      image_size: side of the square images returned.
      max_examples: read at most this many records (in shard order), or None.

    Returns:
      (images, labels): uint8 (N, image_size, image_size, 3) and int64 (N,)
      0-based labels (the metadata's `label_offset` removed), or None when the
      split has no shards.
    """
    files = sorted(tf.io.gfile.glob(schema.shard_glob(data_dir, split)))
    if not files:
        return None
    meta = schema.load_metadata(data_dir) or {}
    offset = int(meta.get("label_offset", 0))
    dataset = tf.data.TFRecordDataset(files)
    if max_examples is not None:
        dataset = dataset.take(max_examples)
    dataset = dataset.map(lambda s: _decode(s, image_size), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    images, labels = [], []
    try:
        for image_batch, label_batch in dataset.batch(512).as_numpy_iterator():
            images.append(image_batch)
            labels.append(label_batch)
    except tf.errors.OpError as err:
        raise ValueError(
            "%s: expected readable %s shards of JPEG records. Received: %s" % (data_dir, split, err.message)
        ) from err
    if not images:
        raise ValueError("%s: expected %s records in %s. Received: 0 records" % (data_dir, split, ", ".join(files)))
    images = np.concatenate(images)
    labels = np.concatenate(labels).astype(np.int64) - offset
    return images, labels


def num_classes(data_dir, *label_arrays):
    """The class count from metadata.json, else one more than the largest label."""
    meta = schema.load_metadata(data_dir)
    if meta and meta.get("num_classes"):
        return int(meta["num_classes"])
    return int(max(int(labels.max()) for labels in label_arrays if labels is not None and labels.size)) + 1
