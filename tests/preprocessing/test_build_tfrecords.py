"""The entry point: one error line for every user mistake, exit codes, the runner, no TensorFlow."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

from preprocessing import build_tfrecords, listing
from tests.helpers import image_folders as fx


REPO = Path(__file__).resolve().parents[2]


def test_the_job_runs_without_importing_tensorflow(tmp_path):
    """Worker processes import the job's modules; TensorFlow would add seconds to each one's start-up."""
    train = tmp_path / "in" / "n01440764"
    train.mkdir(parents=True)
    (train / "a.JPEG").write_bytes(fx.encode(fx.noise_image(np.random.default_rng(0), "RGB", 48, 40), "JPEG"))
    code = (
        "import sys\n"
        "from preprocessing import build_tfrecords\n"
        "meta = build_tfrecords.run(['--train_dir', sys.argv[1], '--output_dir', sys.argv[2], '--train_shards', '1',"
        " '--image_size', '32', '--direct_running_mode', 'in_memory', '--direct_num_workers', '1'])\n"
        "assert meta['counts']['train'] == 1, meta\n"
        "loaded = sorted(m for m in sys.modules if m == 'tensorflow' or m.startswith('tensorflow.'))\n"
        "print('tensorflow modules:', len(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "in"), str(tmp_path / "out")],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "tensorflow modules: 0" in result.stdout
    assert (tmp_path / "out" / "train-00000-of-00001").stat().st_size > 0


def _error_line(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        build_tfrecords.run(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("build_tfrecords: error: ")
    return err[0]


@pytest.fixture()
def small_set(tmp_path):
    return fx.make_clean_set(tmp_path / "in", per_class=1, val_count=2)


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "--output_dir is required"),
        (["--output_dir", "{out}"], "nothing to do"),
        (["--output_dir", "{out}", "--train_dir", "{missing}"], "--train_dir: not a folder or .tar"),
        (["--output_dir", "{out}", "--train_dir", "{missing}.tar"], "--train_dir: tar not found"),
        (["--output_dir", "{out}", "--train_dir", "{in}/x.tar.gz"], "compressed tars"),
        (["--output_dir", "{out}", "--train_dir", "{in}/val"], "must hold class folders"),
        (["--output_dir", "{out}", "--val_dir", "{in}/val", "--synsets", "{in}/meta/LOC_synset_mapping.txt"],
         "pass --val_labels"),
        (["--output_dir", "{out}", "--train_dir", "{in}/train", "--val_dir", "{in}/val",
          "--val_labels", "{in}/meta/ILSVRC2012_validation_ground_truth.txt"], "pass --devkit_classes"),
        (["--output_dir", "{out}", "--train_dir", "{in}/train", "--synsets", "{missing}"], "--synsets: file not found"),
        (["--output_dir", "{out}", "--train_dir", "{in}/train", "--image_size", "-1"], "--image_size must be >= 0"),
        (["--output_dir", "{out}", "--train_dir", "{in}/train", "--image_size", "big"], "invalid int value: 'big'"),
        (["--output_dir", "{out}", "--train_dir", "{in}/train", "--train_shards", "0"], "--train_shards must be >= 1"),
        (["--output_dir", "{out}", "--train_dir", "{in}/train", "--stats_stride", "0"], "--stats_stride must be >= 1"),
        (["--output_dir", "{out}", "--train_dir", "{in}/train", "--jpeg_quality", "101"], "--jpeg_quality must be in 1..100"),
        (["--output_dir", "{out}", "--train_dir", "{in}/train", "--max_reject_fraction", "2"],
         "--max_reject_fraction must be in [0, 1]"),
        (["--output_dir", "{out}", "--trian_dir", "{in}/train"], "unknown flag(s): --trian_dir"),
        # A bad value of a Beam flag: one line, not Beam's usage of its ~150 flags first.
        (["--output_dir", "{out}", "--train_dir", "{in}/train", "--direct_num_workers", "abc"],
         "bad Beam flag: argument --direct_num_workers: invalid int value: 'abc'"),
        (["--output_dir", "{out}", "--train_dir", "{in}/train", "--direct_running_mode", "bogus"],
         "bad Beam flag: argument --direct_running_mode: invalid choice: 'bogus'"),
        (["--output_dir", "{out}", "--demo", "--train_dir", "{in}/train"], "--demo generates its own inputs"),
        (["--output_dir", "gs://bucket/demo", "--demo"], "give a local --output_dir"),
        (["--output_dir", "{in}/train", "--train_dir", "{in}/train"], "is not empty"),
    ],
)
def test_user_errors_print_one_line_and_exit_2(small_set, tmp_path, capsys, extra, message):
    fill = {"out": str(tmp_path / "out"), "missing": str(tmp_path / "missing"), "in": str(tmp_path / "in")}
    argv = [a.format(**fill) for a in extra]
    previous = _previous_output(tmp_path / "out")
    if any("{out}" in a for a in extra):
        argv.append("--overwrite")  # a user mistake must not cost the previous output even so
    line = _error_line(capsys, argv)
    assert message in line, line
    assert _files(tmp_path / "out") == previous


def _previous_output(out):
    """A finished earlier job's output (metadata.json, a shard) plus a foreign file."""
    out.mkdir()
    (out / "metadata.json").write_text('{"counts": {"train": 1, "validation": 0}}')
    (out / "train-00000-of-00001").write_bytes(b"old shard")
    (out / "notes.txt").write_text("not the job's")
    return _files(out)


def _files(folder):
    return {p.name: p.read_bytes() for p in Path(folder).iterdir()}


@pytest.mark.parametrize(
    "extra", [["--train_dir", "{missing}"], ["--demo", "--demo_seed", "x"], ["--demo", "--jpeg_quality", "0"]]
)
def test_overwrite_deletes_nothing_when_the_flags_or_inputs_are_wrong(tmp_path, capsys, extra):
    out = tmp_path / "out"
    previous = _previous_output(out)
    argv = ["--output_dir", str(out), "--overwrite"] + [a.format(missing=tmp_path / "missing") for a in extra]
    _error_line(capsys, argv)
    assert _files(out) == previous


def test_command_line_exit_code_and_single_error_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "preprocessing.build_tfrecords", "--output_dir", str(tmp_path),
         "--train_dir", str(tmp_path / "nope")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.startswith("build_tfrecords:")]
    assert lines == ["build_tfrecords: error: --train_dir: not a folder or .tar. Received: %s" % (tmp_path / "nope")]
    assert "Traceback" not in proc.stderr


def test_default_runner_is_local_and_offline_and_scales_with_the_input(tmp_path):
    def chosen(beam_args, estimate):
        options = build_tfrecords._beam_options(beam_args, estimate)
        direct = options.view_as(DirectOptions)
        return options.view_as(StandardOptions).runner, direct.direct_running_mode, direct.direct_num_workers

    assert chosen([], 1600) == ("FnApiRunner", "in_memory", 1)
    assert chosen([], build_tfrecords.PROCESSES_FROM_IMAGES) == ("FnApiRunner", "multi_processing", 0)
    assert chosen([], None) == ("FnApiRunner", "multi_processing", 0)  # gs:// input: assume large
    assert chosen(["--direct_num_workers", "3"], 10) == ("FnApiRunner", "in_memory", 3)
    assert chosen(["--runner", "DataflowRunner"], 10)[0] == "DataflowRunner"
    data = fx.make_clean_set(tmp_path / "in", per_class=2, val_count=3)
    assert listing.estimate_count(str(data["train_dir"]), "classes") == 6
    assert listing.estimate_count(str(data["val_dir"]), "flat") == 3
    assert listing.estimate_count("gs://bucket/train", "classes") is None
