"""End to end: `python -m trainer.task` on real shards vs the bare model step.

    python -m benchmarks --stages end_to_end          # the stage, as written to BENCHMARKS.md

Runs the trainer under the default strategy and under mirrored over 2 logical CPU
devices on shards the preprocessing job builds, and compares the trainer's own
images/s with the bare step at the same batch and strategy (`benchmarks.distribute`'s
worker), timed in fresh workers right before and right after each trainer run
(target: at least 0.9).
"""
import os
import re
import subprocess
import sys
import time

from benchmarks import common, distribute
from preprocessing import schema

# The trainer's end-of-epoch log line (trainer/loop.py, `fit`), which ends "| lr <rate> | <speed> images/s".
EPOCH_LINE = re.compile(r"^epoch (\d+)/(\d+) step (\d+): .*\| ([0-9.]+) images/s\s*$")
E2E_STRATEGIES = (("default", 1), ("mirrored", 2))


def stage_settings(tiny, repeats):
    """Sizes of the end-to-end stage: the same batch and input as the distribute stage's float32 rows."""
    base = distribute.stage_settings(tiny, repeats)
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
                "--synsets", os.path.join(meta, "LOC_synset_mapping.txt"),
                "--train_shards", "2", "--val_shards", "1"]  # fmt: skip
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
      settings: `stage_settings`.
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
      settings: `stage_settings`.
      strategy: the trainer's --strategy ("default" or "mirrored").

    Returns:
      (images/s stats, the worker's command).
    """
    name, replicas = ("one", 1) if strategy == "default" else ("mirrored", 2)
    config = dict(device="cpu", strategy=name, replicas=replicas, precision="float32", xla=False)
    args = distribute.worker_args(config, distribute_settings(settings))
    return common.run_worker("benchmarks.distribute", args)["images_per_s"], "python -m benchmarks.distribute " + " ".join(args)


def distribute_settings(settings):
    """The distribute-stage settings that share this stage's batch, input and repeats."""
    return {k: settings[k] for k in ("batch_size", "image_size", "num_classes", "warmup", "repeats", "steps")}


def run_stage(tiny, repeats, work_dir, image_source, log=print):
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
    settings = stage_settings(tiny, repeats)
    data_dir, what = build_shards(image_source, os.path.join(work_dir, "e2e_shards"), tiny, log)
    settings["num_classes"] = schema.load_metadata(data_dir)["num_classes"]
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


def render(stage):
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
