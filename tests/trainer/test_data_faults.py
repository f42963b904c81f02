"""trainer.data_faults: corrupt input ends a run with one line naming it and exit code 4.

The end-to-end tests damage real shards of a finished one-epoch run's data (a byte
flipped in a training shard, a validation shard cut short), run the real trainer
on them, and check the one line, the exit code, that the checkpoints are as they
were, and that the run resumes from them once the shard is restored.
"""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import cli
from preprocessing import schema
from tests.helpers.trainer_data import CROP, STORED, collect, encode, program_lines, run_task, write_dataset
from trainer import config as config_lib
from trainer import data_faults, data_info, datasets

STEPS = 3
ERROR = "python -m trainer.task: data error: "


def _record_ends(path):
    """Byte offsets where each record of a TFRecord file ends (walks the framing)."""
    data = Path(path).read_bytes()
    ends, pos = [], 0
    while pos < len(data):
        pos += 16 + int.from_bytes(data[pos : pos + 8], "little")
        ends.append(pos)
    return ends


def _args(data, model_dir, *extra, epochs=1):
    return [
        "--data_dir", data, "--model_dir", model_dir, "--image_size", "67", "--batch_size", "8", "--epochs", str(epochs),
        "--steps_per_epoch", str(STEPS), "--init", "he", "--checkpoint_every_steps", "0", "--no_export", "--seed", "2",
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 1-epoch run (checkpoint ckpt-3, eval.json) and its data."""
    root = tmp_path_factory.mktemp("faults")
    write_dataset(root / "data", num_classes=3, train_per_class=8, val_per_class=4, size=72)
    proc = run_task(*_args(root / "data", root / "run"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root


@pytest.fixture
def copy(trained, tmp_path):
    """(the data dir, a private copy of the finished run's model dir); the tests damage a shard of
    the shared data dir (its path is in config.json) and restore it whatever happens."""
    data = trained / "data"
    shutil.copytree(trained / "run", tmp_path / "run")
    shards = {p: p.read_bytes() for p in data.glob("*-of-*")}
    yield data, tmp_path / "run"
    for path, good in shards.items():
        path.write_bytes(good)


def _files(directory):
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def _one_error_line(proc):
    lines = program_lines(proc.stderr)
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith(ERROR)
    return lines[0]


def test_a_flipped_byte_in_a_training_shard_stops_the_run_keeping_the_last_checkpoint(copy):
    data, model_dir = copy
    shard = data / schema.shard_name("train", 1, 2)
    good = shard.read_bytes()
    ends = _record_ends(shard)
    damaged = bytearray(good)
    damaged[ends[4] + 60] ^= 0x01  # inside record 5's data: its CRC fails
    shard.write_bytes(bytes(damaged))
    checkpoints = _files(model_dir / "checkpoints")
    latest = str(model_dir / "checkpoints" / "ckpt-3")

    proc = run_task(*_args(data, model_dir, epochs=2))
    assert proc.returncode == cli.EXIT_DATA == 4
    assert _one_error_line(proc) == ERROR + (
        "TFRecord shard %s is corrupt or truncated: reading stopped at byte %d of %d, in record 5 (its first 5 records "
        "are intact). Either rebuild the shard with python -m preprocessing.build_tfrecords (or copy it again from its "
        "source), or rerun with --skip_corrupt to read on without the rest of that shard; nothing was saved after it: "
        "the last good checkpoint is %s, and rerunning the same command resumes from it." % (shard, ends[4], len(good), latest)
    )
    assert _files(model_dir / "checkpoints") == checkpoints  # nothing saved, nothing removed

    shard.write_bytes(good)  # the shard restored
    rerun = run_task(*_args(data, model_dir, epochs=2))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resumed from %s at step 3 (epoch 1 completed)" % latest in rerun.stdout
    assert "trained 2 epochs (6 steps)" in rerun.stdout.strip().splitlines()[-1]


def test_a_truncated_validation_shard_stops_the_epoch_before_it_saves(copy):
    """The epoch's steps ran; its validation met the cut shard; the epoch-end checkpoint was not written."""
    data, model_dir = copy
    shard = data / schema.shard_name("validation", 0, 2)
    good = shard.read_bytes()
    ends = _record_ends(shard)
    shard.write_bytes(good[: ends[1] + 30])  # 2 whole records, then part of the 3rd
    checkpoints = _files(model_dir / "checkpoints")

    proc = run_task(*_args(data, model_dir, epochs=2))
    assert proc.returncode == cli.EXIT_DATA
    line = _one_error_line(proc)
    assert line.startswith(ERROR + "TFRecord shard %s is corrupt or truncated: reading stopped at byte %d of %d, in "
                           "record 2 (its first 2 records are intact)." % (shard, ends[1], ends[1] + 30))
    assert line.endswith("the last good checkpoint is %s, and rerunning the same command resumes from it."
                         % (model_dir / "checkpoints" / "ckpt-3"))
    assert "epoch 2/2 step %d/%d" % (STEPS, STEPS) in proc.stdout  # the steps of epoch 2 did run
    assert _files(model_dir / "checkpoints") == checkpoints

    shard.write_bytes(good)
    rerun = run_task(*_args(data, model_dir, epochs=2))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "at step 3 (epoch 1 completed)" in rerun.stdout


def test_eval_only_on_a_corrupt_shard_is_one_line_and_leaves_eval_json(copy):
    data, model_dir = copy
    shard = data / schema.shard_name("validation", 1, 2)
    good = shard.read_bytes()
    ends = _record_ends(shard)
    damaged = bytearray(good)
    damaged[ends[2] + 50] ^= 0xFF  # record 3
    shard.write_bytes(bytes(damaged))
    before = (model_dir / "eval.json").read_bytes()

    proc = run_task(*_args(data, model_dir, "--eval_only"))
    assert proc.returncode == cli.EXIT_DATA
    assert _one_error_line(proc) == ERROR + (
        "TFRecord shard %s is corrupt or truncated: reading stopped at byte %d of %d, in record 3 (its first 3 records "
        "are intact). Either rebuild the shard with python -m preprocessing.build_tfrecords (or copy it again from its "
        "source), or rerun with --skip_corrupt to read on without the rest of that shard; eval.json was not written."
        % (shard, ends[2], len(good))
    )
    assert (model_dir / "eval.json").read_bytes() == before

    # --skip_corrupt evaluates what can be read: the shard's 3 good records of its 6, logged and counted.
    skipped = run_task(*_args(data, model_dir, "--eval_only", "--skip_corrupt"))
    assert skipped.returncode == 0, skipped.stderr[-3000:]
    assert "on 9 validation images" in skipped.stdout, skipped.stdout[-1500:]
    assert json.loads((model_dir / "eval.json").read_text())["centre_crop"]["examples"] == 9
    warnings = [line for line in skipped.stderr.splitlines() if line.startswith("Skipping corrupt input")]
    assert warnings and all(str(shard) in w for w in warnings)

    shard.write_bytes(good)
    rerun = run_task(*_args(data, model_dir, "--eval_only"))
    assert rerun.returncode == 0 and "on 12 validation images" in rerun.stdout


# ---------------------------------------------------------------- describe() on the pipeline's own errors


def _error_of(directory, num_classes=None):
    ds = datasets.make_dataset(str(directory), "validation", 2, training=False, image_size=CROP,
                               info=None if num_classes is None else _info(directory, num_classes))
    with pytest.raises(tf.errors.OpError) as caught:
        collect(ds)
    return caught.value


def _info(directory, num_classes):
    return data_info.read_data_info(str(directory), num_classes=num_classes)


def _write_validation(directory, damage):
    rng = np.random.default_rng(3)
    path = os.path.join(directory, schema.shard_name("validation", 0, 1))
    with tf.io.TFRecordWriter(path) as writer:
        for label in range(4):
            encoded = encode(rng.integers(0, 256, STORED + (3,), dtype=np.uint8))
            if label == 2:
                encoded = damage(encoded)
            example = schema.make_example(encoded, label, STORED[0], STORED[1], filename="photo_%d.JPEG" % label)
            writer.write(schema.serialize_example(example))
    return path


def test_describe_names_the_record_of_a_truncated_jpeg(tmp_path):
    path = _write_validation(tmp_path, lambda e: e[: len(e) // 2])
    text = data_faults.describe(_error_of(tmp_path, num_classes=4), str(tmp_path))
    assert text == (
        "record 2 (photo_2.JPEG) of TFRecord shard %s holds a truncated image or no JPEG. Either rebuild the shard with "
        "python -m preprocessing.build_tfrecords, or rerun with --skip_corrupt to skip such records" % path
    )


def test_describe_says_tensorflow_names_no_file_for_an_undecodable_header(tmp_path):
    _write_validation(tmp_path, lambda e: e[:3] + bytes(200) + e[203:])
    text = data_faults.describe(_error_of(tmp_path, num_classes=4), str(tmp_path))
    assert text.startswith("an image in the shards of %s cannot be decoded (TensorFlow: Invalid JPEG data" % tmp_path)
    assert text.endswith("it does not say which file). Either rebuild the shards with python -m "
                         "preprocessing.build_tfrecords, which rejects such images, or rerun with --skip_corrupt to skip them")


def test_describe_leaves_other_errors_alone():
    assert data_faults.describe(tf.errors.ResourceExhaustedError(None, None, "OOM when allocating"), "d") is None
    assert data_faults.describe(ValueError("assertion failed: [something else]"), "d") is None


def test_a_label_outside_the_classes_is_a_usage_error_not_a_fault(tmp_path):
    """Labels 0..3 read as 3 classes: wrong flags (or metadata), so cli.UsageError (exit 2), not exit 4."""
    _write_validation(tmp_path, lambda e: e)
    error = _error_of(tmp_path, num_classes=3)
    with pytest.raises(data_faults.WrongLabel):
        data_faults.describe(error, str(tmp_path))
    config = config_lib.TrainConfig(data_dir=str(tmp_path), model_dir=str(tmp_path / "run"))
    usage = data_faults.fault_for(config, error)
    assert isinstance(usage, cli.UsageError)
    assert str(usage).startswith("Label 3 (stored 3 minus label_offset 0) is outside [0, 3) in record 3 (photo_3.JPEG) of ")
    assert str(usage).endswith("Check --num_classes and --label_offset against the data's metadata.json")
