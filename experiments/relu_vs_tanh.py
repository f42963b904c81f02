"""The paper's Figure 1: ReLU trains several times faster than tanh.

    python -m experiments.relu_vs_tanh --cifar cifar-10-python.tar.gz --output_dir runs/figure1
    python -m experiments.relu_vs_tanh --data_dir demo_data --output_dir runs/figure1

Trains the four-layer network of `experiments.figure1_net` with ReLU and with
tanh, for each of --repeats seeds from the same initial weights, with the same
learning rate, batch order and budget, and reports how many epochs each takes
to reach the target training error (25% in the paper, where ReLU got there six
times sooner), per seed and as the median over seeds. Writes into --output_dir:

    report.md      the tables, the ratios and the setting
    results.json   the same figures and the per-epoch curves
    figure1.png    training error per epoch (solid ReLU, dashed tanh)
    logs/          TensorBoard: one run per activation and seed, with HParams

Data: --cifar (the python archive or its folder); else --data_dir (TFRecords of
preprocessing.build_tfrecords, the demo set included, shrunk to 32x32); else
Keras's CIFAR-10 download, where the machine can reach the internet.
"""
import dataclasses
import json
import os
import sys
import time

import numpy as np

from cli import Parser, UsageError, fraction, positive_float, positive_int
from experiments.curves import epochs_to_target

DEFAULT_OUTPUT_DIR = os.path.join("runs", "relu_vs_tanh")
ACTIVATIONS = ("relu", "tanh")
REPORT = "report.md"
RESULTS = "results.json"
FIGURE = "figure1.png"
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
    # Measured on the demo set (README): at lr 0.01-0.03 ReLU and tanh took about as many
    # epochs; the paper tuned each net's rate "to make training as fast as possible",
    # and at 0.05 with batch 32 ReLU trains stably while tanh units saturate and stall.
    batch_size: int = 32  # 40 updates per epoch of the 1,300-image demo set (batch 128 gives only 10)
    learning_rate: float = 0.05  # plain SGD with momentum 0.9, the same for both activations
    momentum: float = 0.9
    init: str = "he"  # with Glorot init ReLU often sat near chance for several epochs (slower than tanh)
    image_size: int = 32
    seed: int = 0
    repeats: int = 3  # seeds seed..seed+repeats-1; one run per seed is too noisy to judge (see README)
    stop_at_target: bool = True  # stop a run once it reaches the target (saves budget for tanh)
    tiny: bool = False
    overwrite: bool = False


def parse_args(argv):
    """Parses flags strictly into a Config (a mistyped flag is an error)."""
    from experiments.figure1_net import INITS

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
    p.add_argument("--momentum", type=float, default=d.momentum, help="default %(default)s")
    p.add_argument("--init", choices=INITS, default=d.init, help="weight initialisation (default %(default)s)")
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


def load_data(config):
    """Loads the train and test images for the experiment.

    Args:
      config: a Config.

    Returns:
      (x_train, y_train, x_test, y_test, num_classes, description): uint8 images
      (N, s, s, 3), int64 labels, and a one-line description of the source.

    Raises:
      UsageError: no data source could be read.
    """
    if config.cifar:
        from experiments import cifar

        try:
            (x_train, y_train), (x_test, y_test) = cifar.load_cifar10(os.path.expanduser(config.cifar))
        except ValueError as err:
            raise UsageError(str(err)) from err
        return x_train, y_train, x_test, y_test, cifar.NUM_CLASSES, "CIFAR-10 from %s" % config.cifar
    if config.data_dir:
        from experiments import records
        from preprocessing import schema

        try:
            train = records.load_split(config.data_dir, schema.TRAIN, config.image_size)
            if train is None:
                raise UsageError(
                    "--data_dir expected TFRecord shards %s. Received: %s has none (make them with "
                    "python -m preprocessing.build_tfrecords)" % (schema.shard_glob("", schema.TRAIN).lstrip("/"), config.data_dir)
                )
            test = records.load_split(
                config.data_dir, schema.VALIDATION, config.image_size, max_examples=config.test_examples
            )
        except ValueError as err:
            raise UsageError(str(err)) from err
        x_test, y_test = test if test is not None else (None, None)
        classes = records.num_classes(config.data_dir, train[1], y_test)
        description = "TFRecords from %s, resized to %dx%d" % (config.data_dir, config.image_size, config.image_size)
        return train[0], train[1], x_test, y_test, classes, description
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    except Exception as err:  # keras raises a bare Exception for a failed download
        raise UsageError(
            "CIFAR-10 is not available (download failed: %s); pass --cifar PATH to cifar-10-python.tar.gz or its "
            "extracted folder, or --data_dir DIR of TFRecords from preprocessing.build_tfrecords "
            "(e.g. the demo set: python -m preprocessing.build_tfrecords --demo --output_dir DIR)"
            % str(err).splitlines()[0][:200]
        ) from err
    return x_train, y_train.reshape(-1).astype(np.int64), x_test, y_test.reshape(-1).astype(np.int64), 10, (
        "CIFAR-10 downloaded by keras.datasets.cifar10"
    )


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


def _normalise(images, mean):
    # cuda-convnet subtracts the mean training image; pixels are scaled to [0, 1].
    return images.astype(np.float32) / 255.0 - mean


def train_one(activation, seed, config, data, deadline, logdir, dataset_name):
    """Trains the Figure 1 network with one activation and seed.

    Args:
      activation: 'relu' or 'tanh'.
      seed: seed of the initial weights and of the batch order.
      config: a Config.
      data: (x_train, y_train, x_test, y_test, num_classes), images normalised.
      deadline: time.time() after which no new epoch starts.
      logdir: the experiment's TensorBoard directory; the run goes to
        logdir/<activation>_seed<seed>.
      dataset_name: recorded as an hparam.

    Returns:
      dict with "activation", "seed", per-epoch "train_error", "train_loss", "test_error" (or
      None), "seconds" (cumulative), "epochs_to_target", "seconds_to_target",
      "stopped" (why training ended).
    """
    import keras

    from experiments import tblog
    from experiments.figure1_net import build_figure1_net

    x_train, y_train, x_test, y_test, num_classes = data
    # One seed for weights and batch order: both activations start from the
    # same weights and see the same batches, so only the activation differs.
    keras.utils.set_random_seed(seed)
    model = build_figure1_net(activation, num_classes, config.image_size, config.init, seed)
    model.compile(
        optimizer=keras.optimizers.SGD(config.learning_rate, momentum=config.momentum),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    name = run_name(activation, seed)
    writer = tblog.RunWriter(os.path.join(logdir, name), hparams(config, activation, seed, dataset_name, len(x_train)), name)
    history = {"train_error": [], "train_loss": [], "test_error": [], "seconds": []}
    outcome = {"stopped": "epochs"}
    start = time.time()

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            elapsed = time.time() - start
            # Keras's training accuracy is the running mean over the epoch's
            # batches, the training error cuda-convnet printed for Figure 1.
            train_error = 1.0 - float(logs["accuracy"])
            test_error = 1.0 - float(logs["val_accuracy"]) if "val_accuracy" in logs else None
            history["train_error"].append(train_error)
            history["train_loss"].append(float(logs["loss"]))
            history["test_error"].append(test_error)
            history["seconds"].append(elapsed)
            scalars = {"train_error": train_error, "train_loss": float(logs["loss"]), "seconds": elapsed}
            if test_error is not None:
                scalars["test_error"] = test_error
            writer.scalars(epoch + 1, scalars)
            print(
                "%s epoch %d: train error %.4f, loss %.4f%s, %.1f s"
                % (
                    name,
                    epoch + 1,
                    train_error,
                    float(logs["loss"]),
                    "" if test_error is None else ", test error %.4f" % test_error,
                    elapsed,
                ),
                flush=True,
            )
            if not np.isfinite(logs["loss"]):
                outcome["stopped"] = "loss not finite"
                self.model.stop_training = True
            elif config.stop_at_target and train_error <= config.target_error:
                outcome["stopped"] = "target reached"
                self.model.stop_training = True
            elif time.time() >= deadline:
                outcome["stopped"] = "time budget"
                self.model.stop_training = True

    try:
        model.fit(
            x_train,
            y_train,
            batch_size=config.batch_size,
            epochs=config.epochs,
            shuffle=True,
            validation_data=(x_test, y_test) if x_test is not None else None,
            callbacks=[Record()],
            verbose=0,
        )
    finally:
        writer.close()
    reached = epochs_to_target(history["train_error"], config.target_error)
    return {
        "activation": activation,
        "seed": seed,
        **history,
        "epochs_to_target": reached,
        "seconds_to_target": history["seconds"][reached - 1] if reached else None,
        "stopped": outcome["stopped"],
    }


def run_name(activation, seed):
    """The TensorBoard run (and HParams trial) name of one run."""
    return "%s_seed%d" % (activation, seed)


def hparams(config, activation, seed, dataset_name, train_examples):
    """The HParams record of one run."""
    return {
        "activation": activation,
        "learning_rate": config.learning_rate,
        "momentum": config.momentum,
        "batch_size": config.batch_size,
        "init": config.init,
        "seed": seed,
        "train_examples": train_examples,
        "target_error": config.target_error,
        "dataset": dataset_name,
    }


def _fmt(value, pattern="%d"):
    return "not reached" if value is None else pattern % value


def _epochs_cell(epochs, exact):
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
    target = c["target_error"]
    ratio, kind = results["ratio"], results["ratio_kind"]
    lines = [
        "# ReLU vs tanh (the paper's Figure 1)",
        "",
        "Data: %s; %d training and %d test examples, %d classes."
        % (results["data"], results["train_examples"], results["test_examples"], results["num_classes"]),
        "Network: four-layer CNN (conv 5x5 x3 + fully-connected), init `%s`, SGD lr %g momentum %g, batch %d, "
        "no regularisation. For each seed both activations start from the same weights and see the same batches."
        % (c["init"], c["learning_rate"], c["momentum"], c["batch_size"]),
        "",
        "| seed | activation | epochs to %.0f%% training error | seconds to target | epochs run | final training error "
        "| final test error | stopped by |" % (100 * target),
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in results["runs"]:
        final_test = run["test_error"][-1] if run["test_error"] and run["test_error"][-1] is not None else None
        lines.append(
            "| %d | %s | %s | %s | %d | %s | %s | %s |"
            % (
                run["seed"],
                run["activation"],
                _fmt(run["epochs_to_target"]),
                _fmt(run["seconds_to_target"], "%.1f"),
                len(run["train_error"]),
                _fmt(run["train_error"][-1] if run["train_error"] else None, "%.4f"),
                _fmt(final_test, "%.4f"),
                run["stopped"],
            )
        )
    lines += [
        "",
        "| | ReLU | tanh | tanh / ReLU |",
        "| --- | --- | --- | --- |",
    ]
    for seed, r in sorted(results["per_seed_ratio"].items(), key=lambda item: int(item[0])):
        lines.append(
            "| seed %s epochs to target | %s | %s | %s |"
            % (seed, _epochs_cell(*r["relu"]), _epochs_cell(*r["tanh"]), _ratio_text(r["ratio"], r["kind"]))
        )
    m = results["median"]
    lines.append(
        "| **median over %d seeds** | %s | %s | **%s** |"
        % (len(results["per_seed_ratio"]), _epochs_cell(*m["relu"]), _epochs_cell(*m["tanh"]), _ratio_text(ratio, kind))
    )
    lines.append("")
    if kind == "measured":
        verdict = "ReLU reached the target in fewer epochs" if ratio > 1 else "ReLU was NOT faster here"
        lines.append("Ratio of medians: %.2f (measured): %s. The paper reports about 6 on CIFAR-10." % (ratio, verdict))
    elif kind == "lower bound":
        lines.append(
            "Ratio of medians: at least %.2f (tanh's median run did not reach the target, so its figure is a lower "
            "bound): ReLU reached the target in fewer epochs. The paper reports about 6 on CIFAR-10." % ratio
        )
    elif kind == "upper bound":
        lines.append(
            "Ratio of medians: at most %.2f (ReLU's median run did not reach the target): ReLU was NOT shown faster "
            "here." % ratio
        )
    else:
        lines.append("Ratio: not measured: neither activation reached the target error; raise --epochs or --max_minutes.")
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
        "| epoch | " + " | ".join(run_name(r["activation"], r["seed"]) for r in results["runs"]) + " |",
        "| --- | " + " | ".join("---" for _ in results["runs"]) + " |",
    ]
    longest = max(len(r["train_error"]) for r in results["runs"])
    for i in range(longest):
        cells = ["%.4f" % r["train_error"][i] if i < len(r["train_error"]) else "" for r in results["runs"]]
        lines.append("| %d | %s |" % (i + 1, " | ".join(cells)))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def _ratio_text(ratio, kind):
    if kind == "measured":
        return "%.2f" % ratio
    if kind == "lower bound":
        return ">= %.2f" % ratio
    if kind == "upper bound":
        return "<= %.2f" % ratio
    return "n/a"


def run_experiment(config):
    """Runs both activations and writes report, results, figure and logs.

    Args:
      config: a Config.

    Returns:
      The results dict (also written to results.json).
    """
    from experiments import plots, tblog

    start = time.time()
    budget = config.max_minutes * 60.0
    x_train, y_train, x_test, y_test, num_classes, description = load_data(config)
    if len(x_train) == 0:
        raise UsageError("expected training examples. Received: an empty training split from %s" % description)
    rng = np.random.default_rng(config.seed)
    if config.train_examples and config.train_examples < len(x_train):
        keep = np.sort(rng.permutation(len(x_train))[: config.train_examples])
        x_train, y_train = x_train[keep], y_train[keep]
    if x_test is not None and config.test_examples:
        x_test, y_test = x_test[: config.test_examples], y_test[: config.test_examples]
    if x_train.shape[1:3] != (config.image_size, config.image_size):
        raise UsageError(
            "expected %dx%d training images. Received: %s" % (config.image_size, config.image_size, x_train.shape[1:3])
        )
    mean = x_train.astype(np.float32).mean(axis=0) / 255.0
    data = (
        _normalise(x_train, mean),
        y_train,
        _normalise(x_test, mean) if x_test is not None else None,
        y_test,
        num_classes,
    )

    logdir = os.path.join(config.output_dir, LOGS)
    # A short name for titles and the HParams table: CIFAR-10, or the TFRecord folder's name.
    dataset_name = os.path.basename(os.path.normpath(config.data_dir)) if config.data_dir else "CIFAR-10"
    seeds = list(range(config.seed, config.seed + config.repeats))
    tblog.write_experiment_config(
        logdir,
        [hparams(config, a, seed, dataset_name, len(x_train)) for seed in seeds for a in ACTIVATIONS],
        [("train_error", "training error"), ("test_error", "test error"), ("train_loss", "training loss")],
    )
    runs = []
    order = [(seed, a) for seed in seeds for a in ACTIVATIONS]
    for i, (seed, activation) in enumerate(order):
        # Run i may use its share of the budget plus whatever earlier runs left;
        # tanh runs come second in each pair, so any slack goes to them.
        deadline = start + budget * (i + 1) / len(order)
        runs.append(train_one(activation, seed, config, data, deadline, logdir, dataset_name))

    def by(activation, seed=None):
        return [r for r in runs if r["activation"] == activation and (seed is None or r["seed"] == seed)]

    per_seed = {}
    for seed in seeds:
        relu, tanh = median_epochs_to_target(by("relu", seed)), median_epochs_to_target(by("tanh", seed))
        ratio, kind = speedup(relu, tanh)
        per_seed[str(seed)] = {"relu": relu, "tanh": tanh, "ratio": ratio, "kind": kind}
    median = {a: median_epochs_to_target(by(a)) for a in ACTIVATIONS}
    ratio, kind = speedup(median["relu"], median["tanh"])
    results = {
        "data": description,
        "num_classes": num_classes,
        "train_examples": int(len(x_train)),
        "test_examples": int(0 if x_test is None else len(x_test)),
        "config": dataclasses.asdict(config),
        "runs": runs,
        "per_seed_ratio": per_seed,
        "median": median,
        "ratio": ratio,
        "ratio_kind": kind,
        "relu_faster": kind in ("measured", "lower bound") and ratio > 1,
        "seconds": time.time() - start,
    }
    with open(os.path.join(config.output_dir, RESULTS), "w") as f:
        json.dump(results, f, indent=2)
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
    plots.plot_curves(
        os.path.join(config.output_dir, FIGURE),
        curves,
        ylabel="Training error rate",
        title="ReLU (solid) vs tanh (dashed), %d seed%s: %s" % (len(seeds), "s" if len(seeds) > 1 else "", dataset_name),
        target=config.target_error,
    )
    write_report(os.path.join(config.output_dir, REPORT), results)
    return results


def _check_output_dir(config):
    existing = [n for n in (REPORT, RESULTS, FIGURE, LOGS) if os.path.exists(os.path.join(config.output_dir, n))]
    if existing and not config.overwrite:
        raise UsageError(
            "--output_dir %s already holds a result (%s); pass --overwrite to replace it or choose another directory"
            % (config.output_dir, ", ".join(existing))
        )
    if existing:
        import shutil

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
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        config = parse_args(argv)
        _check_output_dir(config)
        results = run_experiment(config)
    except UsageError as err:
        print("relu_vs_tanh: error: %s" % err, file=sys.stderr)
        return 2
    m = results["median"]
    print(
        "relu_vs_tanh: median epochs to %.0f%% training error over %d seed(s): relu %s, tanh %s; ratio %s (%s); report %s"
        % (
            100 * config.target_error,
            config.repeats,
            _epochs_cell(*m["relu"]),
            _epochs_cell(*m["tanh"]),
            _ratio_text(results["ratio"], results["ratio_kind"]),
            results["ratio_kind"],
            os.path.join(config.output_dir, REPORT),
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
