"""The paper's Figure 1: ReLU trains several times faster than tanh.

    python -m experiments.relu_vs_tanh --cifar cifar-10-python.tar.gz --output_dir runs/figure1
    python -m experiments.relu_vs_tanh --data_dir demo_data --output_dir runs/figure1
    python -m experiments.relu_vs_tanh --data_dir tiny-tfrecords --sweep_learning_rates 0.01,0.02,0.05

Trains the four-layer network of `experiments.figure1_net` with ReLU and with
tanh, for each of --repeats seeds from the same initial weights, with the same
learning rate, batch order and budget, and reports how many epochs each takes
to reach the target training error (25% in the paper, where ReLU got there six
times sooner), per seed and as the median over seeds. With --sweep_learning_rates
each activation gets the fastest of several rates, as in the paper, instead of
one shared rate. Writes into --output_dir:

    report.md      the tables, the ratios and the setting
    results.json   the same figures and the per-epoch curves
    figure1.png    training error per epoch (solid ReLU, dashed tanh)
    logs/          TensorBoard: one run per activation and seed, with HParams

Data: --cifar (the python archive or its folder); else --data_dir (TFRecords of
preprocessing.build_tfrecords, the demo set included, shrunk to 32x32); else
Keras's CIFAR-10 download, where the machine can reach the internet.
"""
import argparse
import dataclasses
import json
import os
import shutil
import sys
import time

from cli import EXIT_OK, EXIT_USAGE, Parser, fraction, positive_float, positive_int, UsageError
from experiments import figure1_data, figure1_report, figure1_sweep, figure1_train, tblog
from experiments.figure1_net import FIGURE1_INITS
from experiments.figure1_report import FIGURE
from model.alexnet import ACTIVATIONS

DEFAULT_OUTPUT_DIR = os.path.join("runs", "relu_vs_tanh")
REPORT = "report.md"
RESULTS = "results.json"
LOGS = "logs"

# --tiny: a smoke run that finishes in seconds; only the flags a user did not set change.
TINY = {"repeats": 1, "epochs": 3, "train_examples": 256, "test_examples": 128, "batch_size": 32, "max_minutes": 2.0}


@dataclasses.dataclass(frozen=True)
class Config:
    cifar: str = None
    data_dir: str = None
    output_dir: str = DEFAULT_OUTPUT_DIR
    epochs: int = 40  # upper bound per run; the time budget usually binds first on real CIFAR-10
    max_minutes: float = 15.0  # both runs together; tanh gets whatever ReLU leaves (at least half)
    target_error: float = 0.25  # the paper's Figure 1 threshold
    train_examples: int = None  # None: the whole training split
    test_examples: int = None  # None: the whole test/validation split
    # The paper tuned each net's rate "to make training as fast as possible"; the learning
    # rate, init and seed count below are where a sweep on the demo set showed the effect,
    # which depends on them (docs/results/relu-vs-tanh.md).
    batch_size: int = 32  # 40 updates per epoch of the 1,300-image demo set (batch 128 gives only 10)
    learning_rate: float = 0.05  # plain SGD with momentum 0.9, the same for both activations
    sweep_learning_rates: tuple = ()  # when set: each activation's rate is the fastest of these (figure1_sweep)
    momentum: float = 0.9
    init: str = "he"  # He-normal for both activations; see the note above for the other inits
    image_size: int = 32
    seed: int = 0
    repeats: int = 3  # seeds seed..seed+repeats-1; single-seed ratios vary widely (the note above)
    stop_at_target: bool = True  # stop a run once it reaches the target (saves budget for tanh)
    tiny: bool = False
    overwrite: bool = False


def parse_args(argv):
    """Parses flags strictly into a Config (a mistyped flag is an error)."""
    d = Config()
    p = Parser(
        prog="python -m experiments.relu_vs_tanh",
        description="ReLU vs tanh training speed on the paper's Figure 1 network (a four-layer CNN).",
    )
    data = p.add_mutually_exclusive_group()
    data.add_argument("--cifar", help="cifar-10-python.tar.gz or its extracted folder")
    data.add_argument("--data_dir", help="TFRecords made by preprocessing.build_tfrecords (e.g. the demo set)")
    p.add_argument("--output_dir", default=d.output_dir, help="where report, figure and logs go (default %(default)s)")
    p.add_argument("--epochs", type=positive_int, help="most epochs per run (default %d)" % d.epochs)
    p.add_argument("--max_minutes", type=positive_float, help="budget for both runs (default %g)" % d.max_minutes)
    p.add_argument("--target_error", type=fraction, default=d.target_error, help="training error to reach (default %(default)s)")
    p.add_argument("--train_examples", type=positive_int, help="train on a random subset of this size")
    p.add_argument("--test_examples", type=positive_int, help="evaluate on the first N test examples")
    p.add_argument("--batch_size", type=positive_int, help="default %d" % d.batch_size)
    p.add_argument("--learning_rate", type=positive_float, default=d.learning_rate, help="default %(default)s")
    p.add_argument(
        "--sweep_learning_rates", type=_rates,
        help="comma-separated rates, e.g. 0.01,0.02,0.05: each activation trains the first seed at every rate "
        "and the rest at its fastest (the paper tuned each network's rate on its own); replaces --learning_rate",
    )
    p.add_argument("--momentum", type=float, default=d.momentum, help="default %(default)s")
    p.add_argument("--init", choices=FIGURE1_INITS, default=d.init, help="weight initialisation (default %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="first seed (default %(default)s)")
    p.add_argument("--repeats", type=positive_int, help="seeds per activation; the median is reported (default %d)" % d.repeats)
    p.add_argument(
        "--no_stop_at_target",
        dest="stop_at_target",
        action="store_false",
        help="train every run for all --epochs (full curves) instead of stopping at the target",
    )
    p.add_argument("--tiny", action="store_true", help="smoke run: %s unless set" % TINY)
    p.add_argument("--overwrite", action="store_true", help="replace an existing report in --output_dir")
    args = p.parse_args(argv)
    if not 0.0 <= args.momentum < 1.0:
        p.error("argument --momentum: expected 0 <= momentum < 1. Received: %s" % args.momentum)
    values = {k: v for k, v in vars(args).items() if v is not None}
    if args.tiny:
        values = {**TINY, **values}
    return Config(**values)


def _rates(text):
    """argparse type of --sweep_learning_rates: two or more distinct positive rates, in the order given."""
    try:
        rates = tuple(float(part) for part in text.split(","))
    except ValueError:
        rates = ()
    if len(rates) < 2 or len(set(rates)) < len(rates) or min(rates) <= 0:
        raise argparse.ArgumentTypeError("expected two or more distinct positive rates, e.g. 0.01,0.02,0.05. Received: %r" % text)
    return rates


def run_experiment(config):
    """Runs both activations and writes report, results, figure and logs.

    Args:
      config: a Config.

    Returns:
      The results dict (also written to results.json).
    """
    start = time.time()
    budget = config.max_minutes * 60.0
    data, description = figure1_data.prepare(config)
    train_examples = len(data[0])
    logdir = os.path.join(config.output_dir, LOGS)
    # A short name for titles and the HParams table: CIFAR-10, or the TFRecord folder's name.
    dataset_name = os.path.basename(os.path.normpath(config.data_dir)) if config.data_dir else "CIFAR-10"
    seeds = list(range(config.seed, config.seed + config.repeats))
    rates = config.sweep_learning_rates
    trials = [(a, seeds[0], r) for r in rates for a in ACTIVATIONS] if rates else []
    tblog.write_experiment_config(
        logdir,
        [
            figure1_train.hparams(_at(config, rate), a, seed, dataset_name, train_examples)
            for a, seed, rate in trials or [(a, seed, None) for seed in seeds for a in ACTIVATIONS]
        ],
        [("train_error", "training error"), ("test_error", "test error"), ("train_loss", "training loss")],
    )
    jobs = len(trials) + len(ACTIVATIONS) * (len(seeds) - 1 if rates else len(seeds))
    done = []

    def train(activation, seed, rate):
        # Run i may use its share of the budget plus whatever earlier runs left;
        # tanh runs come second in each pair, so any slack goes to them.
        deadline = start + budget * (len(done) + 1) / jobs
        name = figure1_train.run_name(activation, seed, rate)
        done.append(figure1_train.train_one(activation, seed, _at(config, rate), data, deadline, logdir, dataset_name, name))
        return done[-1]

    sweep = [train(a, seed, r) for a, seed, r in trials]
    chosen = figure1_sweep.best_rates(sweep) if rates else {a: config.learning_rate for a in ACTIVATIONS}
    runs = [r for r in sweep if r["learning_rate"] == chosen[r["activation"]]]
    for seed in seeds[1:] if rates else seeds:
        runs += [train(a, seed, chosen[a] if rates else None) for a in ACTIVATIONS]
    results = {
        "data": description,
        "num_classes": data[4],
        "train_examples": int(train_examples),
        "test_examples": int(0 if data[2] is None else len(data[2])),
        "config": dataclasses.asdict(config),
        "learning_rates": chosen,
        **({"sweep": sweep} if rates else {}),
        "runs": runs,
        **compare(runs, seeds),
        "seconds": time.time() - start,
    }
    with open(os.path.join(config.output_dir, RESULTS), "w") as f:
        json.dump(results, f, indent=2)
    figure1_report.plot_figure(os.path.join(config.output_dir, FIGURE), runs, seeds, dataset_name, config.target_error)
    figure1_report.write_report(os.path.join(config.output_dir, REPORT), results)
    return results


def _at(config, rate):
    """config with its learning rate set to `rate` (None: unchanged)."""
    return config if rate is None else dataclasses.replace(config, learning_rate=rate)


def compare(runs, seeds):
    """ReLU against tanh: epochs to the target per seed and over all seeds, and their ratios.

    Returns:
      {"per_seed_ratio": {seed: {"relu", "tanh", "ratio", "kind"}}, "median": {activation: (epochs, exact)},
       "ratio", "ratio_kind", "relu_faster"}.
    """
    def by(activation, seed=None):
        return [r for r in runs if r["activation"] == activation and (seed is None or r["seed"] == seed)]

    median_of = figure1_report.median_epochs_to_target
    per_seed = {}
    for seed in seeds:
        relu, tanh = median_of(by("relu", seed)), median_of(by("tanh", seed))
        ratio, kind = figure1_report.speedup(relu, tanh)
        per_seed[str(seed)] = {"relu": relu, "tanh": tanh, "ratio": ratio, "kind": kind}
    median = {a: median_of(by(a)) for a in ACTIVATIONS}
    ratio, kind = figure1_report.speedup(median["relu"], median["tanh"])
    return {"per_seed_ratio": per_seed, "median": median, "ratio": ratio, "ratio_kind": kind,
            "relu_faster": kind in ("measured", "lower bound") and ratio > 1}  # fmt: skip


def _check_output_dir(config):
    existing = [n for n in (REPORT, RESULTS, FIGURE, LOGS) if os.path.exists(os.path.join(config.output_dir, n))]
    if existing and not config.overwrite:
        raise UsageError(
            "--output_dir %s already holds a result (%s); pass --overwrite to replace it or choose another directory"
            % (config.output_dir, ", ".join(existing))
        )
    if existing:
        # Old event files would otherwise mix with the new run's in TensorBoard.
        shutil.rmtree(os.path.join(config.output_dir, LOGS), ignore_errors=True)
    os.makedirs(config.output_dir, exist_ok=True)


def main(argv=None):
    """Entry point: `python -m experiments.relu_vs_tanh [flags]`.

    Args:
      argv: flags without the program name (None: sys.argv[1:]).

    Returns:
      0 on success, 2 on a user error (one line on stderr).
    """
    try:
        config = parse_args(argv)
        _check_output_dir(config)
        results = run_experiment(config)
    except UsageError as err:
        print("relu_vs_tanh: error: %s" % err, file=sys.stderr)
        return EXIT_USAGE
    m, rates = results["median"], results["learning_rates"]
    print(
        "relu_vs_tanh: median epochs to %.0f%% training error over %d seed(s): relu %s (lr %g), tanh %s (lr %g); "
        "ratio %s (%s); report %s"
        % (
            100 * config.target_error,
            config.repeats,
            figure1_report.epochs_cell(*m["relu"]),
            rates["relu"],
            figure1_report.epochs_cell(*m["tanh"]),
            rates["tanh"],
            figure1_report.ratio_text(results["ratio"], results["ratio_kind"]),
            results["ratio_kind"],
            os.path.join(config.output_dir, REPORT),
        )
    )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
