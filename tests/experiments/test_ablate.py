"""Tests of `python -m experiments.ablate`: one trainer run per variant, read back from its event files."""
import json

import pytest

from experiments import ablate, ablate_report, tblog
from trainer import task


FEATURES = ("activation", "lrn", "overlapping_pool", "dropout_rate", "pca_noise", "two_tower")


def test_ablate_variants_each_switch_exactly_one_paper_feature_in_the_trainer(tmp_path):
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
               "no_dropout": ("dropout_rate", 0.0), "no_pca_noise": ("pca_noise", False),
               "two_tower": ("two_tower", True)}  # fmt: skip
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


def test_ablate_tiny_runs_the_trainer_per_variant(records_dir, tmp_path, capsys, check_png):
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
                                      ablate_report.pct(run["final_train_top1_error"])) in report  # fmt: skip
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
    check_png(out / "train_error.png")
    check_png(out / "validation_error.png")


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
    code = ablate.main(["--data_dir", records_dir[0], "--output_dir", str(out), "--variants", "baseline,no_lrn,tanh"],
                       train=preempted_trainer)
    assert code == 143 and len(calls) == 1  # no_lrn and tanh were not started
    results = json.loads((out / "results.json").read_text())
    assert results["stopped_by_sigterm"] == "baseline"
    assert results["runs"]["no_lrn"]["error"] == "not run: SIGTERM stopped baseline"
    report = (out / "report.md").read_text()
    assert "| baseline | %s | failed: stopped by SIGTERM (trainer exit code 143) |" % ablate.VARIANTS[0].change in report
    assert "| tanh | tanh instead of ReLU | failed: not run: SIGTERM stopped baseline |" in report
