"""Tests of `python -m experiments.relu_vs_tanh`, end to end in its tiny mode on data the tests generate.

The tests read back the report, the PNG and the TensorBoard HParams records.
"""
import json

import keras
import numpy as np
import pytest

from experiments import figure1_report, relu_vs_tanh, tblog
from experiments.curves import epochs_to_target


def test_relu_vs_tanh_tiny_on_cifar_archive(cifar_archive, tmp_path, capsys, check_png):
    path, _ = cifar_archive
    out = tmp_path / "fig1"
    argv = ["--cifar", path, "--output_dir", str(out), "--tiny", "--repeats", "2", "--no_stop_at_target", "--target_error", "0.5"]
    assert relu_vs_tanh.main(argv) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith("relu_vs_tanh: median epochs to 50% training error over 2 seed(s): relu ")

    results = json.loads((out / "results.json").read_text())
    assert results["train_examples"] == 256 and results["test_examples"] == 50  # --tiny subset; test set smaller than 128
    assert results["num_classes"] == 10
    runs = results["runs"]
    assert [(r["activation"], r["seed"]) for r in runs] == [("relu", 0), ("tanh", 0), ("relu", 1), ("tanh", 1)]
    for run in runs:
        assert len(run["train_error"]) == 3 and run["stopped"] == "epochs"  # --tiny: 3 epochs, no early stop
        assert run["epochs_to_target"] == epochs_to_target(run["train_error"], 0.5)
        assert all(0.0 <= e <= 1.0 for e in run["train_error"] + run["test_error"])
    # Seed 1 starts from other weights than seed 0.
    assert runs[0]["train_loss"] != runs[2]["train_loss"]
    relu = figure1_report.median_epochs_to_target([runs[0], runs[2]])
    tanh = figure1_report.median_epochs_to_target([runs[1], runs[3]])
    assert [tuple(results["median"]["relu"]), tuple(results["median"]["tanh"])] == [relu, tanh]
    assert (results["ratio"], results["ratio_kind"]) == figure1_report.speedup(relu, tanh)
    assert results["per_seed_ratio"]["1"]["ratio"] == figure1_report.speedup(
        figure1_report.median_epochs_to_target([runs[2]]), figure1_report.median_epochs_to_target([runs[3]])
    )[0]

    report = (out / "report.md").read_text()
    assert "| 0 | relu | %s |" % figure1_report.fmt(runs[0]["epochs_to_target"]) in report
    assert "| 3 | %s |" % " | ".join("%.4f" % r["train_error"][2] for r in runs) in report
    assert "| **median over 2 seeds** | %s | %s | **%s** |" % (
        figure1_report.epochs_cell(*relu), figure1_report.epochs_cell(*tanh),
        figure1_report.ratio_text(results["ratio"], results["ratio_kind"])
    ) in report  # fmt: skip
    assert "CIFAR-10 from %s" % path in report
    check_png(out / "figure1.png")

    # TensorBoard: the experiment's HParams config and one run per activation and seed.
    config = tblog.read_hparams(str(out / "logs"))
    assert {"activation", "learning_rate", "seed"} <= set(config["config_hparams"])
    assert config["config_metrics"] == ["train_error", "test_error", "train_loss"]
    for run in runs:
        name = "%s_seed%d" % (run["activation"], run["seed"])
        record = tblog.read_hparams(str(out / "logs" / name))
        assert record["trial_id"] == name
        assert record["hparams"]["activation"] == run["activation"] and record["hparams"]["seed"] == run["seed"]
        assert record["hparams"]["learning_rate"] == pytest.approx(relu_vs_tanh.Config.learning_rate)
        assert record["hparams"]["train_examples"] == 256
        scalars = tblog.read_scalars(str(out / "logs" / name))
        assert [s for s, _ in scalars["train_error"]] == [1, 2, 3]
        np.testing.assert_allclose([v for _, v in scalars["train_error"]], run["train_error"], rtol=1e-6)


def test_relu_vs_tanh_on_tfrecords_and_learns(records_dir, tmp_path, check_png):
    data_dir, train_labels, validation_labels = records_dir
    out = tmp_path / "fig1"
    code = relu_vs_tanh.main(
        ["--data_dir", data_dir, "--output_dir", str(out), "--epochs", "8", "--repeats", "1", "--batch_size", "16"]
    )
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["train_examples"] == len(train_labels) == 120
    assert results["test_examples"] == len(validation_labels) == 40
    assert results["num_classes"] == 10  # no metadata.json: one more than the largest label
    assert results["data"].startswith("TFRecords from %s, resized to 32x32" % data_dir)
    # The pattern is learnable: ReLU gets below 25% training error within 8 epochs.
    relu = results["runs"][0]
    assert relu["activation"] == "relu" and len(results["runs"]) == 2  # --repeats 1
    assert relu["epochs_to_target"] is not None and relu["stopped"] == "target reached"
    assert relu["train_error"][-1] <= 0.25 < relu["train_error"][0]
    check_png(out / "figure1.png")


def test_relu_vs_tanh_user_errors_are_one_line(cifar_archive, tmp_path, capsys, monkeypatch):
    code = relu_vs_tanh.main(["--cifar", str(tmp_path / "missing.tar.gz"), "--output_dir", str(tmp_path / "a")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "missing.tar.gz (not found)" in err

    # No data given and no download possible: one line that says how to pass a local copy.
    def offline():
        raise Exception("URL fetch failure on https://example.invalid/cifar-10-python.tar.gz: None -- no network")

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", offline)
    code = relu_vs_tanh.main(["--output_dir", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("relu_vs_tanh: error: CIFAR-10 is not available") and "--cifar PATH" in err and "--data_dir" in err

    # Flag mistakes: one line, exit code 2, no usage block.
    for argv, message in (
        (["--cifar", "x", "--data_dir", "y"], "not allowed with argument"),
        (["--epochs", "0"], "argument --epochs: expected an int >= 1. Received: 0"),
        (["--epochs", "x"], "argument --epochs: expected an int >= 1. Received: 'x'"),
        (["--target_error", "1.5"], "expected a number in (0, 1)"),
        (["--momentum", "1"], "expected 0 <= momentum < 1"),
        (["--no_such_flag"], "unrecognized arguments: --no_such_flag"),
    ):
        assert relu_vs_tanh.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err

    # An existing result is never overwritten without --overwrite.
    out = tmp_path / "done"
    out.mkdir()
    (out / "report.md").write_text("earlier result\n")
    code = relu_vs_tanh.main(["--cifar", cifar_archive[0], "--output_dir", str(out), "--tiny"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--overwrite" in err
    assert (out / "report.md").read_text() == "earlier result\n"
