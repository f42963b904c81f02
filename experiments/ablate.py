"""Ablations: AlexNet with one of the paper's features switched at a time.

    python -m experiments.ablate --data_dir demo_data --output_dir runs/ablate
    python -m experiments.ablate --data_dir D --variants baseline,no_lrn,no_dropout --epochs 30 -- --val_steps 50

Each variant is one run of the real trainer (`trainer.task.main`) on the same
data, budget and seed as the baseline, differing in one trainer flag. Flags
after `--` go to every trainer run unchanged. Writes into --output_dir:

    report.md          table: final train/validation top-1 and top-5 error, epochs to
                       the target training error, change against the baseline, the paper's claim
    results.json       the same figures and the per-epoch curves
    train_error.png    training top-1 error per epoch, one curve per variant
    validation_error.png  validation top-1 error per epoch
    runs/<variant>/    each trainer run (checkpoints, config.json, logs/)
    runs/              the TensorBoard directory: one run per variant, with
                       HParams, so `tensorboard --logdir <output_dir>/runs` compares them

Figures come from the TensorBoard event files the trainer wrote (per-epoch
`top1_accuracy`, `top5_accuracy` and `loss` under logs/train and logs/validation).
"""
import argparse
import dataclasses
import json
import os
import shutil
import sys
import time

from cli import EXIT_FAILED, EXIT_OK, EXIT_PREEMPTED, EXIT_USAGE, Parser, UsageError, fraction, positive_int
from experiments import ablate_report, tblog
from experiments.ablate_report import RUNS, TRAIN_FIGURE, VALIDATION_FIGURE
from experiments.ablate_variants import VARIANT_NAMES, VARIANTS
from experiments.curves import epochs_to_target
from model.alexnet import INITS
from trainer import recipes, summaries, task

DEFAULT_OUTPUT_DIR = os.path.join("runs", "ablate")
REPORT = "report.md"
RESULTS = "results.json"
# trainer.task exits with cli.EXIT_PREEMPTED after SIGTERM (it saved a checkpoint): someone
# asked the experiment to stop, so the remaining variants are not started.


# What --recipe takes from a trainer recipe when not given here (the schedule comes with --recipe itself).
RECIPE_FIELDS = ("epochs", "batch_size", "image_size", "learning_rate", "init")

# --tiny: a smoke run of seconds per variant; only flags the user did not set change.
TINY = {"epochs": 2, "steps_per_epoch": 2, "batch_size": 8, "image_size": 67}


@dataclasses.dataclass(frozen=True)
class Config:
    data_dir: str = ""
    output_dir: str = DEFAULT_OUTPUT_DIR
    variants: tuple = VARIANT_NAMES
    epochs: int = 10  # every variant trains as long as the baseline
    steps_per_epoch: int = 0  # 0: the trainer's default (one pass over the training set)
    batch_size: int = 64  # the trainer's demo batch
    image_size: int = 127  # the demo set's crop (stored 144 px, as 227 of 256)
    learning_rate: float = 0.01  # the paper's
    # The paper's N(0, 0.01) init can sit at chance for several epochs on a small from-scratch set;
    # He-normal starts learning in the first epochs (docs/results/ablate.md).
    init: str = "he"
    seed: int = 0  # one seed for every variant: same initial weights where shapes allow, same batches
    repeats: int = 1  # seeds seed..seed+repeats-1 per variant; with 2 or more the report shows the spread
    recipe: str = ""  # a trainer.recipes preset: its values replace the defaults above that were not given
    target_error: float = 0.5  # training top-1 error whose first epoch is reported
    trainer_flags: tuple = ()  # flags after `--`, passed to every trainer run
    discard_checkpoints: bool = False  # delete each run's checkpoints once its curves are read
    tiny: bool = False
    overwrite: bool = False


def _variant_list(text):
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in VARIANT_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            "expected a comma-separated list of %s. Received: %s" % (", ".join(VARIANT_NAMES), text)
        )
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError("expected each variant once. Received: %s" % text)
    return names


def parse_args(argv):
    """Parses flags strictly into a Config; arguments after `--` are trainer flags."""
    argv = list(sys.argv[1:] if argv is None else argv)
    trainer_flags = ()
    if "--" in argv:
        cut = argv.index("--")
        argv, trainer_flags = argv[:cut], tuple(argv[cut + 1 :])
    d = Config()
    p = Parser(
        prog="python -m experiments.ablate",
        description="AlexNet ablations: one paper feature switched off at a time, each trained by trainer.task.",
        epilog="Arguments after -- are passed to every trainer run (e.g. -- --val_steps 10).",
    )
    p.add_argument("--data_dir", required=True, help="TFRecords from preprocessing.build_tfrecords (e.g. the demo set)")
    p.add_argument("--output_dir", default=d.output_dir, help="default %(default)s")
    p.add_argument(
        "--variants", type=_variant_list, default=d.variants, help="comma-separated subset of %s" % ",".join(VARIANT_NAMES)
    )
    p.add_argument("--epochs", type=positive_int, help="epochs per variant (default %d)" % d.epochs)
    p.add_argument("--steps_per_epoch", type=positive_int, help="default: one pass over the training set")
    p.add_argument("--batch_size", type=positive_int, help="global batch (default %d)" % d.batch_size)
    p.add_argument("--image_size", type=positive_int, help="crop side (default %d)" % d.image_size)
    p.add_argument("--learning_rate", type=float, default=d.learning_rate, help="default %(default)s")
    p.add_argument("--init", choices=INITS, default=d.init, help="default %(default)s")
    p.add_argument("--seed", type=int, default=d.seed, help="first seed (default %(default)s)")
    p.add_argument(
        "--repeats", type=positive_int,
        help="seeds per variant (default %d); with 2 or more each effect is shown beside the seed-to-seed spread" % d.repeats,
    )
    p.add_argument(
        "--recipe", choices=sorted(recipes.RECIPES),
        help="train every variant with this trainer recipe (trainer/recipes.py): its epochs, batch, crop, rate, init "
        "and schedule, unless given here",
    )
    p.add_argument("--target_error", type=fraction, default=d.target_error, help="training top-1 error (default %(default)s)")
    p.add_argument(
        "--discard_checkpoints",
        action="store_true",
        help="delete each finished run's checkpoints/ and best/ (hundreds of MB each); logs and config stay",
    )
    p.add_argument("--tiny", action="store_true", help="smoke run: %s unless set" % TINY)
    p.add_argument("--overwrite", action="store_true", help="delete an existing --output_dir result first")
    args = p.parse_args(argv)
    values = {k: v for k, v in vars(args).items() if v is not None}
    # argparse fills --learning_rate and --init with their defaults: only flags typed count as given.
    typed = {a.split("=")[0][2:] for a in argv if a.startswith("--")}
    if args.tiny:
        values.update({k: v for k, v in TINY.items() if k not in typed})
    if args.recipe:
        preset = recipes.RECIPES[args.recipe]
        keep = typed | (set(TINY) if args.tiny else set())
        values.update({k: preset[k] for k in RECIPE_FIELDS if k in preset and k not in keep})
    if "baseline" not in values["variants"]:
        p.error("--variants must include baseline (every variant is compared with it). Received: %s"
                % ",".join(values["variants"]))  # fmt: skip
    return Config(trainer_flags=trainer_flags, **values)


def run_name(config, variant_name, seed):
    """The folder under runs/ of one variant and seed: the variant's name for the first seed."""
    return variant_name if seed == config.seed else "%s_seed%d" % (variant_name, seed)


def trainer_argv(config, variant, seed=None):
    """The trainer.task flags of one variant run.

    Args:
      config: a Config.
      variant: a Variant.
      seed: the run's seed (default config.seed).

    Returns:
      A list of strings for `trainer.task.main`.
    """
    seed = config.seed if seed is None else seed
    argv = ["--recipe", config.recipe] if config.recipe else []
    argv += [
        "--data_dir", config.data_dir,
        "--model_dir", os.path.join(config.output_dir, RUNS, run_name(config, variant.name, seed)),
        "--epochs", str(config.epochs),
        "--batch_size", str(config.batch_size),
        "--image_size", str(config.image_size),
        "--learning_rate", repr(config.learning_rate),
        "--init", config.init,
        "--seed", str(seed),
        # The ablation compares curves; exports and old checkpoints only cost disk.
        "--no_export", "--keep_checkpoints", "1",
    ]  # fmt: skip
    if not config.recipe:
        # A fixed learning rate: a plateau drop in one variant and not another would confound
        # the one feature being compared (a recipe's fixed step schedule drops in all alike).
        argv += ["--lr_schedule", "step", "--lr_step_epochs", str(config.epochs + 1)]
    if config.steps_per_epoch:
        argv += ["--steps_per_epoch", str(config.steps_per_epoch)]
    return argv + list(variant.flags) + list(config.trainer_flags)


def read_curves(log_dir):
    """Per-epoch metrics of one trainer run from its TensorBoard event files.

    Args:
      log_dir: the run's `logs` directory (with `train/` and `validation/`).

    Returns:
      {"train": {metric: [per-epoch values]}, "validation": {...}, "steps": [global
      step of each epoch end]} for metrics loss, top1_accuracy, top5_accuracy.
    """
    curves = {"steps": []}
    for split in ("train", "validation"):
        scalars = tblog.read_scalars(os.path.join(log_dir, split))
        curves[split] = {m: [v for _, v in scalars.get(m, [])] for m in ("loss", "top1_accuracy", "top5_accuracy")}
        if split == "train":
            # Per-epoch train scalars are written at the epoch's last global step;
            # the per-batch ones carry a "batch/" prefix and are ignored here.
            curves["steps"] = [s for s, _ in scalars.get("top1_accuracy", [])]
    return curves


def summarize(curves, target):
    """Final errors and epochs to target of one run's curves.

    Args:
      curves: read_curves output.
      target: training top-1 error to reach.

    Returns:
      dict of train/validation top-1/top-5 errors (final epoch), per-epoch
      top-1 error lists, epochs run and epochs to target.
    """
    def errors(split, metric):
        return [1.0 - a for a in curves[split][metric]]

    out = {
        "epochs": len(curves["train"]["top1_accuracy"]),
        "train_top1_error": errors("train", "top1_accuracy"),
        "train_top5_error": errors("train", "top5_accuracy"),
        "validation_top1_error": errors("validation", "top1_accuracy"),
        "validation_top5_error": errors("validation", "top5_accuracy"),
    }
    for key in ("train_top1_error", "train_top5_error", "validation_top1_error", "validation_top5_error"):
        out["final_" + key] = out[key][-1] if out[key] else None
    out["epochs_to_target"] = epochs_to_target(out["train_top1_error"], target)
    return out


def run_experiment(config, train=None):
    """Trains every variant and writes the report, figures and results.

    Args:
      config: a Config.
      train: the trainer entry point (argv -> exit code); default trainer.task.main.

    Returns:
      The results dict (also written to results.json).
    """
    if train is None:
        train = task.main
    started = time.time()
    runs = {}
    stopped = None
    seeds = range(config.seed, config.seed + config.repeats)
    for name in config.variants:
        variant = next(v for v in VARIANTS if v.name == name)
        for seed in seeds:
            if stopped:
                run = {"exit_code": None, "error": "not run: SIGTERM stopped %s" % stopped, "seconds": 0.0}
            else:
                run = _train_variant(config, variant, seed, train)
                if run["exit_code"] == EXIT_PREEMPTED:
                    stopped = run_name(config, name, seed)
            # The first seed's run is the variant's entry; later seeds are listed in it as repeats.
            if seed == config.seed:
                runs[name] = {"seed": seed, **run}
            else:
                runs[name].setdefault("repeats", []).append({"seed": seed, **run})
    results = {"config": dataclasses.asdict(config), "runs": runs, "stopped_by_sigterm": stopped,
               "seconds": time.time() - started}  # fmt: skip
    with open(os.path.join(config.output_dir, RESULTS), "w") as f:
        json.dump(results, f, indent=2)
    ablate_report.plot(os.path.join(config.output_dir, TRAIN_FIGURE), results, "train_top1_error", "Training top-1 error",
                       "Training error per epoch")  # fmt: skip
    ablate_report.plot(
        os.path.join(config.output_dir, VALIDATION_FIGURE),
        results,
        "validation_top1_error",
        "Validation top-1 error",
        "Validation error per epoch",
    )
    ablate_report.write_report(os.path.join(config.output_dir, REPORT), results)
    return results


def _train_variant(config, variant, seed, train):
    """One trainer run of `variant` with `seed`: its exit code, argv, seconds and curves (or error)."""
    folder = os.path.join(config.output_dir, RUNS, run_name(config, variant.name, seed))
    argv = trainer_argv(config, variant, seed)
    print("ablate: %s: python -m trainer.task %s" % (os.path.basename(folder), " ".join(argv)), flush=True)
    start = time.time()
    code = train(argv)
    run = {"exit_code": code, "trainer_argv": argv, "seconds": time.time() - start}
    if code == 0:
        run.update(summarize(read_curves(os.path.join(folder, "logs")), config.target_error))
        if not run["epochs"]:
            run["error"] = "no per-epoch metrics in %s" % os.path.join(folder, "logs")
    elif code == EXIT_PREEMPTED:
        run["error"] = "stopped by SIGTERM (trainer exit code %d)" % code
    else:
        run["error"] = "trainer exit code %s" % code
    if config.discard_checkpoints:
        for sub in ("checkpoints", "best"):
            shutil.rmtree(os.path.join(folder, sub), ignore_errors=True)
    print("ablate: %s finished with exit code %s in %.0f s" % (os.path.basename(folder), code, run["seconds"]), flush=True)
    return run


def _prepare_output_dir(config):
    if not os.path.isdir(config.data_dir) and not config.data_dir.startswith("gs://"):
        raise UsageError("--data_dir expected a folder of TFRecord shards. Received: %s (not a folder)" % config.data_dir)
    existing = [n for n in (REPORT, RESULTS, RUNS) if os.path.exists(os.path.join(config.output_dir, n))]
    if existing and not config.overwrite:
        raise UsageError(
            "--output_dir %s already holds a result (%s); pass --overwrite to replace it or choose another directory"
            % (config.output_dir, ", ".join(existing))
        )
    if existing:
        # The trainer would otherwise resume the old runs' checkpoints.
        shutil.rmtree(os.path.join(config.output_dir, RUNS), ignore_errors=True)
    os.makedirs(os.path.join(config.output_dir, RUNS), exist_ok=True)


def main(argv=None, train=None):
    """Entry point: `python -m experiments.ablate --data_dir D [flags] [-- trainer flags]`.

    Args:
      argv: flags without the program name (None: sys.argv[1:]).
      train: the trainer entry point to call (tests may pass a wrapper); default trainer.task.main.

    Returns:
      0 when every variant trained, 1 when a trainer run failed (the report
      says which), 2 on a user error (one line on stderr), 143 when a trainer
      run was stopped by SIGTERM (the later variants are not started).
    """
    try:
        config = parse_args(argv)
        _prepare_output_dir(config)
        # The trainer's own HParams config, so TensorBoard shows the same one whichever it reads.
        summaries.write_hparams_config(os.path.join(config.output_dir, RUNS))
        results = run_experiment(config, train)
    except UsageError as err:
        print("ablate: error: %s" % err, file=sys.stderr)
        return EXIT_USAGE
    failed = [n for n, r in results["runs"].items() if r.get("error") or any(x.get("error") for x in r.get("repeats", []))]
    base = results["runs"]["baseline"]
    print(
        "ablate: %d variants in %.0f s (%s); baseline validation top-1 error %s%%; report %s"
        % (
            len(results["runs"]),
            results["seconds"],
            "failed: " + ", ".join(failed) if failed else "all trained",
            ablate_report.pct(base.get("final_validation_top1_error")),
            os.path.join(config.output_dir, REPORT),
        )
    )
    if results["stopped_by_sigterm"]:
        return EXIT_PREEMPTED
    return EXIT_FAILED if failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
