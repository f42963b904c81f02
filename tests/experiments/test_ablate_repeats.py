"""Tests of the ablation's seeds and recipe: --repeats, --recipe and the effect-against-spread table."""
import json

import pytest

from experiments import ablate, ablate_report, tblog
from trainer import recipes, task


def _results(errors, repeats=2):
    """A results dict whose variants have these validation top-1 errors per seed (seed 0 first)."""
    runs = {}
    for name, values in errors.items():
        runs[name] = {"seed": 0, "final_validation_top1_error": values[0]}
        runs[name]["repeats"] = [{"seed": k, "final_validation_top1_error": v} for k, v in enumerate(values[1:], 1)]
    config = {"seed": 0, "repeats": repeats, "variants": list(errors)}
    return {"config": config, "runs": runs}


def test_spread_table_calls_an_effect_beyond_noise_only_past_both_spreads_with_one_sign():
    results = _results({
        "baseline": [0.40, 0.42],  # spread 2 points
        "no_dropout": [0.50, 0.49],  # +8.5, both seeds worse: beyond noise
        "no_lrn": [0.41, 0.44],  # +1.5 < spread: noise
        "tanh": [0.30, 0.60],  # +4 but own spread 30 and signs differ: noise
    })  # fmt: skip
    table = [line for line in ablate_report.spread_table(results) if line.startswith("|")]
    assert table[0].count("|") == table[1].count("|") == 2 + 2 + 5  # variant, 2 seeds, 5 figures
    rows = {line.split(" | ")[0][2:]: line for line in table[2:]}
    assert rows["baseline"] == "| baseline | 40.0 | 42.0 | 41.0 | 2.0 |  |  |  |"
    assert rows["no_dropout"] == "| no_dropout | 50.0 | 49.0 | 49.5 | 1.0 | +8.5 | +10.0, +7.0 | yes |"
    assert rows["no_lrn"] == "| no_lrn | 41.0 | 44.0 | 42.5 | 3.0 | +1.5 | +1.0, +2.0 | no |"
    assert rows["tanh"] == "| tanh | 30.0 | 60.0 | 45.0 | 30.0 | +4.0 | -10.0, +18.0 | no |"


def test_a_failed_seed_is_left_out_of_mean_and_spread():
    results = _results({"baseline": [0.40, 0.42], "no_lrn": [0.45, 0.47]})
    results["runs"]["no_lrn"]["repeats"][0]["error"] = "trainer exit code 1"
    assert ablate_report.seed_errors(results["runs"]["no_lrn"]) == {0: 0.45}
    row = [line for line in ablate_report.spread_table(results) if line.startswith("| no_lrn")][0]
    assert row == "| no_lrn | 45.0 | n/a | 45.0 | 0.0 | +4.0 | +5.0 | yes |"


def test_recipe_gives_its_values_unless_typed_and_keeps_its_schedule(tmp_path):
    preset = recipes.TINY_IMAGENET
    config = ablate.parse_args(["--data_dir", str(tmp_path), "--recipe", "tiny_imagenet", "--epochs", "4", "--repeats", "2"])
    assert (config.batch_size, config.image_size, config.learning_rate, config.init) == (
        preset["batch_size"], preset["image_size"], preset["learning_rate"], preset["init"]
    )  # fmt: skip
    assert config.epochs == 4  # typed: wins over the recipe's
    baseline = ablate.VARIANTS[0]
    for seed in (0, 1):
        argv = ablate.trainer_argv(config, baseline, seed)
        trainer_config, _ = task.parse_config(argv, {})
        assert trainer_config.recipe == "tiny_imagenet" and trainer_config.seed == seed
        # The recipe's step schedule applies alike to every variant; without a recipe the rate is fixed.
        assert (trainer_config.lr_schedule, trainer_config.lr_step_epochs) == ("step", preset["lr_step_epochs"])
        assert trainer_config.model_dir.endswith("baseline" if seed == 0 else "baseline_seed1")
    plain = ablate.parse_args(["--data_dir", str(tmp_path), "--epochs", "4"])
    assert task.parse_config(ablate.trainer_argv(plain, baseline), {})[0].lr_step_epochs == 5


def test_ablate_repeats_train_every_variant_per_seed_end_to_end(records_dir, tmp_path, capsys):
    data_dir = records_dir[0]
    out = tmp_path / "ablate"
    code = ablate.main(
        ["--data_dir", data_dir, "--output_dir", str(out), "--tiny", "--variants", "baseline,no_lrn", "--repeats", "2",
         "--recipe", "tiny_imagenet", "--discard_checkpoints", "--", "--num_classes", "10"]
    )  # fmt: skip
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert code == 0, summary
    results = json.loads((out / "results.json").read_text())
    report = (out / "report.md").read_text()
    assert "(the schedule of recipe `tiny_imagenet`)" in report
    for name in ("baseline", "no_lrn"):
        run = results["runs"][name]
        assert run["seed"] == 0 and [r["seed"] for r in run["repeats"]] == [1]
        for seed, folder in ((0, name), (1, name + "_seed1")):
            config = json.loads((out / "runs" / folder / "config.json").read_text())
            assert (config["seed"], config["recipe"], config["epochs"]) == (seed, "tiny_imagenet", 2)  # --tiny wins
            validation = tblog.read_scalars(str(out / "runs" / folder / "logs" / "validation"))
            entry = run if seed == 0 else run["repeats"][0]
            assert entry["final_validation_top1_error"] == pytest.approx(1.0 - validation["top1_accuracy"][-1][1])
        errors = ablate_report.seed_errors(run)
        assert sorted(errors) == [0, 1]
        row = "| %s | %s | %s |" % (name, ablate_report.pct(errors[0]), ablate_report.pct(errors[1]))
        assert row in report
    # Seed 1 draws other weights and batches than seed 0.
    assert results["runs"]["baseline"]["train_top1_error"] != results["runs"]["baseline"]["repeats"][0]["train_top1_error"]
