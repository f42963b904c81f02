"""Shard files: deterministic membership, TFRecord framing, the output namespace.

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

from preprocessing import fields

REJECTS_FILE = "rejects.tsv"
UNMATCHED_LABELS_FILE = "labels_without_images.txt"
FAILED_FILE = "job_failed.txt"


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
    patterns = [fields.METADATA_FILE, REJECTS_FILE, UNMATCHED_LABELS_FILE, FAILED_FILE]
    patterns += ["%s-*-of-*" % split for split in fields.SPLITS]
    found = []
    for pattern in patterns:
        result = FileSystems.match([join(output_dir, pattern)])[0]
        found += sorted(m.path for m in result.metadata_list)
    return found


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
