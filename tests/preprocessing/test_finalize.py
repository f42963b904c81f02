"""preprocessing.finalize: the guard, the input accounting, and what a failed job leaves behind."""
import pytest

import cli
from preprocessing import shards
from tests.helpers import image_folders as fx


def _wrong_folder(clean, tmp_path):
    """Wrong folder: undecodable files given as a class folder, one good image, a sidecar."""
    wrong = tmp_path / "wrong"
    (wrong / "n01440764").mkdir(parents=True)
    for i in range(4):
        (wrong / "n01440764" / ("%d.JPEG" % i)).write_bytes(b"not a picture")
    (wrong / "n01440764" / "ok.JPEG").write_bytes((clean["val_dir"] / "ILSVRC2012_val_00000001.JPEG").read_bytes())
    return wrong


def test_guard_fails_the_job_when_far_too_much_is_rejected(clean, tmp_path, capsys):
    out = tmp_path / "out"
    wrong = _wrong_folder(clean, tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        fx.run_job(out, "--train_dir", wrong, "--train_shards", 1, "--image_size", 32)
    # The job ran and failed: cli.EXIT_FAILED, not a usage error.
    assert exit_info.value.code == cli.EXIT_FAILED
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "train: rejected 4 of 5 inputs (80.0%), more than --max_reject_fraction 0.1" in err[0]
    assert not (out / "metadata.json").exists()
    assert len(fx.read_rejects(out)) == 4
    # The same input passes with a looser guard.
    meta = fx.run_job(
        tmp_path / "loose", "--train_dir", wrong, "--train_shards", 1, "--image_size", 32, "--max_reject_fraction", 0.9
    )
    assert meta["counts"]["train"] == 1 and meta["rejected"]["train"] == 4


def test_a_failed_job_leaves_no_shard_and_reruns_without_overwrite(clean, tmp_path, capsys):
    out = tmp_path / "out"
    wrong = _wrong_folder(clean, tmp_path)
    (wrong / "n01440764" / "notes.txt").write_text("a sidecar, skipped")
    with pytest.raises(SystemExit) as exit_info:
        fx.run_job(out, "--train_dir", wrong, "--val_dir", wrong, "--train_shards", 16, "--val_shards", 8, "--image_size", 32)
    assert exit_info.value.code == cli.EXIT_FAILED
    # Only what explains the failure: no shard at all, empty or not, and no in-progress folder.
    assert sorted(p.name for p in out.iterdir()) == ["job_failed.txt", "rejects.tsv", "skipped.tsv"]
    assert "train: rejected 4 of 5 inputs (80.0%)" in (out / "job_failed.txt").read_text()
    assert "(1 skipped files not counted)" in (out / "job_failed.txt").read_text()
    skipped = [(path.rsplit("/", 1)[-1], split) for path, split, _ in fx.read_skipped(out)]
    assert skipped == [("notes.txt", "train"), ("notes.txt", "validation")]
    capsys.readouterr()
    # The rerun, looser, needs no --overwrite: nothing of a finished job is there.
    meta = fx.run_job(
        out, "--train_dir", wrong, "--train_shards", 2, "--image_size", 32, "--max_reject_fraction", 0.9
    )
    assert meta["counts"]["train"] == 1 and meta["rejected"]["train"] == 4 and meta["skipped"]["train"] == 1
    assert meta["inputs"]["train"] == 6
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["metadata.json", "rejects.tsv", "skipped.tsv", "labels_without_images.txt",
         "train-00000-of-00002", "train-00001-of-00002"]
    )
    # A finished job is protected again.
    with pytest.raises(SystemExit) as exit_info:
        fx.run_job(out, "--train_dir", wrong, "--train_shards", 2, "--image_size", 32)
    assert exit_info.value.code == cli.EXIT_USAGE and "is not empty" in capsys.readouterr().err


def test_a_crashed_job_removes_its_shards_in_progress(clean, tmp_path, monkeypatch):
    out = tmp_path / "out"
    (out / shards.IN_PROGRESS_DIR).mkdir(parents=True)
    (out / shards.IN_PROGRESS_DIR / "train-00000-of-00009").write_bytes(b"from a crashed run")

    def crash(*_):
        raise OSError("disk full")

    monkeypatch.setattr(shards, "move_into_place", crash)
    with pytest.raises(Exception, match="disk full"):
        fx.run_job(out, "--train_dir", clean["train_dir"], "--train_shards", 2, "--image_size", 32)
    # The crashed run's own shards went too; what it had listed is still there to read.
    assert not (out / shards.IN_PROGRESS_DIR).exists()
    assert not list(out.glob("train-*")) and not (out / "metadata.json").exists()
