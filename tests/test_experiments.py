"""Tests of the paper-claim experiments (experiments.relu_vs_tanh, experiments.ablate).

Every command runs end to end in its tiny mode on data the tests generate: a
CIFAR-format archive of tiny pickled batches, and TFRecords written with the
project's own record writer. The tests read back the report, the PNG and the
TensorBoard HParams records.
"""
import io
import json
import os
import pickle
import tarfile

import numpy as np
import pytest
from PIL import Image

from experiments import cifar, relu_vs_tanh, tblog
from experiments.figure1_net import build_figure1_net
from preprocessing import schema

NUM_CLASSES = 10


def _pattern_images(rng, labels, size):
    """A learnable pattern: a bright block whose grid cell is the class."""
    images = rng.integers(0, 60, (len(labels), size, size, 3)).astype(np.uint8)
    cell = size // 8
    for i, k in enumerate(labels):
        row, col = divmod(int(k), 5)
        top, left = cell + 4 * cell * row, cell // 2 + (3 * cell // 2) * col
        images[i, top : top + 2 * cell, left : left + cell, :] = 250
    return images


def _cifar_batch(rng, n):
    labels = rng.integers(0, NUM_CLASSES, n)
    images = _pattern_images(rng, labels, 32)
    # The archive's layout: rows are (channel, row, column), 3 x 1024 values.
    return {b"data": images.transpose(0, 3, 1, 2).reshape(n, 3072), b"labels": [int(x) for x in labels], b"batch_label": b"x"}


def write_cifar_archive(path, per_batch, test, seed=0):
    """Writes a cifar-10-python.tar.gz with tiny pickled batches; returns the batches."""
    rng = np.random.default_rng(seed)
    batches = {name: _cifar_batch(rng, per_batch) for name in cifar.TRAIN_BATCHES}
    batches[cifar.TEST_BATCH] = _cifar_batch(rng, test)
    with tarfile.open(path, "w:gz") as tar:
        for name, batch in batches.items():
            data = pickle.dumps(batch, protocol=2)
            info = tarfile.TarInfo("%s/%s" % (cifar.BATCH_DIR, name))
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return batches


def write_records(data_dir, split, count, size, seed, shards=2):
    """Writes `count` JPEG records of the pattern with the project's record writer; returns labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % NUM_CLASSES
    rng.shuffle(labels)
    images = _pattern_images(rng, labels, size)
    os.makedirs(data_dir, exist_ok=True)
    writers = [tf_record_writer(os.path.join(data_dir, schema.shard_name(split, i, shards))) for i in range(shards)]
    for i, (image, label) in enumerate(zip(images, labels)):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=95)
        example = schema.make_example(buffer.getvalue(), int(label), size, size, synset="n%08d" % label)
        writers[i % shards].write(schema.serialize_example(example))
    for writer in writers:
        writer.close()
    return labels


def tf_record_writer(path):
    import tensorflow as tf

    return tf.io.TFRecordWriter(path)


@pytest.fixture(scope="module")
def cifar_archive(tmp_path_factory):
    path = tmp_path_factory.mktemp("cifar") / "cifar-10-python.tar.gz"
    batches = write_cifar_archive(str(path), per_batch=60, test=50)
    return str(path), batches


@pytest.fixture(scope="module")
def records_dir(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("records"))
    # 80 px: more than AlexNet's smallest crop (67), shrunk to 32 for Figure 1.
    train = write_records(data_dir, schema.TRAIN, 120, 80, seed=1)
    validation = write_records(data_dir, schema.VALIDATION, 40, 80, seed=2)
    return data_dir, train, validation


# ---------------------------------------------------------------- CIFAR reader


def test_load_cifar10_matches_numpy_reference(cifar_archive, tmp_path):
    path, batches = cifar_archive
    (x_train, y_train), (x_test, y_test) = cifar.load_cifar10(path)
    assert x_train.shape == (300, 32, 32, 3) and x_train.dtype == np.uint8
    assert x_test.shape == (50, 32, 32, 3)
    # Pixel (row 3, column 7) of image 0 of batch 2: red at 3 * 32 + 7, green 1024 later, blue 2048 later.
    row = batches["data_batch_2"][b"data"][0]
    np.testing.assert_array_equal(x_train[60, 3, 7], [row[103], row[1024 + 103], row[2048 + 103]])
    expected = np.concatenate([batches[n][b"data"] for n in cifar.TRAIN_BATCHES]).reshape(-1, 3, 32, 32)
    np.testing.assert_array_equal(x_train, expected.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(y_train, np.concatenate([batches[n][b"labels"] for n in cifar.TRAIN_BATCHES]))
    np.testing.assert_array_equal(y_test, batches["test_batch"][b"labels"])

    # The extracted folder and the batches folder itself give the same arrays.
    with tarfile.open(path) as tar:
        tar.extractall(tmp_path, filter="data")
    for folder in (tmp_path, tmp_path / cifar.BATCH_DIR):
        (x2, y2), (xt2, yt2) = cifar.load_cifar10(str(folder))
        np.testing.assert_array_equal(x2, x_train)
        np.testing.assert_array_equal(yt2, y_test)


def test_load_cifar10_names_what_is_missing(tmp_path):
    path = tmp_path / "partial.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        data = pickle.dumps(_cifar_batch(np.random.default_rng(0), 4))
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ValueError, match="without data_batch_2, data_batch_3, data_batch_4, data_batch_5, test_batch"):
        cifar.load_cifar10(str(path))
    with pytest.raises(ValueError, match="not found"):
        cifar.load_cifar10(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match=r"shape \(N, 3072\)"):
        cifar.batch_to_images({b"data": np.zeros((2, 3000), np.uint8), b"labels": [0, 1]})


# ---------------------------------------------------------------- Figure 1 network and pure functions


def test_figure1_net_relu_and_tanh_start_from_the_same_weights():
    relu = build_figure1_net("relu", 10, 32, "glorot", seed=3)
    tanh = build_figure1_net("tanh", 10, 32, "glorot", seed=3)
    # conv 5x5x3x32, 5x5x32x32, 5x5x32x64 and fc 4*4*64 x 10, with biases.
    assert relu.count_params() == (2400 + 32) + (25600 + 32) + (51200 + 64) + (10240 + 10) == 89578
    for a, b in zip(relu.get_weights(), tanh.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert [layer.activation.__name__ for layer in tanh.layers if layer.name.startswith("conv")] == ["tanh"] * 3


def _run(reached, ran):
    return {"epochs_to_target": reached, "train_error": [0.5] * ran}


def test_epochs_to_target_median_and_ratio():
    assert relu_vs_tanh.epochs_to_target([0.9, 0.5, 0.25, 0.1], 0.25) == 3
    assert relu_vs_tanh.epochs_to_target([0.9, 0.5], 0.25) is None
    median = relu_vs_tanh.median_epochs_to_target
    assert median([_run(6, 6), _run(2, 2), _run(9, 9)]) == (6, True)
    assert median([_run(6, 6), _run(2, 2)]) == (4, True)
    # A seed that never got there in 10 epochs needs at least 11: above the middle, the median stays exact...
    assert median([_run(6, 6), _run(2, 2), _run(None, 10)]) == (6, True)
    # ...at the middle, the median is only a lower bound.
    assert median([_run(6, 6), _run(None, 10), _run(None, 12)]) == (11, False)
    # A run cut short by the budget (3 epochs) below an exact one: the true order is unknown.
    assert median([_run(None, 3), _run(6, 6), _run(9, 9)]) == (6, False)
    assert relu_vs_tanh.speedup((2, True), (12, True)) == (6.0, "measured")
    assert relu_vs_tanh.speedup((2, True), (11, False)) == (5.5, "lower bound")
    assert relu_vs_tanh.speedup((11, False), (4, True)) == (4 / 11, "upper bound")
    assert relu_vs_tanh.speedup((11, False), (11, False)) == (None, "none")


# ---------------------------------------------------------------- relu_vs_tanh end to end


def _check_png(path):
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (640, 480)
        pixels = np.asarray(image.convert("L"))
    # Not a blank canvas: axes, curves and text draw dark pixels.
    assert (pixels < 100).sum() > 1000


def test_relu_vs_tanh_tiny_on_cifar_archive(cifar_archive, tmp_path, capsys):
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
        assert run["epochs_to_target"] == relu_vs_tanh.epochs_to_target(run["train_error"], 0.5)
        assert all(0.0 <= e <= 1.0 for e in run["train_error"] + run["test_error"])
    # Seed 1 starts from other weights than seed 0.
    assert runs[0]["train_loss"] != runs[2]["train_loss"]
    relu = relu_vs_tanh.median_epochs_to_target([runs[0], runs[2]])
    tanh = relu_vs_tanh.median_epochs_to_target([runs[1], runs[3]])
    assert [tuple(results["median"]["relu"]), tuple(results["median"]["tanh"])] == [relu, tanh]
    assert (results["ratio"], results["ratio_kind"]) == relu_vs_tanh.speedup(relu, tanh)
    assert results["per_seed_ratio"]["1"]["ratio"] == relu_vs_tanh.speedup(
        relu_vs_tanh.median_epochs_to_target([runs[2]]), relu_vs_tanh.median_epochs_to_target([runs[3]])
    )[0]

    report = (out / "report.md").read_text()
    assert "| 0 | relu | %s |" % relu_vs_tanh._fmt(runs[0]["epochs_to_target"]) in report
    assert "| 3 | %s |" % " | ".join("%.4f" % r["train_error"][2] for r in runs) in report
    assert "| **median over 2 seeds** | %s | %s | **%s** |" % (
        relu_vs_tanh._epochs_cell(*relu), relu_vs_tanh._epochs_cell(*tanh), relu_vs_tanh._ratio_text(results["ratio"], results["ratio_kind"])
    ) in report  # fmt: skip
    assert "CIFAR-10 from %s" % path in report
    _check_png(out / "figure1.png")

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


def test_relu_vs_tanh_on_tfrecords_and_learns(records_dir, tmp_path):
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
    _check_png(out / "figure1.png")


def test_relu_vs_tanh_user_errors_are_one_line(cifar_archive, tmp_path, capsys, monkeypatch):
    code = relu_vs_tanh.main(["--cifar", str(tmp_path / "missing.tar.gz"), "--output_dir", str(tmp_path / "a")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "missing.tar.gz (not found)" in err

    # No data given and no download possible: one line that says how to pass a local copy.
    import keras

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


# ---------------------------------------------------------------- ablate

from experiments import ablate  # noqa: E402

FEATURES = ("activation", "lrn", "overlapping_pool", "dropout_rate", "pca_noise", "two_tower")


def test_ablate_variants_each_switch_exactly_one_paper_feature_in_the_trainer(tmp_path):
    from trainer import task

    config = ablate.parse_args(["--data_dir", str(tmp_path), "--output_dir", str(tmp_path / "out")])
    assert config.variants == ablate.VARIANT_NAMES
    parsed = {}
    for variant in ablate.VARIANTS:
        trainer_config, _ = task.parse_config(ablate.trainer_argv(config, variant), {})
        parsed[variant.name] = {f: getattr(trainer_config, f) for f in FEATURES}
        assert trainer_config.model_dir == str(tmp_path / "out" / "runs" / variant.name)
        assert (trainer_config.epochs, trainer_config.batch_size, trainer_config.image_size) == (10, 64, 127)
        assert (trainer_config.init, trainer_config.seed, trainer_config.export) == ("he", 0, False)
    assert parsed["baseline"] == {
        "activation": "relu", "lrn": True, "overlapping_pool": True, "dropout_rate": 0.5, "pca_noise": True, "two_tower": False
    }  # fmt: skip
    flipped = {"tanh": ("activation", "tanh"), "no_lrn": ("lrn", False), "no_overlap": ("overlapping_pool", False),
               "no_dropout": ("dropout_rate", 0.0), "no_pca_noise": ("pca_noise", False), "two_tower": ("two_tower", True)}  # fmt: skip
    for name, (feature, value) in flipped.items():
        assert parsed[name] == {**parsed["baseline"], feature: value}, name


def test_ablate_summarize_reads_final_errors_and_epochs_to_target():
    curves = {
        "train": {"top1_accuracy": [0.2, 0.6, 0.7], "top5_accuracy": [0.5, 0.9, 1.0], "loss": [2, 1, 0.5]},
        "validation": {"top1_accuracy": [0.1, 0.4, 0.55], "top5_accuracy": [0.4, 0.8, 0.9], "loss": [2, 1.5, 1]},
        "steps": [4, 8, 12],
    }
    s = ablate.summarize(curves, target=0.45)
    assert s["epochs"] == 3 and s["epochs_to_target"] == 2
    assert s["final_train_top1_error"] == pytest.approx(0.3)
    assert s["final_validation_top5_error"] == pytest.approx(0.1)
    assert ablate.summarize(curves, target=0.2)["epochs_to_target"] is None


def test_ablate_tiny_runs_the_trainer_per_variant(records_dir, tmp_path, capsys):
    data_dir = records_dir[0]
    out = tmp_path / "ablate"
    variants = ("baseline", "tanh")  # every variant's flags are checked against the trainer's parser above
    code = ablate.main(
        ["--data_dir", data_dir, "--output_dir", str(out), "--tiny", "--variants", ",".join(variants), "--discard_checkpoints",
         "--", "--num_classes", "10"]
    )  # fmt: skip
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert code == 0, summary
    assert summary.startswith("ablate: 2 variants in ") and "all trained" in summary

    results = json.loads((out / "results.json").read_text())
    report = (out / "report.md").read_text()
    for name in variants:
        run = results["runs"][name]
        assert run["exit_code"] == 0 and "error" not in run
        assert run["epochs"] == 2  # --tiny: 2 epochs of 2 steps
        # The figures are those of the trainer's own event files, read back here independently.
        logs = out / "runs" / name / "logs"
        validation = tblog.read_scalars(str(logs / "validation"))
        train = tblog.read_scalars(str(logs / "train"))
        assert [s for s, _ in train["top1_accuracy"]] == [2, 4]  # epoch ends at global steps 2 and 4
        assert run["final_validation_top1_error"] == pytest.approx(1.0 - validation["top1_accuracy"][-1][1])
        assert run["final_train_top5_error"] == pytest.approx(1.0 - train["top5_accuracy"][-1][1])
        assert "| %s | %s | %s |" % (name, next(v for v in ablate.VARIANTS if v.name == name).change,
                                      ablate._pct(run["final_train_top1_error"])) in report  # fmt: skip
        # One HParams session per variant, named after it, with the switched feature.
        record = tblog.read_hparams(str(logs))
        assert record["trial_id"] == name
        assert not (out / "runs" / name / "checkpoints").exists()  # --discard_checkpoints
    assert tblog.read_hparams(str(out / "runs" / "tanh" / "logs"))["hparams"]["activation"] == "tanh"
    assert tblog.read_hparams(str(out / "runs" / "baseline" / "logs"))["hparams"]["activation"] == "relu"
    top = tblog.read_hparams(str(out / "runs"))
    assert {"activation", "lrn", "overlapping_pool", "dropout_rate", "pca_noise", "two_tower"} <= set(top["config_hparams"])
    assert "top1_accuracy" in top["config_metrics"]
    # TensorBoard shows one of the configs it finds (the one above the runs or a
    # trainer run's own), chosen by no rule: they must say the same.
    baseline = tblog.read_hparams(str(out / "runs" / "baseline" / "logs"))
    for key in ("config_hparams", "config_domains", "config_metric_groups"):
        assert top[key] == baseline[key], key
    assert top["config_domains"]["activation"] == ["relu", "tanh"] and top["config_domains"]["lrn"] == [False, True]
    assert ("train", "top1_accuracy") in top["config_metric_groups"] and ("validation", "loss") in top["config_metric_groups"]
    assert results["runs"]["tanh"]["trainer_argv"][-4:] == ["--activation", "tanh", "--num_classes", "10"]
    _check_png(out / "train_error.png")
    _check_png(out / "validation_error.png")


def test_ablate_failed_runs_and_user_errors(records_dir, tmp_path, capsys):
    data_dir = records_dir[0]
    # A trainer run that fails is reported, not hidden: exit 1 and a "failed" row per variant.
    out = tmp_path / "failing"
    code = ablate.main(["--data_dir", data_dir, "--output_dir", str(out), "--variants", "baseline,no_lrn", "--", "--epochs", "0"])
    assert code == 1
    assert "failed: baseline, no_lrn" in capsys.readouterr().out
    report = (out / "report.md").read_text()
    assert "| baseline | %s | failed: trainer exit code 2 |" % ablate.VARIANTS[0].change in report
    assert "| no_lrn | no local response normalisation | failed: trainer exit code 2 |" in report

    # Existing results are not overwritten; bad flags are one line with exit code 2.
    code = ablate.main(["--data_dir", data_dir, "--output_dir", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--overwrite" in err
    code = ablate.main(["--data_dir", str(tmp_path / "none"), "--output_dir", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "not a folder" in err
    for argv, message in (
        (["--data_dir", data_dir, "--variants", "baseline,no_relu"], "expected a comma-separated list of baseline, tanh"),
        (["--data_dir", data_dir, "--variants", "tanh"], "must include baseline"),
        (["--data_dir", data_dir, "--epochs", "-1"], "argument --epochs: expected an int >= 1"),
        (["--epochs", "3"], "the following arguments are required: --data_dir"),
    ):
        assert ablate.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err


def test_ablate_stops_after_a_sigterm_stopped_run(records_dir, tmp_path, capsys):
    calls = []

    def preempted_trainer(argv):
        # What trainer.task.main returns after SIGTERM: it saved a checkpoint and exited 143.
        calls.append(argv)
        return 143

    out = tmp_path / "stopped"
    code = ablate.main(["--data_dir", records_dir[0], "--output_dir", str(out), "--variants", "baseline,no_lrn,tanh"], train=preempted_trainer)
    assert code == 143 and len(calls) == 1  # no_lrn and tanh were not started
    results = json.loads((out / "results.json").read_text())
    assert results["stopped_by_sigterm"] == "baseline"
    assert results["runs"]["no_lrn"]["error"] == "not run: SIGTERM stopped baseline"
    report = (out / "report.md").read_text()
    assert "| baseline | %s | failed: stopped by SIGTERM (trainer exit code 143) |" % ablate.VARIANTS[0].change in report
    assert "| tanh | tanh instead of ReLU | failed: not run: SIGTERM stopped baseline |" in report
