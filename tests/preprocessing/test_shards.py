"""preprocessing.shards: TFRecord framing and the output folder's namespace."""
import pytest
import tensorflow as tf

from preprocessing import records, shards
from tests.helpers import image_folders as fx
from tests.helpers.image_folders import EXAMPLE_CASES


def test_record_framing_equals_tfrecordwriter(tmp_path):
    payloads = [records.example_bytes(*case[:4]) for case in EXAMPLE_CASES] + [b"", b"z" * 70000]
    with tf.io.TFRecordWriter(str(tmp_path / "tf.tfrecord")) as writer:
        for payload in payloads:
            writer.write(payload)
    assert b"".join(shards.frame_record(p) for p in payloads) == (tmp_path / "tf.tfrecord").read_bytes()


def test_refuses_a_non_empty_output_dir_and_overwrite_removes_stale_shards(clean, tmp_path, capsys):
    out = tmp_path / "out"
    fx.run_job(out, *fx.imagenet_flags(clean), "--train_shards", 3, "--val_shards", 2, "--image_size", 32)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        fx.run_job(out, *fx.imagenet_flags(clean), "--train_shards", 2, "--val_shards", 1, "--image_size", 32)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not empty" in err[0] and "--overwrite" in err[0]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    meta = fx.run_job(out, *fx.imagenet_flags(clean), "--train_shards", 2, "--val_shards", 1, "--image_size", 32, "--overwrite")
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        ["metadata.json", "rejects.tsv", "skipped.tsv", "labels_without_images.txt",
         "train-00000-of-00002", "train-00001-of-00002", "validation-00000-of-00001"]
    )
    assert meta["shards"] == {"train": 2, "validation": 1}
