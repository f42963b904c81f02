"""What the Figure 1 experiment reports: epochs to the target over seeds, their ratio, report.md and figure1.png."""
from experiments import plots
from experiments.figure1_train import run_name

FIGURE = "figure1.png"


def median_epochs_to_target(runs):
    """The median over seeds of the epochs to target, with whether it is exact.

    A run that never reached the target counts as one epoch more than it ran
    (a lower bound on what it needs); the median is then exact only if no such
    run lies at or below the middle of the sorted values.

    Args:
      runs: per-seed run dicts with "epochs_to_target" (or None) and "train_error".

    Returns:
      (epochs, exact): the median (a lower bound when exact is False).
    """
    values = sorted(
        (r["epochs_to_target"], True) if r["epochs_to_target"] else (len(r["train_error"]) + 1, False) for r in runs
    )
    n = len(values)
    middle = values[(n - 1) // 2 : n // 2 + 1]
    return sum(v for v, _ in middle) / len(middle), all(exact for _, exact in values[: n // 2 + 1])


def speedup(relu, tanh):
    """The ratio of tanh's to ReLU's epochs to target.

    Args:
      relu, tanh: (epochs, exact) as from median_epochs_to_target.

    Returns:
      (ratio, kind): kind is "measured", "lower bound" (only ReLU's figure is
      exact: tanh needs more epochs than it ran), "upper bound" (only tanh's is
      exact) or "none" (neither reached the target: ratio None).
    """
    (relu_epochs, relu_exact), (tanh_epochs, tanh_exact) = relu, tanh
    if relu_exact and tanh_exact:
        return tanh_epochs / relu_epochs, "measured"
    if relu_exact:
        return tanh_epochs / relu_epochs, "lower bound"
    if tanh_exact:
        return tanh_epochs / relu_epochs, "upper bound"
    return None, "none"


def fmt(value, pattern="%d"):
    return "not reached" if value is None else pattern % value


def epochs_cell(epochs, exact):
    if exact:
        return "%g" % epochs
    return ">= %g" % epochs


def write_report(path, results):
    """Writes the markdown report of a finished experiment.

    Args:
      path: report.md path.
      results: the dict written to results.json.

    Returns:
      path.
    """
    c = results["config"]
    rates = results["learning_rates"]
    if "sweep" in results:
        rate_text = "lr per activation from the sweep below (%s)" % ", ".join("%s %g" % (a, r) for a, r in sorted(rates.items()))
    else:
        rate_text = "lr %g for both" % c["learning_rate"]
    lines = [
        "# ReLU vs tanh (the paper's Figure 1)",
        "",
        "Data: %s; %d training and %d test examples, %d classes."
        % (results["data"], results["train_examples"], results["test_examples"], results["num_classes"]),
        "Network: four-layer CNN (conv 5x5 x3 + fully-connected), init `%s`, SGD %s, momentum %g, batch %d, "
        "no regularisation. For each seed both activations start from the same weights and see the same batches."
        % (c["init"], rate_text, c["momentum"], c["batch_size"]),
        "",
    ]
    if "sweep" in results:
        lines += sweep_table(results) + [""]
    lines += _runs_table(results) + [""] + _ratio_table(results) + ["", _verdict(results["ratio"], results["ratio_kind"])]
    lines += [
        "",
        "Training error is the running mean over each epoch's batches (what cuda-convnet printed for Figure 1). "
        "A run that never reached the target counts as needing at least one epoch more than it ran (\">= N\").",
        "Total time %.1f s (budget %g min)." % (results["seconds"], c["max_minutes"]),
        "",
        "![training error per epoch](%s)" % FIGURE,
        "",
        "Per-epoch training error:",
        "",
    ]
    lines += _epochs_table(results["runs"])
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def _runs_table(results):
    """One row per run: epochs and seconds to the target, epochs run, final errors, why it stopped."""
    lines = [
        "| seed | activation | epochs to %.0f%% training error | seconds to target | epochs run | final training error "
        "| final test error | stopped by |" % (100 * results["config"]["target_error"]),
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in results["runs"]:
        final_test = run["test_error"][-1] if run["test_error"] and run["test_error"][-1] is not None else None
        lines.append(
            "| %d | %s | %s | %s | %d | %s | %s | %s |"
            % (
                run["seed"],
                run["activation"],
                fmt(run["epochs_to_target"]),
                fmt(run["seconds_to_target"], "%.1f"),
                len(run["train_error"]),
                fmt(run["train_error"][-1] if run["train_error"] else None, "%.4f"),
                fmt(final_test, "%.4f"),
                run["stopped"],
            )
        )
    return lines


def _ratio_table(results):
    """Epochs to the target per seed and their median, ReLU against tanh."""
    lines = ["| | ReLU | tanh | tanh / ReLU |", "| --- | --- | --- | --- |"]
    for seed, r in sorted(results["per_seed_ratio"].items(), key=lambda item: int(item[0])):
        lines.append(
            "| seed %s epochs to target | %s | %s | %s |"
            % (seed, epochs_cell(*r["relu"]), epochs_cell(*r["tanh"]), ratio_text(r["ratio"], r["kind"]))
        )
    m = results["median"]
    lines.append(
        "| **median over %d seeds** | %s | %s | **%s** |"
        % (len(results["per_seed_ratio"]), epochs_cell(*m["relu"]), epochs_cell(*m["tanh"]),
           ratio_text(results["ratio"], results["ratio_kind"]))
    )  # fmt: skip
    return lines


def _verdict(ratio, kind):
    """What the ratio of medians says about the paper's claim."""
    if kind == "measured":
        verdict = "ReLU reached the target in fewer epochs" if ratio > 1 else "ReLU was NOT faster here"
        return "Ratio of medians: %.2f (measured): %s. The paper reports about 6 on CIFAR-10." % (ratio, verdict)
    if kind == "lower bound":
        return ("Ratio of medians: at least %.2f (tanh's median run did not reach the target, so its figure is a lower "
                "bound): ReLU reached the target in fewer epochs. The paper reports about 6 on CIFAR-10." % ratio)
    if kind == "upper bound":
        return ("Ratio of medians: at most %.2f (ReLU's median run did not reach the target): ReLU was NOT shown faster "
                "here." % ratio)
    return "Ratio: not measured: neither activation reached the target error; raise --epochs or --max_minutes."


def _epochs_table(runs):
    """The training error of every run, one row per epoch."""
    lines = [
        "| epoch | " + " | ".join(r.get("name") or run_name(r["activation"], r["seed"]) for r in runs) + " |",
        "| --- | " + " | ".join("---" for _ in runs) + " |",
    ]
    for i in range(max(len(r["train_error"]) for r in runs)):
        cells = ["%.4f" % r["train_error"][i] if i < len(r["train_error"]) else "" for r in runs]
        lines.append("| %d | %s |" % (i + 1, " | ".join(cells)))
    return lines


def plot_figure(path, runs, seeds, dataset_name, target):
    """figure1.png: training error per epoch, ReLU solid and tanh dashed as in the paper, one legend entry each."""
    curves = []
    for run in runs:
        first = run["seed"] == seeds[0]
        curves.append(
            {
                "label": ("ReLU" if run["activation"] == "relu" else "tanh") if first else None,
                "points": list(enumerate(run["train_error"], start=1)),
                "style": "-" if run["activation"] == "relu" else "--",
                "color": "black",
            }
        )
    return plots.plot_curves(
        path,
        curves,
        ylabel="Training error rate",
        title="ReLU (solid) vs tanh (dashed), %d seed%s: %s" % (len(seeds), "s" if len(seeds) > 1 else "", dataset_name),
        target=target,
    )


def ratio_text(ratio, kind):
    if kind == "measured":
        return "%.2f" % ratio
    if kind == "lower bound":
        return ">= %.2f" % ratio
    if kind == "upper bound":
        return "<= %.2f" % ratio
    return "n/a"


def sweep_table(results):
    """The report's lines for the sweep: one row per activation and rate, the chosen one marked."""
    chosen = results["learning_rates"]
    lines = [
        "Learning-rate sweep (seed %d, each activation on its own; the chosen rate trains every seed):"
        % results["sweep"][0]["seed"],
        "",
        "| activation | learning rate | epochs to target | final training error | epochs run | chosen |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for run in results["sweep"]:
        lines.append(
            "| %s | %g | %s | %s | %d | %s |"
            % (
                run["activation"],
                run["learning_rate"],
                fmt(run["epochs_to_target"]),
                fmt(run["train_error"][-1] if run["train_error"] else None, "%.4f"),
                len(run["train_error"]),
                "yes" if chosen[run["activation"]] == run["learning_rate"] else "",
            )
        )
    return lines
