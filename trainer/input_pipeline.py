"""TFRecord shards to batches: the trainer's tf.data input pipeline.

One `make_dataset(...)` builds training and evaluation input in the canonical
order: files -> shard per input pipeline -> shuffle files -> interleave ->
parse -> shuffle -> repeat -> check -> decode and crop -> batch -> flips,
colour noise and mean (vectorised over the batch) -> prefetch.

With `finish_on_device=True` a training pipeline stops at the uint8 crops,
with each batch's random draws (which images to mirror, each image's RGB
offset) beside them; the trainer applies `finish_crops` (mirror, scale,
offset in one fused pass) at the start of its step, on the accelerator. The
host then does only the work that must be done there (reading, decoding,
cropping, a few random numbers per batch) and sends a quarter of the bytes
float32 would take; the batches are the same as when the pipeline finishes
them itself.

The shards are those of `preprocessing.build_tfrecords` (feature keys from
`preprocessing.schema`) or TensorFlow's own ImageNet shards (same keys, 1-based
labels with 0 = background): `read_data_info` takes the class count, label
offset, RGB mean and PCA from `metadata.json`, or from its arguments and the
published ImageNet constants when there is none.

Corrupt input never silently shortens an epoch. Each shard's records are
counted in bytes as they are read; a shard whose records do not add up to its
file size (truncated, or a record failing its CRC) is an error naming the
shard and the byte where reading stopped. A JPEG without an end-of-image
marker (TensorFlow would decode it with grey rows) is an error naming the
shard, the record and the image. With `skip_corrupt`, both are instead
skipped, logged with the same details and counted in a `SkippedRecords`.
"""
import dataclasses
import functools
import logging
import os
import random
import threading

import numpy as np
import tensorflow as tf

from preprocessing import schema
from trainer import augment

AUTOTUNE = tf.data.AUTOTUNE
# Bytes a TFRecord adds around each record: length (8), length CRC (4), data CRC (4).
_TFRECORD_OVERHEAD = 16
# Shards read at once: more files in flight overlap their reads and mix the
# examples more. (The Beam job already spreads every class over all shards by
# a hash of split, class and file name, and orders each shard by that hash.)
_MAX_CYCLE_LENGTH = 16
DEFAULT_SHUFFLE_BUFFER = 10_000  # about 0.5 GB of 256x256 JPEGs; enough to mix 16 interleaved shards

_log = logging.getLogger(__name__)
# The dataset functions below use tf.cond explicitly and Python control flow
# only on Python values: AutoGraph has nothing to convert, and skipping it
# makes building a pipeline several times faster.
_plain = tf.autograph.experimental.do_not_convert


@dataclasses.dataclass(frozen=True)
class DataInfo:
    """What the trainer needs to know about a data set.

    Attributes:
      num_classes: number of classes the model predicts.
      label_offset: subtracted from stored labels (1 for TensorFlow's ImageNet shards).
      synsets: WordNet IDs in label order (empty when unknown).
      class_names: human-readable names in label order (index strings when unknown).
      rgb_mean: mean R, G, B of the training set, pixels in [0, 1].
      eigenvalues: the 3 eigenvalues of the RGB covariance, descending ([0, 1] scale).
      eigenvectors: 3x3; row i is the unit eigenvector of eigenvalues[i].
      counts: split -> number of examples, or None when unknown.
      image_size: side of the stored square images, or None (original sizes kept or unknown).
    """

    num_classes: int
    label_offset: int
    synsets: tuple
    class_names: tuple
    rgb_mean: tuple
    eigenvalues: tuple
    eigenvectors: tuple
    counts: dict
    image_size: object = None


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("expected %s to be a positive int. Received: %s=%r" % (name, name, value))


def read_data_info(data_dir, label_offset=None, num_classes=None):
    """Reads what the trainer needs about the shards in `data_dir`.

    Args:
      data_dir: directory of the shards (local or gs://).
      label_offset: without metadata.json, subtracted from stored labels
        (TensorFlow's ImageNet shards: 1). With metadata.json it must be None
        or agree with the file.
      num_classes: required without metadata.json (TensorFlow's ImageNet
        shards: 1000, with label_offset 1); otherwise None or agreeing.

    Returns:
      A DataInfo. Its RGB mean and PCA come from metadata.json, or are the
      published ImageNet constants (preprocessing.schema) when there is no
      metadata.json or when it has none (`"rgb": null`, a set built without
      training images; logged as a warning).

    Raises:
      ValueError: a missing class count, or flags that contradict metadata.json.
    """
    meta = schema.load_metadata(data_dir)
    if meta is None:
        if num_classes is None:
            raise ValueError(
                "%s has no %s, so the number of classes must be given (for TensorFlow's ImageNet "
                "shards: num_classes=1000 with label_offset=1). Received: num_classes=None"
                % (data_dir, schema.METADATA_FILE)
            )
        _positive_int("num_classes", num_classes)
        label_offset = 0 if label_offset is None else label_offset
        if isinstance(label_offset, bool) or not isinstance(label_offset, int) or label_offset < 0:
            raise ValueError("expected label_offset to be an int >= 0. Received: label_offset=%r" % (label_offset,))
        return DataInfo(
            num_classes=num_classes,
            label_offset=label_offset,
            synsets=(),
            class_names=tuple(str(i) for i in range(num_classes)),
            rgb_mean=tuple(schema.IMAGENET_RGB_MEAN),
            eigenvalues=tuple(schema.IMAGENET_EIGENVALUES),
            eigenvectors=tuple(tuple(row) for row in schema.IMAGENET_EIGENVECTORS),
            counts={split: None for split in schema.SPLITS},
            image_size=None,
        )

    path = os.path.join(data_dir, schema.METADATA_FILE)
    meta_classes = int(meta["num_classes"])
    meta_offset = int(meta.get("label_offset", 0))
    if num_classes is not None and num_classes != meta_classes:
        raise ValueError("%s says num_classes=%d. Received: num_classes=%r" % (path, meta_classes, num_classes))
    if label_offset is not None and label_offset != meta_offset:
        raise ValueError("%s says label_offset=%d. Received: label_offset=%r" % (path, meta_offset, label_offset))
    rgb = meta.get("rgb")
    if rgb is None:
        # A set built without training images (e.g. validation only, to
        # evaluate a model) has no RGB statistics of its own.
        _log.warning(
            "%s has no RGB statistics (\"rgb\": null: built without training images); using the published "
            "ImageNet RGB mean and PCA instead", path,
        )
        rgb = {
            "pixel_scale": "[0, 1]",
            "mean": schema.IMAGENET_RGB_MEAN,
            "eigenvalues": schema.IMAGENET_EIGENVALUES,
            "eigenvectors": schema.IMAGENET_EIGENVECTORS,
        }
    scale = str(rgb.get("pixel_scale", "[0, 1]")).replace(" ", "")
    if scale == "[0,1]":
        factor = 1.0
    elif scale == "[0,255]":
        factor = 1.0 / 255.0
    else:
        raise ValueError("%s: expected rgb.pixel_scale '[0, 1]' or '[0, 255]'. Received: %r" % (path, scale))
    synsets = tuple(meta.get("synsets") or ())
    names = tuple(meta.get("class_names") or ()) or tuple(str(i) for i in range(meta_classes))
    for field, values in (("synsets", synsets), ("class_names", names)):
        if values and len(values) != meta_classes:
            raise ValueError(
                "%s: expected %d %s (num_classes). Received: %d" % (path, meta_classes, field, len(values))
            )
    counts = {split: None for split in schema.SPLITS}
    counts.update({k: (None if v is None else int(v)) for k, v in (meta.get("counts") or {}).items()})
    return DataInfo(
        num_classes=meta_classes,
        label_offset=meta_offset,
        synsets=synsets,
        class_names=names,
        rgb_mean=tuple(float(v) * factor for v in rgb["mean"]),
        # Eigenvalues of the covariance scale with factor^2, eigenvectors not at all.
        eigenvalues=tuple(float(v) * factor * factor for v in rgb["eigenvalues"]),
        eigenvectors=tuple(tuple(float(v) for v in row) for row in rgb["eigenvectors"]),
        counts=counts,
        image_size=meta.get("image_size"),
    )


class SkippedRecords:
    """Counts and remembers what `make_dataset(skip_corrupt=...)` skipped.

    Thread-safe: tf.data calls `add` from its worker threads.

    Attributes:
      shards: number of shards whose reading stopped at a corrupt or truncated record.
      records: number of records skipped for a corrupt JPEG.
      events: list of one-line descriptions, in the order they happened.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self.shards = 0
        self.records = 0
        self.events = []

    def add(self, kind, message):
        with self._lock:
            if kind == "shard":
                self.shards += 1
            else:
                self.records += 1
            self.events.append(message)
            total = "%d shard(s) cut short, %d record(s) skipped so far" % (self.shards, self.records)
        _log.warning("Skipping corrupt input: %s (%s)", message, total)

    def __repr__(self):
        return "SkippedRecords(shards=%d, records=%d)" % (self.shards, self.records)


# Where skips go when make_dataset(skip_corrupt=True) is not given its own SkippedRecords.
SKIPPED = SkippedRecords()


def list_shards(data_dir, split):
    """Sorted shard paths of a split (`<split>-NNNNN-of-NNNNN`).

    Raises:
      FileNotFoundError: no shard matches.
    """
    pattern = schema.shard_glob(data_dir, split)
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError("No TFRecord shards match %s" % pattern)
    return files


def shard_files(files, input_context):
    """The files one input pipeline reads: every num_input_pipelines-th file.

    Args:
      files: sorted list of paths.
      input_context: a tf.distribute.InputContext, or None for all files.

    Returns:
      List of paths.

    Raises:
      ValueError: fewer files than input pipelines (a worker would read nothing).
    """
    if input_context is None or input_context.num_input_pipelines == 1:
        return list(files)
    count, pid = input_context.num_input_pipelines, input_context.input_pipeline_id
    if len(files) < count:
        raise ValueError(
            "Each input pipeline needs at least one shard: expected at least %d shards for %d input "
            "pipelines. Received: %d shards" % (count, count, len(files))
        )
    return list(files[pid::count])


def _join(*parts):
    """Error messages from str and tensor parts (strings unquoted, numbers as decimals).

    Parts may be scalars or vectors of one length; the result has that shape.
    """
    strings = []
    for part in parts:
        part = tf.convert_to_tensor(part)
        strings.append(part if part.dtype == tf.string else tf.strings.as_string(part))
    return tf.strings.join(strings)


def _record_callback(skipped, kind, messages):
    """py_function body: runs only for bad records, so it costs nothing on good data."""
    for message in np.asarray(messages.numpy()).reshape(-1):
        skipped.add(kind, message.decode("utf-8", "replace"))
    return False


def _report(skipped, kind, messages):
    """Bad records: an error carrying the first message, or logged, counted skips.

    Returns False (for use as a filter predicate or a cond branch).
    """
    if skipped is None:
        first = tf.reshape(messages, [-1])[0]
        with tf.control_dependencies([tf.debugging.Assert(tf.constant(False), [first])]):
            return tf.constant(False)
    return tf.py_function(functools.partial(_record_callback, skipped, kind), [messages], tf.bool)


# Records are read, counted, parsed and checked in chunks of this many: the
# per-record work is then a few vector ops, and the control flow that reports
# errors runs once per chunk instead of once per record.
_CHUNK = 64
_PARSE_SPEC = {key: schema.FEATURE_SPEC[key] for key in (schema.ENCODED, schema.LABEL, schema.FILENAME)}


def _read_shard(path, size, skipped, num_classes, label_offset):
    """Parsed, checked examples of one shard: (encoded, label, filename, path, index).

    tf.data's own error for a bad shard names no file, and its ignore_errors
    stops the file without saying so. So the reader ignores the error, counts
    the bytes it did read, and a final empty chunk compares them with the
    file size: a shortfall is an error (or a counted skip) naming the shard
    and the byte where reading stopped.
    """
    size = tf.cast(size, tf.int64)
    chunks = tf.data.TFRecordDataset(path).ignore_errors().batch(_CHUNK)
    chunks = chunks.map(_plain(lambda r: (r, False))).concatenate(
        tf.data.Dataset.from_tensors((tf.zeros([0], tf.string), True))
    )

    def count(state, element):
        consumed, start = state
        records, is_end = element
        n = tf.size(records, out_type=tf.int64)
        read = tf.reduce_sum(tf.strings.length(records, unit="BYTE")) + _TFRECORD_OVERHEAD * tf.cast(n, tf.int32)
        return (consumed + tf.cast(read, tf.int64), start + n), (records, is_end, consumed, start)

    chunks = chunks.scan((tf.constant(0, tf.int64), tf.constant(0, tf.int64)), _plain(count))

    def shard_intact(records, is_end, consumed, start):
        def at_end():
            def report():
                message = _join(
                    "Corrupt or truncated TFRecord shard ", path, ": reading stopped at byte ", consumed,
                    " of ", size, " after ", start, " good records",
                )
                return _report(skipped, "shard", message)

            with tf.control_dependencies([tf.cond(tf.equal(consumed, size), lambda: tf.constant(True), report)]):
                return tf.constant(False)  # the end marker itself holds no records

        return tf.cond(is_end, at_end, lambda: tf.constant(True))

    chunks = chunks.filter(_plain(shard_intact))
    checked = chunks.map(
        _plain(
            lambda records, is_end, consumed, start: _parse_and_check(
                records, path, start, skipped, num_classes, label_offset
            )
        )
    )
    return checked.unbatch()


def _parse_and_check(records, path, start, skipped, num_classes, label_offset):
    """Parses a chunk of records; a bad record is an error or a logged, counted skip."""
    features = tf.io.parse_example(records, _PARSE_SPEC)
    encoded, filename = features[schema.ENCODED], features[schema.FILENAME]
    label = tf.cast(features[schema.LABEL] - label_offset, tf.int32)
    index = start + tf.range(tf.size(records, out_type=tf.int64))
    paths = tf.fill(tf.shape(records), path)
    complete = augment.jpeg_is_complete(encoded)
    in_range = tf.logical_and(label >= 0, label < num_classes)

    def where(mask):
        pick = lambda t: tf.boolean_mask(t, mask)  # noqa: E731
        return _join("record ", pick(index), " (", pick(filename), ") of ", pick(paths))

    def bad_labels():
        # A wrong label means wrong flags (num_classes, label_offset), not a
        # bad record: it stays an error even when skipping corrupt records.
        bad = tf.logical_not(in_range)
        stored = tf.boolean_mask(label, bad) + label_offset
        message = _join(
            "Label ", stored - label_offset, " (stored ", stored, " minus label_offset ", label_offset,
            ") is outside [0, ", num_classes, ") in ", where(bad),
        )
        return _report(None, "record", message)

    def bad_jpegs():
        message = _join("Corrupt JPEG (truncated or not a JPEG) in ", where(tf.logical_not(complete)))
        return _report(skipped, "record", message)

    labels_ok = tf.cond(tf.reduce_all(in_range), lambda: tf.constant(True), bad_labels)
    with tf.control_dependencies([labels_ok, tf.cond(tf.reduce_all(complete), lambda: tf.constant(True), bad_jpegs)]):
        keep = tf.identity(complete)
    pick = lambda t: tf.boolean_mask(t, keep)  # noqa: E731
    return pick(encoded), pick(label), pick(filename), pick(paths), pick(index)


def _decode_train(index, element, image_size, random_crop, seed, upscale):
    encoded, label = element[0], element[1]
    if random_crop:
        seed = tf.random.experimental.stateless_fold_in(seed, index)
        image = augment.decode_random_crop(encoded, image_size, seed, upscale=upscale)
    else:
        image = augment.decode_center_crop(encoded, image_size, upscale=upscale)
    return image, label


def _decode_eval(encoded, label, filename, path, index, image_size, ten_crop, upscale):
    if ten_crop:
        return augment.ten_crop_views(augment.decode_full(encoded, image_size), image_size), label
    return augment.decode_center_crop(encoded, image_size, upscale=upscale), label


def _draws(info, flip, pca_noise, pca_stddev, mean_subtract):
    """augment.batch_draws with this data set's PCA and mean: (leading shape, seed) -> (flips, offsets)."""
    return functools.partial(
        augment.batch_draws,
        flip=flip,
        pca=pca_noise,
        eigenvalues=info.eigenvalues,
        eigenvectors=info.eigenvectors,
        pca_stddev=pca_stddev,
        rgb_mean=info.rgb_mean if mean_subtract else None,
    )


def finish_crops(images, labels, flips, offsets, jit_compile=True):
    """A batch of make_dataset(..., finish_on_device=True) -> the batch make_dataset
    gives without it: mirrored where `flips`, scaled to [0, 1], plus each image's
    RGB offset (PCA noise minus the mean), in one fused pass.

    Args:
      images: uint8 (B, S, S, 3) crops. labels: (B,). flips: bool (B,).
      offsets: float32 (B, 3).
      jit_compile: fuse with XLA (inside an XLA-compiled step it is part of it).

    Returns:
      (float32 images (B, S, S, 3), labels).
    """
    return augment.apply_draws(images, flips, offsets, jit_compile=jit_compile), labels


def _with_draws(index, batch, seed, draws):
    """(images, labels) -> (images, labels, flips, offsets) of this batch's seed."""
    images, labels = batch
    flips, offsets = draws(tf.shape(images)[:-3], tf.random.experimental.stateless_fold_in(seed, index))
    return images, labels, flips, offsets


def _finish(index, batch, seed, draws):
    return finish_crops(*_with_draws(index, batch, seed, draws))


def _finish_eval(images, labels, draws):
    return finish_crops(images, labels, *draws(tf.shape(images)[:-3], tf.constant([0, 0], tf.int64)))


def _skip_undecodable(ds, skipped):
    """When skipping, also drop images that pass the JPEG check but fail to decode
    (a damaged header): tf.data logs each one; they are not in `skipped`'s counts."""
    if skipped is None:
        return ds
    return ds.ignore_errors(log_warning=True)


def make_dataset(
    data_dir,
    split,
    batch_size,
    *,
    training,
    image_size=227,
    info=None,
    input_context=None,
    seed=None,
    deterministic=False,
    random_crop=True,
    flip=True,
    pca_noise=True,
    pca_stddev=0.1,
    mean_subtract=True,
    ten_crop=False,
    skip_corrupt=False,
    repeat=None,
    shuffle_buffer=None,
    finish_on_device=False,
):
    """Batches of (images, labels) from the TFRecord shards of one split.

    Args:
      data_dir: directory of the shards and metadata.json (local or gs://).
      split: "train" or "validation" (the shard name prefix).
      batch_size: the GLOBAL batch size; with an input_context each pipeline
        makes batches of input_context.get_per_replica_batch_size(batch_size).
      training: True for shuffled, repeated, augmented batches of exactly the
        batch size; False for every example once in file order, the last
        batch possibly smaller, centre crops (or 10 views).
      image_size: side of the crops (the paper: 227).
      info: a DataInfo; None reads it with read_data_info(data_dir).
      input_context: a tf.distribute.InputContext (from
        strategy.distribute_datasets_from_function): this pipeline reads every
        num_input_pipelines-th shard, starting at input_pipeline_id.
      seed: int seed of shuffling and augmentation; None for a random one.
      deterministic: keep element order fixed (with a seed, runs repeat exactly).
      random_crop, flip, pca_noise: the training augmentations, each switchable
        for ablations (random_crop=False trains on centre crops).
      pca_stddev: standard deviation of the PCA draws a_i (the paper: 0.1).
      mean_subtract: subtract info.rgb_mean from the [0, 1] pixels.
      ten_crop: evaluation only: images are (B, 10, S, S, 3), the paper's 10 views.
      skip_corrupt: False to fail on a corrupt shard or JPEG with a message
        naming it; True to skip, log and count it in `SKIPPED`; or a
        SkippedRecords to count into.
      repeat: number of passes; None means forever for training, once for evaluation.
      shuffle_buffer: examples in the shuffle buffer (training); None for the
        default (min(10,000, training set size)), 0 for no shuffling.
      finish_on_device: training only: stop at the uint8 crops and add each
        batch's draws; `finish_crops(*batch)` turns such a batch into the
        batch this function returns without it (same seed and switches).

    Returns:
      A tf.data.Dataset of (float32 images (B, S, S, 3) or (B, 10, S, S, 3), int32 labels (B,)),
      or with finish_on_device of (uint8 images (B, S, S, 3), int32 labels (B,), bool flips (B,),
      float32 RGB offsets (B, 3)).

    Raises:
      ValueError: bad arguments; FileNotFoundError: no shards.
    """
    _positive_int("batch_size", batch_size)
    _positive_int("image_size", image_size)
    if ten_crop and training:
        raise ValueError("ten_crop is an evaluation mode. Received: ten_crop=True with training=True")
    if finish_on_device and not training:
        raise ValueError("finish_on_device is a training mode. Received: finish_on_device=True with training=False")
    if repeat is not None:
        _positive_int("repeat", repeat)
    if shuffle_buffer is not None and (not isinstance(shuffle_buffer, int) or shuffle_buffer < 0):
        raise ValueError("expected shuffle_buffer to be an int >= 0. Received: shuffle_buffer=%r" % (shuffle_buffer,))
    if info is None:
        info = read_data_info(data_dir)
    if skip_corrupt is True:
        skipped = SKIPPED
    elif skip_corrupt is False or skip_corrupt is None:
        skipped = None
    elif isinstance(skip_corrupt, SkippedRecords):
        skipped = skip_corrupt
    else:
        raise ValueError("expected skip_corrupt to be a bool or a SkippedRecords. Received: %r" % (skip_corrupt,))

    per_replica = batch_size
    files = list_shards(data_dir, split)
    if input_context is not None:
        per_replica = input_context.get_per_replica_batch_size(batch_size)
        files = shard_files(files, input_context)
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    # Each input pipeline augments with its own random stream.
    pipeline = 0 if input_context is None else input_context.input_pipeline_id
    base_seed = tf.constant([seed, pipeline], tf.int64)
    shuffle_seed = (seed * 1_000_003 + pipeline) % (2**31)
    sizes = [tf.io.gfile.stat(f).length for f in files]

    ds = tf.data.Dataset.from_tensor_slices((files, tf.constant(sizes, tf.int64)))
    if training:
        ds = ds.shuffle(len(files), seed=shuffle_seed, reshuffle_each_iteration=True)
    ds = ds.interleave(
        _plain(lambda path, size: _read_shard(path, size, skipped, info.num_classes, info.label_offset)),
        cycle_length=min(len(files), _MAX_CYCLE_LENGTH),
        num_parallel_calls=AUTOTUNE,
        deterministic=deterministic,
    )
    if training:
        if shuffle_buffer is None:
            known = info.counts.get(split)
            shuffle_buffer = min(DEFAULT_SHUFFLE_BUFFER, known) if known else DEFAULT_SHUFFLE_BUFFER
        if shuffle_buffer > 1:
            # Shuffle before repeat, so an epoch is seen whole before the next begins.
            ds = ds.shuffle(shuffle_buffer, seed=shuffle_seed + 1, reshuffle_each_iteration=True)
        ds = ds.repeat(repeat)  # None: forever
    elif repeat is not None and repeat > 1:
        ds = ds.repeat(repeat)

    # Images smaller than the crop are scaled up, unless metadata.json says
    # every stored image is at least the crop.
    upscale = not (info.image_size and info.image_size >= image_size)
    if training:
        # Index every example after repeat: its crop seed differs in every epoch.
        ds = ds.enumerate().map(
            _plain(functools.partial(
                _decode_train,
                image_size=image_size,
                random_crop=random_crop,
                seed=tf.random.experimental.stateless_fold_in(base_seed, 0),
                upscale=upscale,
            )),
            num_parallel_calls=AUTOTUNE,
        )
        ds = _skip_undecodable(ds, skipped)
        # drop_remainder: every step has the same static batch shape, which
        # strategies and XLA need.
        ds = ds.batch(per_replica, drop_remainder=True)
        # The random draws of flips and colour noise: a few numbers per batch.
        # finish_on_device leaves the pixel work to finish_crops in the train step.
        finish = functools.partial(
            _with_draws if finish_on_device else _finish,
            seed=tf.random.experimental.stateless_fold_in(base_seed, 1),
            draws=_draws(info, flip, pca_noise, pca_stddev, mean_subtract),
        )
        ds = ds.enumerate().map(_plain(finish), num_parallel_calls=AUTOTUNE)
    else:
        decode = functools.partial(_decode_eval, image_size=image_size, ten_crop=ten_crop, upscale=upscale)
        ds = ds.map(_plain(decode), num_parallel_calls=AUTOTUNE)
        ds = _skip_undecodable(ds, skipped)
        # Keep the remainder: every validation example is counted once.
        ds = ds.batch(per_replica, drop_remainder=False)
        finish = functools.partial(_finish_eval, draws=_draws(info, False, False, pca_stddev, mean_subtract))
        ds = ds.map(_plain(finish), num_parallel_calls=AUTOTUNE)
    ds = ds.prefetch(AUTOTUNE)

    options = tf.data.Options()
    options.deterministic = deterministic
    if input_context is not None:
        # Already sharded by file above; stop tf.distribute from sharding again.
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return ds.with_options(options)


def decode_and_center_crop(jpeg_bytes, image_size, rgb_mean):
    """Evaluation preprocessing of one JPEG, for the exported model's serving signature.

    Args:
      jpeg_bytes: scalar string tensor.
      image_size: int, crop side.
      rgb_mean: 3 floats ([0, 1] scale) to subtract, or None.

    Returns:
      float32 tensor (image_size, image_size, 3), the same values make_dataset
      gives for this image with training=False.
    """
    image = augment.to_float(augment.decode_center_crop(jpeg_bytes, image_size))
    if rgb_mean is not None:
        image = augment.subtract_mean(image, rgb_mean)
    return image


def ten_crop_views(image, image_size):
    """The paper's 10 views of one image; see `augment.ten_crop_views`."""
    return augment.ten_crop_views(image, image_size)
