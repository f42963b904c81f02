"""Distribution: one device vs `MirroredStrategy`, mixed precision and XLA; and the trainer end to end.

    python -m benchmarks --stages distribute          # the stage, as written to BENCHMARKS.md
    python -m benchmarks --stages distribute,end_to_end
    python -m benchmarks.distribute --worker --strategy mirrored --replicas 2 --precision float32

On a CPU-only machine the comparison is one CPU device vs `MirroredStrategy` over
`--replicas` logical CPU devices (`tf.config.set_logical_device_configuration`),
the configuration the trainer's `--strategy mirrored --cpu_replicas 2` uses; where
GPUs are present it is one GPU vs all GPUs. Logical devices can only be configured
before TensorFlow initialises its runtime, so every configuration runs in its own
worker process. Each worker times `train_on_batch` of `model.build_alexnet` on one
fixed random global batch (the replicas split it), exactly as the training-step stage.

The end-to-end stage runs `python -m trainer.task` on real shards under the
default strategy and under mirrored over 2 logical CPU devices, and compares its
own images/s with the bare step at the same batch and strategy, timed in fresh
workers right before and right after each trainer run (target: at least 0.9).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

from benchmarks import common

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def configure_devices(device, replicas):
    """Creates the devices a configuration needs; must run before any TensorFlow op.

    Args:
      device: 'cpu' or 'gpu'.
      replicas: CPU: number of logical CPU devices to split the one physical CPU
        into (1 = leave it alone). GPU: number of GPUs to use (the first ones).

    Returns:
      The device names the strategy should use, e.g. ['/cpu:0', '/cpu:1'].

    Raises:
      ValueError: more GPUs requested than present.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    if device == "cpu":
        if replicas > 1:
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
        return ["/cpu:%d" % i for i in range(replicas)]
    gpus = tf.config.list_physical_devices("GPU")
    if replicas > len(gpus):
        raise ValueError("expected at most %d GPUs (present). Received: replicas=%d" % (len(gpus), replicas))
    return ["/gpu:%d" % i for i in range(replicas)]


def run_configuration(args):
    """One configuration's measurement (see `main`)."""
    devices = configure_devices(args.device, args.replicas)
    import keras  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from benchmarks.training_step import keras_step_rates, onednn_enabled, paper_alexnet  # pylint: disable=import-outside-toplevel

    keras.mixed_precision.set_global_policy(args.precision)
    if args.strategy == "mirrored":
        strategy = tf.distribute.MirroredStrategy(devices)
    else:
        strategy = tf.distribute.OneDeviceStrategy(devices[0])
    with strategy.scope():
        model = paper_alexnet(args.num_classes, args.image_size, args.xla)
    rates = keras_step_rates(model, args.batch_size, args.image_size, args.num_classes, args.warmup, args.repeats,
                             args.steps)  # fmt: skip
    return {
        "device": args.device,
        "strategy": args.strategy,
        "replicas": strategy.num_replicas_in_sync,
        "precision": args.precision,
        "xla": args.xla,
        "batch_size": args.batch_size,
        "onednn": onednn_enabled(),
        "physical_gpus": len(tf.config.list_physical_devices("GPU")),
        "images_per_s": rates,
    }


def configurations(gpus, tiny):
    """The configurations the stage measures, in order; the first is the reference.

    Args:
      gpus: number of physical GPUs (0 on a CPU-only machine).
      tiny: only the one-device vs mirrored pair, in float32 without XLA.

    Returns:
      A list of dicts with device, strategy, replicas, precision, xla.
    """
    cpu = [
        dict(device="cpu", strategy=strategy, replicas=replicas, precision=precision, xla=xla)
        for precision, xla in (("float32", False), ("float32", True), ("mixed_bfloat16", False), ("mixed_bfloat16", True))
        for strategy, replicas in (("one", 1), ("mirrored", 2))
    ]
    if tiny:
        cpu = cpu[:2]
    if not gpus:
        return cpu
    gpu = [
        dict(device="gpu", strategy=strategy, replicas=replicas, precision=precision, xla=xla)
        for precision, xla in (("float32", False), ("mixed_bfloat16", False), ("mixed_bfloat16", True),
                               ("mixed_float16", True))
        for strategy, replicas in (("one", 1), ("mirrored", gpus))
    ]  # fmt: skip
    if tiny:
        gpu = gpu[:2]
    return cpu[:2] + gpu  # with GPUs, the CPU pair stays as the reference of the CPU-only tables


def stage_settings(tiny, repeats):
    """Sizes for a full or a `--tiny` run of the stage."""
    if tiny:
        return {"batch_size": 4, "image_size": 67, "num_classes": 10, "warmup": 1, "repeats": repeats, "steps": 1}
    return {"batch_size": 32, "image_size": 227, "num_classes": 1000, "warmup": 1, "repeats": repeats, "steps": 2}


def _args(config, settings):
    args = ["--worker", "--device", config["device"], "--strategy", config["strategy"], "--replicas",
            config["replicas"], "--precision", config["precision"]]  # fmt: skip
    if config["xla"]:
        args.append("--xla")
    for key in ("batch_size", "image_size", "num_classes", "warmup", "repeats", "steps"):
        args += ["--" + key, settings[key]]
    return [str(a) for a in args]


def run_stage(tiny=False, repeats=3, log=print):
    """Runs every configuration in its own worker process.

    The first worker (one CPU device) also reports the number of physical GPUs;
    the GPU configurations are added only when there are some.

    Args:
      tiny: small inputs: checks the machinery, figures meaningless.
      repeats: timed runs per configuration.
      log: progress printer.

    Returns:
      {"settings", "gpus", "runs": [worker result or {"error"}, each with its config and command]}.
    """
    settings = stage_settings(tiny, repeats)
    pending = configurations(0, tiny)
    runs, gpus, index = [], 0, 0
    while index < len(pending):
        config = pending[index]
        args = _args(config, settings)
        command = "python -m benchmarks.distribute " + " ".join(args)
        log("distribute: %s" % " ".join("%s=%s" % kv for kv in config.items()))
        try:
            result = common.run_worker("benchmarks.distribute", args)
        except common.WorkerError as err:
            result = {"error": str(err)}
        result.update(config=config, command=command)
        runs.append(result)
        if index == 0 and result.get("physical_gpus"):
            gpus = result["physical_gpus"]
            pending = configurations(gpus, tiny)
        index += 1
    return {"settings": settings, "gpus": gpus, "runs": runs}


# tf_cnn_benchmarks' AlexNet: conv1 64 and conv2 192 filters where the paper has 96 and 256, no LRN.
GPU_ANCHORS = (
    "Published anchors for a close variant of the network, tf_cnn_benchmarks' AlexNet (conv1 and conv2 with 64 and "
    "192 filters instead of 96 and 256, no LRN: about a quarter fewer multiply-accumulates per image): about 2,900 "
    "images/s on one P100 (TensorFlow's published benchmarks of 2017, float32, batch 512 per GPU) and about 11,000 "
    "on one A100 with float16 (the figure issue 8 quotes, without its batch)."
)


def percent(fraction):
    """A fraction as a percentage with at least two significant digits below 10% (0.031%, 0.5%, 72%)."""
    value = 100 * fraction
    return ("%.0f%%" % value) if value >= 10 else ("%.2g%%" % value)


# The error TensorFlow 2.21 raises for an XLA step mirrored over logical CPU devices (trainer/strategy.py, check_xla).
MIRRORED_XLA_ERROR = "Trying to access resource"


def known_failure(config, error):
    """A note for a failure the project knows and the trainer refuses up front, else ""."""
    mirrored_cpu_xla = config["device"] == "cpu" and config["strategy"] == "mirrored" and config["xla"]
    if mirrored_cpu_xla and MIRRORED_XLA_ERROR in error:
        return (" (the known failure of XLA mirrored over logical CPU devices, keras-team/keras#19005: trainer.task "
                "refuses --xla with --cpu_replicas > 1 before it starts)")  # fmt: skip
    return ""


def render(stage, input_rate=None):
    """The stage's markdown table: images/s, speed-up over the first (one CPU device, float32) row and,
    when the input stage measured it, each configuration's images/s as a percentage of the input pipeline's rate.

    Args:
      stage: `run_stage`'s result.
      input_rate: images/s of the trainer's input pipeline measured in the same run (the input
        stage's full-augmentation pipeline), or None when this run has none.
    """
    settings, runs = stage["settings"], stage["runs"]
    out = ["### Distribution, mixed precision, XLA\n"]
    out.append(
        "AlexNet (%d classes), %dx%d inputs, global batch %d, SGD momentum 0.9 with the paper's weight decay in the update, as the trainer runs it. Images/s: median (min-max) of %d "
        "timed runs of %d steps after %d warm-up run(s); each configuration in its own process.\n"
        % (settings["num_classes"], settings["image_size"], settings["image_size"], settings["batch_size"],
           settings["repeats"], settings["steps"], settings["warmup"])
    )  # fmt: skip
    reference = runs[0]["images_per_s"]["median"] if "images_per_s" in runs[0] else None
    rows = []
    for run in runs:
        c = run["config"]
        if c["strategy"] == "one":
            placement = "1 %s" % c["device"].upper()
        else:
            placement = "mirrored, %d %s" % (c["replicas"], "logical CPU devices" if c["device"] == "cpu" else "GPUs")
        row = [placement, c["precision"], "on" if c["xla"] else "off"]
        if "images_per_s" in run:
            median = run["images_per_s"]["median"]
            row += [common.format_stats(run["images_per_s"]), "%.2fx" % (median / reference) if reference else "n/a"]
            row += [percent(median / input_rate)] if input_rate else []
        else:
            row += ["failed: " + run["error"] + known_failure(c, run["error"]), "n/a"] + (["n/a"] if input_rate else [])
        rows.append(row + ["`%s`" % run["command"]])
    headers = ["devices", "precision", "XLA", "images/s", "vs first row"]
    headers += ["% of the input pipeline's rate"] if input_rate else []
    out.append(common.markdown_table(headers + ["command"], rows))
    if input_rate:
        out.append(
            "*%% of the input pipeline's rate*: images/s over the %.0f images/s that the trainer's input pipeline (full "
            "augmentation) reached in the input stage of this run, alone on this host's CPUs. At 100%% or more the host "
            "could not feed the configuration; below, it may still fall short, since the step's own work on the host "
            "(on a CPU-only machine, the whole step) takes CPU time from the pipeline. The end-to-end table measures "
            "both together.\n" % input_rate
        )
    else:
        out.append("No input-pipeline rate in this run (the input stage was not selected, or it failed): no "
                   "percentage of it is shown.\n")  # fmt: skip
    if stage["gpus"]:
        out.append(GPU_ANCHORS + "\n")
    else:
        out.append("No GPU present on this machine: the 1 GPU vs all GPUs rows (bfloat16 / float16, XLA) were not run.\n")
    return "\n".join(x if x.endswith("\n") else x + "\n" for x in out)


def main(argv=None):
    """Worker: measures one configuration and prints one JSON result line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.distribute", description=__doc__.split("\n")[0])
    parser.add_argument("--worker", action="store_true", required=True, help="run one measurement process")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--strategy", choices=("one", "mirrored"), default="one")
    parser.add_argument("--replicas", type=int, default=1, help="logical CPU devices, or GPUs")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32", help="Keras dtype policy")
    parser.add_argument("--xla", action="store_true", help="compile the train step with XLA (jit_compile)")
    parser.add_argument("--batch_size", type=int, default=32, help="global batch")
    parser.add_argument("--image_size", type=int, default=227)
    parser.add_argument("--num_classes", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args(argv)
    if args.replicas < 1 or args.batch_size % args.replicas:
        parser.error("expected replicas >= 1 dividing batch_size. Received: replicas=%d, batch_size=%d"
                     % (args.replicas, args.batch_size))  # fmt: skip
    if args.strategy == "one" and args.replicas != 1:
        parser.error("expected replicas=1 with --strategy one. Received: replicas=%d" % args.replicas)
    common.emit_result(run_configuration(args))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())


# ---------------------------------------------------------------- end to end: python -m trainer.task vs the bare step

# The trainer's end-of-epoch log line (trainer/loop.py): "... | lr 0.01 | 17.9 images/s".
EPOCH_LINE = re.compile(r"^epoch (\d+)/(\d+) step (\d+): .*\| ([0-9.]+) images/s\s*$")
E2E_STRATEGIES = (("default", 1), ("mirrored", 2))


def e2e_settings(tiny, repeats):
    """Sizes of the end-to-end stage: the same batch and input as the distribute stage's float32 rows."""
    base = stage_settings(tiny, repeats)
    return dict(base, steps_per_epoch=2 if tiny else 6, epochs=1 + repeats)


def build_shards(image_source, out_dir, tiny, log=print):
    """Runs `python -m preprocessing.build_tfrecords` to make the shards the trainer reads.

    Args:
      image_source: the ImageNet-layout sample root (train/, val/, meta/) or None for the job's `--demo` set.
      out_dir: output directory (must not exist or be empty).
      tiny: a handful of demo images per class.
      log: progress printer.

    Returns:
      (out_dir, a short description of the data).
    """
    if image_source is not None:
        meta = os.path.join(image_source, "meta")
        args = ["--train_dir", os.path.join(image_source, "train"), "--val_dir", os.path.join(image_source, "val"),
                "--val_labels", os.path.join(meta, "ILSVRC2012_validation_ground_truth.txt"),
                "--devkit_classes", os.path.join(meta, "map_clsloc.txt"),
                "--synsets", os.path.join(meta, "LOC_synset_mapping.txt"), "--train_shards", "2", "--val_shards", "1"]  # fmt: skip
        what = "real ImageNet sample images (its train/ and val/), stored 256x256"
    else:
        per_class = ("3", "1") if tiny else ("20", "4")
        args = ["--demo", "--demo_train_per_class", per_class[0], "--demo_val_per_class", per_class[1],
                "--train_shards", "2", "--val_shards", "1"]  # fmt: skip
        what = "the preprocessing job's --demo images (%s train / %s validation per class)" % per_class
    command = [sys.executable, "-m", "preprocessing.build_tfrecords", *args, "--output_dir", out_dir]
    log("end_to_end: building shards (%s)" % what)
    what += ", built by `python -m preprocessing.build_tfrecords %s --output_dir SHARDS`" % " ".join(
        a if not a.startswith(image_source or "\0") else "SAMPLE" + a[len(image_source):] for a in args)
    proc = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise common.WorkerError("python -m preprocessing.build_tfrecords exited with code %d: %s" % (proc.returncode, tail[0]))
    return out_dir, what


def run_trainer(data_dir, model_dir, strategy, replicas, settings, timeout=3600):
    """Runs `python -m trainer.task` and times it from its own epoch lines.

    Per epoch after the first (which traces the step and fills the pipeline): the
    trainer's own images/s (its training steps, with the input pipeline, the loop,
    metrics and per-step summaries), and the epoch's fixed cost: the wall time
    between this epoch's log line and the previous one, minus the time its steps
    took at the reported rate (one validation batch, epoch summaries and
    histograms, the checkpoint). The fixed cost is paid once per epoch, so it is
    reported in seconds rather than folded into a rate over a few-step epoch.

    Args:
      data_dir: shards and metadata.json.
      model_dir: a fresh run directory.
      strategy: the trainer's --strategy.
      replicas: --cpu_replicas for mirrored (1: not passed).
      settings: `e2e_settings`.
      timeout: seconds.

    Returns:
      {"trainer": images/s stats, "epoch_overhead_s": stats, "command": str}.
    """
    args = ["--data_dir", data_dir, "--model_dir", model_dir, "--strategy", strategy,
            "--batch_size", settings["batch_size"], "--epochs", settings["epochs"],
            "--steps_per_epoch", settings["steps_per_epoch"], "--image_size", settings["image_size"],
            "--val_steps", 1, "--no_export", "--seed", 0]  # fmt: skip
    if replicas > 1:
        args += ["--cpu_replicas", replicas]
    args = [str(a) for a in args]
    command = [sys.executable, "-m", "trainer.task", *args]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    stamps, reported, lines = [], [], []
    start = time.perf_counter()
    # Line-buffered reading so that each epoch line is stamped when it is printed.
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, bufsize=1) as proc:
        for line in proc.stdout:
            lines.append(line.rstrip())
            match = EPOCH_LINE.match(line.strip())
            if match:
                stamps.append(time.perf_counter())
                reported.append(float(match.group(4)))
            if time.perf_counter() - start > timeout:
                proc.kill()
                raise common.WorkerError("python -m trainer.task timed out after %d s" % timeout)
        code = proc.wait()
    # The shards and run directory are temporary: the command names them by role.
    shown = "python -m trainer.task --data_dir SHARDS --model_dir RUN_DIR " + " ".join(args[4:])
    if code != 0:
        raise common.WorkerError("python -m trainer.task exited with code %d: %s" % (code, "\n".join(lines[-3:])))
    if len(stamps) != settings["epochs"]:
        raise common.WorkerError("expected %d epoch lines from trainer.task (its log format may have changed). "
                                 "Received: %d; last output: %s" % (settings["epochs"], len(stamps), lines[-1:]))  # fmt: skip
    images = settings["batch_size"] * settings["steps_per_epoch"]
    intervals = [b - a for a, b in zip(stamps, stamps[1:])]
    overheads = [max(0.0, interval - images / rate) for interval, rate in zip(intervals, reported[1:])]
    return {"trainer": common.summarize(reported[1:]), "epoch_overhead_s": common.summarize(overheads), "command": shown}


def bare_step(settings, strategy):
    """The bare model step for a trainer strategy, timed in a fresh worker process.

    Args:
      settings: `e2e_settings`.
      strategy: the trainer's --strategy ("default" or "mirrored").

    Returns:
      (images/s stats, the worker's command).
    """
    name, replicas = ("one", 1) if strategy == "default" else ("mirrored", 2)
    config = dict(device="cpu", strategy=name, replicas=replicas, precision="float32", xla=False)
    args = _args(config, stage_settings_like(settings))
    return common.run_worker("benchmarks.distribute", args)["images_per_s"], "python -m benchmarks.distribute " + " ".join(args)


def stage_settings_like(settings):
    """The distribute-stage settings that share this stage's batch, input and repeats."""
    return {k: settings[k] for k in ("batch_size", "image_size", "num_classes", "warmup", "repeats", "steps")}


def run_end_to_end(tiny, repeats, work_dir, image_source, log=print):
    """Trainer vs bare step under the default strategy and mirrored over 2 logical CPU devices.

    The bare step is timed right before and right after each trainer run, in
    fresh workers, and summarized over both: on a shared machine the speed
    drifts by several percent within minutes, so a reference timed elsewhere in
    the invocation (the distribute stage's row) can differ from the trainer's
    conditions by more than the 10% the target allows.

    Args:
      tiny: tiny sizes.
      repeats: epochs timed after the first.
      work_dir: scratch directory (shards and run directories go below it).
      image_source: ImageNet-layout sample root, or None for the demo set.
      log: progress printer.

    Returns:
      {"settings", "data", "runs": [{"strategy", "replicas", "trainer", "epoch_overhead_s", "bare", "bare_before",
      "bare_after", "command", "bare_command"} or "error"]}.
    """
    settings = e2e_settings(tiny, repeats)
    data_dir, what = build_shards(image_source, os.path.join(work_dir, "e2e_shards"), tiny, log)
    with open(os.path.join(data_dir, "metadata.json"), encoding="utf-8") as f:
        settings["num_classes"] = json.load(f)["num_classes"]
    runs = []
    for strategy, replicas in E2E_STRATEGIES:
        run = {"strategy": strategy, "replicas": replicas}
        try:
            log("end_to_end: bare step before the trainer, %s" % strategy)
            run["bare_before"], run["bare_command"] = bare_step(settings, strategy)
            log("end_to_end: trainer.task --strategy %s" % strategy)
            run.update(run_trainer(data_dir, os.path.join(work_dir, "e2e_run_" + strategy), strategy, replicas, settings))
            log("end_to_end: bare step after the trainer, %s" % strategy)
            run["bare_after"], _ = bare_step(settings, strategy)
            run["bare"] = common.summarize(run["bare_before"]["values"] + run["bare_after"]["values"])
        except common.WorkerError as err:
            run["error"] = str(err)
        runs.append(run)
    return {"settings": settings, "data": what, "runs": runs}


def render_end_to_end(stage):
    """The end-to-end table: trainer images/s vs the bare step (target >= 0.9) and the per-epoch fixed cost."""
    s = stage["settings"]
    out = ["### End to end: `python -m trainer.task` vs the bare model step\n"]
    out.append(
        "Shards: %s. Full training augmentation (random %d crop of the stored image, flip, PCA colour noise, mean "
        "subtraction), %d classes (from metadata.json), global batch %d, %d epochs of %d steps; the first epoch is "
        "warm-up, the other %d are timed. *Trainer images/s* is the trainer's own per-epoch figure (training steps "
        "fed by the input pipeline, with the loop, metrics and step summaries). *Fixed cost per epoch* is the wall "
        "time between consecutive epoch log lines minus those steps' time: one validation batch, epoch summaries "
        "and histograms, the checkpoint; an ImageNet epoch (1,281,167 images) pays it once. The bare step is "
        "`train_on_batch` on one batch held in memory, same network, batch and strategy, timed in a fresh worker "
        "right before and right after the trainer run; its figure is over both workers' runs, followed by the "
        "median of each, so drift during the trainer run shows. Target: trainer / bare >= 0.9.\n"
        % (stage["data"], s["image_size"], s["num_classes"], s["batch_size"], s["epochs"], s["steps_per_epoch"],
           s["epochs"] - 1)
    )  # fmt: skip
    rows = []
    for run in stage["runs"]:
        name = "default" if run["strategy"] == "default" else "mirrored, %d logical CPU devices" % run["replicas"]
        if "error" in run:
            rows.append([name, "failed: " + run["error"], "n/a", "n/a", "n/a", "n/a"])
            continue
        ratio = run["trainer"]["median"] / run["bare"]["median"]
        imagenet_epoch_s = 1_281_167 / run["trainer"]["median"]
        cost = run["epoch_overhead_s"]
        bare = "%s; before %.1f, after %.1f" % (common.format_stats(run["bare"]), run["bare_before"]["median"],
                                                run["bare_after"]["median"])
        rows.append([name, common.format_stats(run["trainer"]), bare,
                     "%.2f (%s)" % (ratio, "met" if ratio >= 0.9 else "missed"),
                     "%s s (%.3f%% of an ImageNet epoch)" % (common.format_stats(cost), 100 * cost["median"] / imagenet_epoch_s),
                     "`%s`; bare: `%s`" % (run["command"], run["bare_command"])])  # fmt: skip
    out.append(common.markdown_table(["strategy", "trainer images/s", "bare step images/s", "trainer / bare",
                                      "fixed cost per epoch", "commands"], rows))  # fmt: skip
    return "\n".join(x if x.endswith("\n") else x + "\n" for x in out)
