"""Tests of the per-activation learning-rate sweep: the choice rule, and a sweep run end to end."""
import json

import pytest

from experiments import figure1_sweep, relu_vs_tanh, tblog


def _run(activation, rate, reached, errors):
    return {"activation": activation, "learning_rate": rate, "epochs_to_target": reached, "train_error": errors}


def test_best_rates_prefers_fewest_epochs_then_lower_error_then_lower_rate():
    runs = [
        _run("relu", 0.01, 5, [0.5, 0.2]),
        _run("relu", 0.05, 3, [0.5, 0.1]),  # fewest epochs to target
        _run("relu", 0.1, None, [0.9, 0.05]),  # never reached: ranks last whatever its error
        _run("tanh", 0.01, None, [0.7, 0.4]),
        _run("tanh", 0.05, None, [0.7, 0.3]),  # neither reached: the lower final error wins
        _run("tanh", 0.1, None, [0.9, 0.8]),
    ]
    assert figure1_sweep.best_rates(runs) == {"relu": 0.05, "tanh": 0.05}
    tie = [_run("relu", 0.1, 4, [0.3, 0.2]), _run("relu", 0.02, 4, [0.3, 0.2])]
    assert figure1_sweep.best_rates(tie) == {"relu": 0.02}  # equally fast: the safer, lower rate


@pytest.mark.parametrize("text", ["0.05", "0.01,0.01", "0.01,-1", "a,b"])
def test_sweep_flag_refuses_bad_lists(text, tmp_path, capsys):
    code = relu_vs_tanh.main(["--tiny", "--sweep_learning_rates", text, "--output_dir", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--sweep_learning_rates" in err[0] and "Received: %r" % text in err[0]


def test_sweep_end_to_end_on_cifar_archive(cifar_archive, tmp_path, capsys):
    path, _ = cifar_archive
    out = tmp_path / "sweep"
    argv = ["--cifar", path, "--output_dir", str(out), "--tiny", "--repeats", "2", "--no_stop_at_target",
            "--target_error", "0.6", "--sweep_learning_rates", "0.002,0.05"]  # fmt: skip
    assert relu_vs_tanh.main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    sweep, runs, chosen = results["sweep"], results["runs"], results["learning_rates"]
    # Seed 0 of each activation at each rate, rates in the order given.
    assert [(r["activation"], r["seed"], r["learning_rate"]) for r in sweep] == [
        ("relu", 0, 0.002), ("tanh", 0, 0.002), ("relu", 0, 0.05), ("tanh", 0, 0.05)
    ]  # fmt: skip
    assert chosen == figure1_sweep.best_rates(sweep)
    # Seed 0's runs are the sweep's runs at the chosen rates (not trained twice); seed 1 trains at them.
    assert [(r["activation"], r["seed"]) for r in runs] == [("relu", 0), ("tanh", 0), ("relu", 1), ("tanh", 1)]
    for run in runs:
        assert run["learning_rate"] == chosen[run["activation"]]
    assert runs[:2] == [r for r in sweep if r["learning_rate"] == chosen[r["activation"]]]
    # Different rates from the same weights and batches give different curves.
    assert sweep[0]["train_loss"] != sweep[2]["train_loss"]

    report = (out / "report.md").read_text()
    assert "lr per activation from the sweep below (relu %g, tanh %g)" % (chosen["relu"], chosen["tanh"]) in report
    for run in sweep:
        mark = "yes" if chosen[run["activation"]] == run["learning_rate"] else ""
        row = "| %s | %g | " % (run["activation"], run["learning_rate"])
        assert row in report and report.split(row)[1].split("\n")[0].endswith("| %s |" % mark)
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert "relu " in summary and "(lr %g)" % chosen["relu"] in summary and "(lr %g)" % chosen["tanh"] in summary
    # Every run is its own TensorBoard run named with its rate, recording that rate.
    for run in sweep + runs[2:]:
        name = "%s_seed%d_lr%g" % (run["activation"], run["seed"], run["learning_rate"])
        assert run["name"] == name
        record = tblog.read_hparams(str(out / "logs" / name))
        assert record["hparams"]["learning_rate"] == pytest.approx(run["learning_rate"])
