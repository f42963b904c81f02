"""trainer.shard_reader: corrupt shards and JPEGs fail naming them or are counted skips; input sharding.

Fixture shards come from tests.helpers.trainer_data.write_labelled_shards (the
`data` fixture): every training example has its own label, so tests count
examples exactly and check which worker saw which.
"""
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from preprocessing import schema
from tests.helpers.trainer_data import CROP, STORED, TRAIN_SHARDS, collect, encode
from trainer import data_info, datasets, shard_reader


def _record_ends(path):
    """Byte offsets where each record of a TFRecord file ends (walks the framing)."""
    data = Path(path).read_bytes()
    ends, pos = [], 0
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 8], "little")
        pos += 16 + length
        ends.append(pos)
    return ends


def _corrupt_copy(data, tmp_path, how):
    directory, _, _ = data
    target = tmp_path / "shards"
    target.mkdir()
    for name in os.listdir(directory):
        (target / name).write_bytes(Path(directory, name).read_bytes())
    victim = target / schema.shard_name("validation", 1, 2)
    raw = bytearray(victim.read_bytes())
    ends = _record_ends(victim)
    if how == "truncate":  # cut in the middle of the 3rd record: 2 good records remain
        raw = raw[: ends[1] + 40]
    elif how == "crc":  # flip a byte inside the 4th record's data: its CRC fails
        raw[ends[2] + 100] ^= 0xFF
    victim.write_bytes(bytes(raw))
    return str(target), str(victim), ends


@pytest.mark.parametrize("how,good", [("truncate", 2), ("crc", 3)])
def test_corrupt_shard_is_an_error_naming_the_file(data, tmp_path, how, good):
    directory, victim, ends = _corrupt_copy(data, tmp_path, how)
    ds = datasets.make_dataset(directory, "validation", 4, training=False, image_size=CROP)
    pattern = "Corrupt or truncated TFRecord shard .*%s.*stopped at byte %d of .* after %d good records" % (
        os.path.basename(victim), ends[good - 1], good)
    with pytest.raises(tf.errors.InvalidArgumentError, match=pattern):
        collect(ds)


@pytest.mark.parametrize("how,good", [("truncate", 2), ("crc", 3)])
def test_corrupt_shard_skip_is_counted_and_logged(data, tmp_path, caplog, how, good):
    directory, victim, _ = _corrupt_copy(data, tmp_path, how)
    skipped = shard_reader.SkippedRecords()
    ds = datasets.make_dataset(
        directory, "validation", 4, training=False, image_size=CROP, skip_corrupt=skipped
    )
    _, labels = collect(ds)
    # Shard 0 holds labels 0..5 whole; shard 1 (labels 6..10) only its first good records.
    assert sorted(np.concatenate(labels)) == list(range(6 + good))
    assert (skipped.shards, skipped.records) == (1, 0)
    assert os.path.basename(victim) in skipped.events[0]
    assert any(os.path.basename(victim) in r.getMessage() for r in caplog.records)


def _write_with_bad_jpeg(directory, damage=lambda e: e[: len(e) // 2]):
    rng = np.random.default_rng(3)
    path = os.path.join(directory, schema.shard_name("validation", 0, 1))
    with tf.io.TFRecordWriter(path) as writer:
        for label in range(5):
            encoded = encode(rng.integers(0, 256, STORED + (3,), dtype=np.uint8))
            if label == 2:
                encoded = damage(encoded)  # default: a truncated JPEG inside an intact record
            example = schema.make_example(encoded, label, STORED[0], STORED[1], filename="photo_%d.JPEG" % label)
            writer.write(schema.serialize_example(example))
    return path


def test_corrupt_jpeg_is_an_error_or_a_counted_skip(tmp_path):
    _write_with_bad_jpeg(str(tmp_path))
    info = data_info.read_data_info(str(tmp_path), num_classes=5)
    make = lambda skip: datasets.make_dataset(  # noqa: E731
        str(tmp_path), "validation", 2, training=False, image_size=CROP, info=info, skip_corrupt=skip
    )
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"Corrupt JPEG \(truncated or not a JPEG\) in record 2 \(photo_2.JPEG\) of .*validation-00000-of-00001",
    ):
        collect(make(False))
    skipped = shard_reader.SkippedRecords()
    _, labels = collect(make(skipped))
    assert sorted(np.concatenate(labels)) == [0, 1, 3, 4]
    assert (skipped.shards, skipped.records) == (0, 1) and "photo_2.JPEG" in skipped.events[0]


def test_jpeg_with_damaged_header_fails_or_is_skipped(tmp_path):
    # Starts and ends like a JPEG, so it passes the completeness check, but its
    # header is zeroed: decoding fails. Without skipping that is TensorFlow's own
    # error (it names no file); with skipping, tf.data drops and logs it, uncounted.
    _write_with_bad_jpeg(str(tmp_path), damage=lambda e: e[:3] + bytes(200) + e[203:])
    info = data_info.read_data_info(str(tmp_path), num_classes=5)
    make = lambda skip: datasets.make_dataset(  # noqa: E731
        str(tmp_path), "validation", 2, training=False, image_size=CROP, info=info, skip_corrupt=skip
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match="Invalid JPEG data"):
        collect(make(False))
    skipped = shard_reader.SkippedRecords()
    _, labels = collect(make(skipped))
    assert sorted(np.concatenate(labels)) == [0, 1, 3, 4]
    assert (skipped.shards, skipped.records) == (0, 0)


def test_multi_worker_input_sharding_reads_disjoint_files(data):
    directory, _, _ = data
    seen = []
    for worker in range(2):
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=worker, num_replicas_in_sync=2
        )
        files = shard_reader.shard_files(shard_reader.list_shards(directory, "train"), context)
        assert [os.path.basename(f) for f in files] == [
            schema.shard_name("train", i, TRAIN_SHARDS) for i in range(worker, TRAIN_SHARDS, 2)
        ]
        ds = datasets.make_dataset(
            directory, "train", 8, training=True, image_size=CROP, input_context=context, repeat=1, seed=0
        )
        images, labels = collect(ds)
        assert all(len(y) == 4 for y in labels)  # global batch 8 over 2 replicas
        labels = set(np.concatenate(labels).tolist())
        # Worker w reads shards w and w + 2, i.e. labels 6i..6i+5 of those shards only.
        assert labels == {label for i in range(worker, TRAIN_SHARDS, 2) for label in range(i * 6, i * 6 + 6)}
        seen.append(labels)
    assert not seen[0] & seen[1] and len(seen[0] | seen[1]) == 24


def test_more_pipelines_than_files_is_an_error(data):
    directory, _, _ = data
    context = tf.distribute.InputContext(num_input_pipelines=8, input_pipeline_id=0, num_replicas_in_sync=8)
    with pytest.raises(ValueError, match="expected at least 8 shards for 8 input pipelines. Received: 4 shards"):
        datasets.make_dataset(directory, "train", 8, training=True, input_context=context)
