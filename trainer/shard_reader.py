"""The checked reader of TFRecord shards: corrupt input never silently shortens an epoch.

Each shard's records are counted in bytes as they are read; a shard whose
records do not add up to its file size (truncated, or a record failing its
CRC) is an error naming the shard and the byte where reading stopped. A JPEG
without an end-of-image marker (TensorFlow would decode it with grey rows) is
an error naming the shard, the record and the image. With `skip_corrupt`, both
are instead skipped, logged with the same details and counted in a
`SkippedRecords`. A label outside [0, num_classes) is always an error: it means
wrong flags, not a bad record.
"""
import functools
import logging
import threading

import numpy as np
import tensorflow as tf

from preprocessing import schema
from trainer import augment

# Bytes a TFRecord adds around each record: length (8), length CRC (4), data CRC (4).
_TFRECORD_OVERHEAD = 16

_log = logging.getLogger(__name__)
# The dataset functions of the reader and of trainer.datasets use tf.cond
# explicitly and Python control flow only on Python values: AutoGraph has
# nothing to convert, and skipping it makes building a pipeline faster
# (docs/decisions/trainer-cpu.md).
no_autograph = tf.autograph.experimental.do_not_convert


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


def skipped_records(skip_corrupt):
    """make_dataset's `skip_corrupt` -> the SkippedRecords to count into, or None to fail on corrupt input.

    Raises:
      ValueError: neither a bool nor a SkippedRecords.
    """
    if skip_corrupt is True:
        return SKIPPED
    if skip_corrupt is False or skip_corrupt is None:
        return None
    if isinstance(skip_corrupt, SkippedRecords):
        return skip_corrupt
    raise ValueError("expected skip_corrupt to be a bool or a SkippedRecords. Received: %r" % (skip_corrupt,))


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


def read_shard(path, size, skipped, num_classes, label_offset):
    """Parsed, checked examples of one shard: (encoded, label, filename, path, index).

    tf.data's own error for a bad shard names no file, and its ignore_errors
    stops the file without saying so. So the reader ignores the error, counts
    the bytes it did read, and a final empty chunk compares them with the
    file size: a shortfall is an error (or a counted skip) naming the shard
    and the byte where reading stopped.
    """
    size = tf.cast(size, tf.int64)
    chunks = tf.data.TFRecordDataset(path).ignore_errors().batch(_CHUNK)
    chunks = chunks.map(no_autograph(lambda r: (r, False))).concatenate(
        tf.data.Dataset.from_tensors((tf.zeros([0], tf.string), True))
    )

    def count(state, element):
        consumed, start = state
        records, is_end = element
        n = tf.size(records, out_type=tf.int64)
        read = tf.reduce_sum(tf.strings.length(records, unit="BYTE")) + _TFRECORD_OVERHEAD * tf.cast(n, tf.int32)
        return (consumed + tf.cast(read, tf.int64), start + n), (records, is_end, consumed, start)

    chunks = chunks.scan((tf.constant(0, tf.int64), tf.constant(0, tf.int64)), no_autograph(count))

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

    chunks = chunks.filter(no_autograph(shard_intact))
    checked = chunks.map(
        no_autograph(
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
