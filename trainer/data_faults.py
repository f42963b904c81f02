"""Corrupt input met while training or evaluating, as one line that says what to do.

The checked reader (`trainer.shard_reader`) stops a pipeline with an assertion
whose text names the shard (and the record) at fault; TensorFlow raises it from
inside the step as an InvalidArgumentError carrying graph node names and a
stack trace. `describe(error, data_dir)` turns such an error into one sentence
(the file, the record where known, and the remedies: rebuild the shard, or
`--skip_corrupt`), `None` for any other error; `fault_for(config, error)` adds
which checkpoint is kept. `trainer.run` raises that `DataFault`; `trainer.task`
prints it and exits with `cli.EXIT_DATA`.
"""
import re

import tensorflow as tf

import cli

# The text of the reader's assertion: "assertion failed: [<message>]" on one line.
_ASSERTION = re.compile(r"assertion failed: \[(.*)\]\s*$", re.MULTILINE)
_SHARD = re.compile(
    r"Corrupt or truncated TFRecord shard (?P<path>.+): reading stopped at byte (?P<byte>\d+) of (?P<size>\d+) "
    r"after (?P<good>\d+) good records"
)
_JPEG = re.compile(r"Corrupt JPEG \(truncated or not a JPEG\) in record (?P<record>\d+) \((?P<name>.*)\) of (?P<path>.+)")
_LABEL = re.compile(r"Label .* is outside \[0, \d+\) in record .*")
# TensorFlow's own decoder errors: they name no file.
_UNDECODABLE = re.compile(r"Invalid JPEG data[^\n]*|jpeg::Uncompress failed[^\n]*|Unknown image file format[^\n]*")

REBUILD = "python -m preprocessing.build_tfrecords"


class DataFault(Exception):
    """Corrupt, truncated or undecodable input; the message is one line naming it and what to do."""


class WrongLabel(Exception):
    """A label outside [0, num_classes): wrong --num_classes or --label_offset, a user error."""


def describe(error, data_dir):
    """The one-line description of a data fault in `error`'s message, or None when it is no data fault.

    Args:
      error: an exception (a tf.errors.OpError from a pipeline or a step).
      data_dir: the --data_dir the run reads (named when TensorFlow names no file).

    Raises:
      WrongLabel: the error is the reader's label check (a user error, not a fault).
    """
    text = str(getattr(error, "message", "") or error)
    assertion = _ASSERTION.search(text)
    message = assertion.group(1) if assertion else ""
    shard = _SHARD.search(message)
    if shard:
        good = int(shard.group("good"))
        return (
            "TFRecord shard %s is corrupt or truncated: reading stopped at byte %s of %s, in record %d (its first %d "
            "records are intact). Either rebuild the shard with %s (or copy it again from its source), or rerun with "
            "--skip_corrupt to read on without the rest of that shard"
            % (shard.group("path"), shard.group("byte"), shard.group("size"), good, good, REBUILD)
        )
    jpeg = _JPEG.search(message)
    if jpeg:
        return (
            "record %s (%s) of TFRecord shard %s holds a truncated image or no JPEG. Either rebuild the shard with %s, "
            "or rerun with --skip_corrupt to skip such records"
            % (jpeg.group("record"), jpeg.group("name"), jpeg.group("path"), REBUILD)
        )
    if _LABEL.search(message):
        raise WrongLabel(
            "%s. Check --num_classes and --label_offset against the data's metadata.json" % _LABEL.search(message).group(0)
        )
    undecodable = _UNDECODABLE.search(text)
    if undecodable:
        return (
            "an image in the shards of %s cannot be decoded (TensorFlow: %s; it does not say which file). Either rebuild "
            "the shards with %s, which rejects such images, or rerun with --skip_corrupt to skip them"
            % (data_dir, undecodable.group(0).strip().rstrip("."), REBUILD)
        )
    return None


def fault_for(config, error):
    """What a run ends with for `error`: a DataFault saying which checkpoint is kept, a cli.UsageError
    for a wrong label, or None when `error` is no data fault (it is raised as it is)."""
    try:
        text = describe(error, config.data_dir)
    except WrongLabel as wrong:
        return cli.UsageError(str(wrong))
    if text is None:
        return None
    if config.eval_only:
        return DataFault("%s; eval.json was not written." % text)
    # The fault stopped the run inside a step or an evaluation: nothing after it was saved.
    latest = tf.train.latest_checkpoint(config.resolved_checkpoint_dir)
    if not latest:
        return DataFault("%s; no checkpoint had been saved yet." % text)
    return DataFault(
        "%s; nothing was saved after it: the last good checkpoint is %s, and rerunning the same command resumes from it."
        % (text, latest)
    )
