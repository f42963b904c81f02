"""Shard files: deterministic membership, TFRecord framing, the output namespace.

Shards are written into IN_PROGRESS_DIR inside the output folder and moved into
place only when the job succeeds (as Beam's own file sinks write into a
`beam-temp-*` folder and rename at finalisation), so a failed job leaves no
shard, empty or not: only the files that explain the failure (FAILURE_FILES).

An example's shard and its place inside the shard come from a hash of its
split, class and file name, never from the order in which workers happen to
finish, so the same inputs give byte-identical shards on every rerun and on
every runner. The hash also spreads each class over all shards (classes mixed
in every shard) and shuffles the order inside a shard. The key uses the class
and base name, not the path, so a folder and the official tar of the same
images give the same shards.
"""
import hashlib
import os
import struct

import google_crc32c
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from cli import UsageError
from preprocessing import fields

REJECTS_FILE = "rejects.tsv"
SKIPPED_FILE = "skipped.tsv"
UNMATCHED_LABELS_FILE = "labels_without_images.txt"
FAILED_FILE = "job_failed.txt"
IN_PROGRESS_DIR = "_in_progress"
# What a failed job leaves (a crashed one may also leave IN_PROGRESS_DIR): a
# folder holding only these has no finished job to protect.
FAILURE_FILES = (FAILED_FILE, REJECTS_FILE, SKIPPED_FILE, UNMATCHED_LABELS_FILE)


def shard_key(split, klass, name, num_shards):
    """Returns (shard index, sort key) of one example.

    Args:
      split: "train" or "validation".
      klass: the example's synset.
      name: the file's base name.
      num_shards: shards of this split.
    """
    digest = hashlib.sha1(("%s/%s/%s" % (split, klass, name)).encode("utf-8")).hexdigest()
    return int(digest[:15], 16) % num_shards, digest


def _masked_crc(data):
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame_record(data):
    """TFRecord framing: length, masked CRC32C of the length, data, masked CRC32C."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", _masked_crc(length)) + data + struct.pack("<I", _masked_crc(data))


def join(directory, name):
    return FileSystems.join(directory, name)


def create(path):
    return FileSystems.create(path, mime_type="application/octet-stream", compression_type=CompressionTypes.UNCOMPRESSED)


def write_bytes(path, data):
    with create(path) as f:
        f.write(data)


def output_files(output_dir):
    """Files of this job's namespace in output_dir: metadata.json first, so
    deleting in this order never leaves a directory that looks complete."""
    patterns = [fields.METADATA_FILE, *FAILURE_FILES]
    patterns += ["%s-*-of-*" % split for split in fields.SPLITS]
    patterns += ["%s/%s-*-of-*" % (IN_PROGRESS_DIR, split) for split in fields.SPLITS]
    found = []
    for pattern in patterns:
        result = FileSystems.match([join(output_dir, pattern)])[0]
        found += sorted(m.path for m in result.metadata_list)
    return found


def in_progress_path(output_dir, name):
    """Where a shard is written until the job succeeds."""
    return join(join(output_dir, IN_PROGRESS_DIR), name)


def move_into_place(output_dir, names):
    """Moves finished shards from IN_PROGRESS_DIR into output_dir (one batch:
    on object stores a rename is a copy and a delete, batched by Beam)."""
    if names:
        FileSystems.rename([in_progress_path(output_dir, n) for n in names], [join(output_dir, n) for n in names])
    remove_in_progress(output_dir)


def remove_in_progress(output_dir):
    """Deletes IN_PROGRESS_DIR and every shard in it (nothing if absent)."""
    folder = join(output_dir, IN_PROGRESS_DIR)
    leftover = [m.path for m in FileSystems.match([join(folder, "*")])[0].metadata_list]
    if leftover:
        FileSystems.delete(leftover)
    if "://" not in output_dir and os.path.isdir(folder):
        os.rmdir(folder)


def directory_entries(output_dir):
    """Everything directly inside output_dir (files and folders), sorted."""
    if "://" not in output_dir:
        # Beam's local match lists files only; an output dir holding only
        # folders is not empty either.
        if not os.path.isdir(output_dir):
            return []
        return sorted(os.path.join(output_dir, name) for name in os.listdir(output_dir))
    result = FileSystems.match([join(output_dir, "*")])[0]
    return sorted(m.path for m in result.metadata_list)


def check_output(output_dir, overwrite, own=()):
    """Refuses a file, or an output dir holding anything but a failed job's
    leftovers (FAILURE_FILES, IN_PROGRESS_DIR, and the `own` names) without
    --overwrite. Deletes nothing."""
    if "://" not in output_dir and os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise UsageError("--output_dir is a file, not a folder. Received: %s" % output_dir)
    leftovers = {*FAILURE_FILES, IN_PROGRESS_DIR, *own}
    entries = [e for e in directory_entries(output_dir) if e.rstrip("/").rsplit("/", 1)[-1] not in leftovers]
    if entries and not overwrite:
        raise UsageError(
            "--output_dir %s is not empty (%d entries, e.g. %s); pass --overwrite to replace this job's files"
            % (output_dir, len(entries), entries[0])
        )


def prepare_output(output_dir, overwrite, own=()):
    """Refuses a non-empty output dir unless --overwrite (see check_output);
    then deletes this job's previous files (metadata.json first) and a failed
    job's leftovers, so no stale shard survives.

    Destructive: call it only once every flag and input has been validated,
    right before the job writes (a typo must never cost an existing data set).
    """
    check_output(output_dir, overwrite, own)
    previous = output_files(output_dir)
    if previous:
        FileSystems.delete(previous)
    remove_in_progress(output_dir)
    if "://" not in output_dir:
        os.makedirs(output_dir, exist_ok=True)
