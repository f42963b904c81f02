"""What `python -m experiments.ablate` writes from its runs: report.md and the per-epoch error plots."""
import os

from experiments import plots
from experiments.ablate_variants import VARIANTS

RUNS = "runs"
TRAIN_FIGURE = "train_error.png"
VALIDATION_FIGURE = "validation_error.png"


def pct(value):
    return "n/a" if value is None else "%.1f" % (100.0 * value)


def write_report(path, results):
    """Writes the markdown report.

    Args:
      path: report.md path.
      results: the dict written to results.json.

    Returns:
      path.
    """
    c = results["config"]
    runs = results["runs"]
    base = runs.get("baseline", {})
    lines = [
        "# AlexNet ablations",
        "",
        "Data: `%s`. Every variant: %d epochs%s, batch %d, %dx%d crops, lr %g (%s), init `%s`, seed %d%s."
        % (
            c["data_dir"],
            c["epochs"],
            " of %d steps" % c["steps_per_epoch"] if c["steps_per_epoch"] else "",
            c["batch_size"],
            c["image_size"],
            c["image_size"],
            c["learning_rate"],
            "the schedule of recipe `%s`" % c["recipe"] if c.get("recipe") else "fixed",
            c["init"],
            c["seed"],
            "; trainer flags `%s`" % " ".join(c["trainer_flags"]) if c["trainer_flags"] else "",
        ),
        "Errors in %%; training errors are running means over each epoch (with dropout and augmentation on), "
        "validation errors are centre-crop. Epochs to target: first epoch with training top-1 error <= %.0f%%."
        % (100 * c["target_error"]),
        "",
        "| variant | change | train top-1 | train top-5 | val top-1 | val top-5 | val top-1 vs baseline | epochs to target "
        "| seconds | the paper's claim |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [_row(name, runs[name], base) for name in c["variants"]]
    if c.get("repeats", 1) > 1:
        lines += [""] + spread_table(results)
    else:
        lines += [
            "",
            "One seed per variant: differences of a few points on a small validation set are within run-to-run noise; "
            "repeat with --repeats 2 or more to see each effect beside the seed-to-seed spread.",
        ]
    lines += [
        "",
        "![training top-1 error](%s)" % TRAIN_FIGURE,
        "![validation top-1 error](%s)" % VALIDATION_FIGURE,
        "",
        "TensorBoard (HParams dashboard compares the variants): `tensorboard --logdir %s`"
        % os.path.join(c["output_dir"], RUNS),
    ]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def _row(name, run, base):
    """The report's row of one variant: its errors, the change against the baseline, the paper's claim."""
    variant = next(v for v in VARIANTS if v.name == name)
    if run.get("error"):
        return "| %s | %s | failed: %s | | | | | | %.0f | %s |" % (
            name, variant.change, run["error"], run.get("seconds", 0.0), variant.claim)
    delta = None
    final, reference = run["final_validation_top1_error"], base.get("final_validation_top1_error")
    if name != "baseline" and reference is not None and final is not None:
        delta = final - reference
    return "| %s | %s | %s | %s | %s | %s | %s | %s | %.0f | %s |" % (
        name,
        variant.change,
        pct(run["final_train_top1_error"]),
        pct(run["final_train_top5_error"]),
        pct(run["final_validation_top1_error"]),
        pct(run["final_validation_top5_error"]),
        "" if name == "baseline" else ("n/a" if delta is None else "%+.1f" % (100.0 * delta)),
        "not reached" if run["epochs_to_target"] is None else str(run["epochs_to_target"]),
        run["seconds"],
        variant.claim,
    )


def seed_errors(run, key="final_validation_top1_error"):
    """{seed: value} of one variant's runs that finished (the first seed's run and its repeats)."""
    runs = [(run.get("seed"), run)] + [(r["seed"], r) for r in run.get("repeats", [])]
    return {seed: r[key] for seed, r in runs if not r.get("error") and r.get(key) is not None}


def spread(values):
    """Max minus min of the values (0 for one value, None for none)."""
    return max(values) - min(values) if values else None


def spread_table(results):
    """Each variant's validation top-1 error per seed, its mean effect and the baseline's seed-to-seed spread.

    An effect counts as beyond noise when its size exceeds the larger of the baseline's and the
    variant's own spread over seeds (max minus min), and every seed's paired difference (the same
    seed gives both runs the same batches) has the same sign.
    """
    c, runs = results["config"], results["runs"]
    first = c["seed"]
    seeds = list(range(first, first + c["repeats"]))
    base = seed_errors(runs["baseline"])
    base_mean = sum(base.values()) / len(base) if base else None
    lines = [
        "Validation top-1 error (%%) per seed (%s), the mean effect against the baseline's mean, and the spread "
        "(max - min over seeds). Beyond noise: the effect is larger than both the baseline's and the variant's own "
        "spread, and the paired per-seed differences all have its sign." % ", ".join(str(s) for s in seeds),
        "",
        "| variant | %s | mean | spread | effect vs baseline | paired differences | beyond noise? |"
        % " | ".join("seed %d" % s for s in seeds),
        "| --- | " + "--- | " * len(seeds) + "--- | --- | --- | --- | --- |",
    ]
    for name in c["variants"]:
        errors = seed_errors(runs[name])
        mean = sum(errors.values()) / len(errors) if errors else None
        cells = [pct(errors.get(s)) for s in seeds]
        effect = verdict = paired = ""
        if name != "baseline" and mean is not None and base_mean is not None:
            diffs = [errors[s] - base[s] for s in seeds if s in errors and s in base]
            d = mean - base_mean
            noise = max(spread(list(base.values())), spread(list(errors.values())))
            same_sign = bool(diffs) and (all(x > 0 for x in diffs) or all(x < 0 for x in diffs))
            effect, paired = "%+.1f" % (100 * d), ", ".join("%+.1f" % (100 * x) for x in diffs)
            verdict = "yes" if abs(d) > noise and same_sign else "no"
        lines.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            name, " | ".join(cells), pct(mean), pct(spread(list(errors.values()))), effect, paired, verdict))  # fmt: skip
    return lines


_STYLES = {"baseline": ("-", "black"), "tanh": ("--", "tab:red")}


def plot(path, results, key, ylabel, title):
    """A PNG of one per-epoch error of every variant (baseline solid black, tanh dashed red)."""
    curves = []
    for name in results["config"]["variants"]:
        run = results["runs"][name]
        if not run.get(key):
            continue
        style, color = _STYLES.get(name, ("-", None))
        curves.append({"label": name, "points": list(enumerate(run[key], start=1)), "style": style, "color": color})
    target = results["config"]["target_error"] if key == "train_top1_error" else None
    return plots.plot_curves(path, curves, ylabel=ylabel, title=title, target=target)
