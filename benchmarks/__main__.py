"""`python -m benchmarks`: every stage against its limit and against PyTorch, written to BENCHMARKS.md.

    python -m benchmarks                                   # all stages, 3 repeats, writes BENCHMARKS.md
    python -m benchmarks --stages train,distribute --repeats 5 --output /tmp/b.md
    python -m benchmarks --tiny --output /tmp/tiny.md      # ~2 minutes: checks the machinery, figures meaningless
    make bench

Stages (in this order): preprocessing (the Beam job vs a bare Pillow loop),
input (the trainer's tf.data pipeline with full augmentation vs decode-only), train (Keras AlexNet step
vs the same network in PyTorch, against the float32 GEMM ceiling), distribute
(one device vs MirroredStrategy, mixed precision and XLA on and off), end_to_end
(`python -m trainer.task` on real shards vs the bare model step).

Every figure is a median over `--repeats` timed runs after warm-up (the train
stage's default Keras and PyTorch rows: 2 alternating rounds of `--repeats` each,
pooled; the end-to-end stage's bare step: its workers right before and right after each
trainer run, pooled), with min and max, and each table names the command that reproduces it.
Frameworks run in worker processes so that logical devices, oneDNN and thread pools are set per
measurement. The file is written only when the run ends (via a temporary file),
so an interrupted run never leaves a half-written BENCHMARKS.md.
"""
import argparse
import importlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import common, distribute, training_step
from cli import Parser, UsageError, positive_int

STAGES = ("preprocessing", "input", "train", "distribute", "end_to_end")
REPO = Path(__file__).resolve().parents[1]
# Where CI keeps the real ImageNet sample beside the checkout (see the tests); absent on a user's machine.
SHARED_SAMPLE = REPO.parent / "shared" / "data" / "imagenet-sample"

INTRO = """\
# Benchmarks

This file is written by `python -m benchmarks` (or `make bench`), introduction included (it lives in
`benchmarks/__main__.py`): rerun the command instead of editing it.

How to read it:

- Every figure is a **median (min-max)** over repeated timed runs that follow untimed warm-up runs
  (graph tracing, oneDNN primitive creation and memory growth happen in the warm-up). Each table gives
  the exact command that reproduces it, from the repository root.
- Figures are only comparable **within one run** on one machine: the machine description and the load
  average at the start and end of the run are printed first. Absolute images/s drift on shared machines;
  the ratios in the tables (Keras / PyTorch, % of the GEMM ceiling, mirrored / one device, trainer /
  bare step) are measured side by side and hold better.
- The float32 ceiling is the fastest large matrix multiply measured in the same run (TensorFlow, numpy
  or PyTorch). Training GFLOP/s = images/s x training FLOPs per image, estimated from the layer shapes
  as forward multiply-accumulates x 2 x 3 (forward + backward).
- "per core" figures divide by the number of CPUs the process may use.
- A cell that says a framework is not installed, a stage is missing or a configuration failed means
  exactly that: no number was measured, none is shown.
"""


def _stage_list(text):
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in STAGES]
    if unknown or not names:
        raise argparse.ArgumentTypeError("expected a comma-separated subset of %s. Received: %r" % (",".join(STAGES), text))
    return [s for s in STAGES if s in names]  # always the documented order


def build_parser():
    """The flags of `python -m benchmarks`."""
    parser = Parser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: checks the machinery in about two minutes")
    parser.add_argument("--output", default="BENCHMARKS.md", help="markdown file to write (default BENCHMARKS.md)")
    parser.add_argument("--stages", type=_stage_list, default=list(STAGES), help="comma-separated: " + ",".join(STAGES))
    parser.add_argument("--repeats", type=positive_int, default=3, help="timed runs per figure, per round for the train stage's default rows (default 3)")
    parser.add_argument("--no_variants", dest="variants", action="store_false",
                        help="train stage: skip the oneDNN / XLA / threads / channels_last investigation")
    parser.add_argument("--image_dir", help="images for the preprocessing and end_to_end stages (class folders); "
                        "default: 3,000 generated 500x375 JPEGs for preprocessing; for end_to_end the "
                        "ImageNet sample beside the checkout when present, else generated images")
    parser.add_argument("--work_dir", help="scratch directory (default: a temporary directory, removed at the end)")
    return parser


def optional_module(name):
    """A stage module another part of the project provides, or None while it is not on main yet."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name and name.startswith(err.name):
            return None
        raise


def machine_section(before, after, argv):
    """The machine description table."""
    rows = [
        ["CPU", before["cpu"]],
        ["CPUs usable", before["cores"]],
        ["memory", "%.1f GiB" % before["memory_gib"] if before["memory_gib"] else "unknown"],
        ["vector extensions", ", ".join(before["vector_extensions"]) or "none listed"],
        ["OS", before["os"]],
        ["Python", before["python"]],
        ["TensorFlow / Keras", "%s / %s" % (before["tensorflow"], before["keras"])],
        ["PyTorch", before["torch"] or "not installed"],
        ["numpy / apache-beam", "%s / %s" % (before["numpy"], before["apache_beam"])],
        ["TF_ENABLE_ONEDNN_OPTS", common.describe_onednn(before, before["tensorflow_onednn_default"])],
        ["load average (1, 5, 15 min) at start", before["load_average"]],
        ["load average (1, 5, 15 min) at end", after["load_average"]],
        ["started / ended (UTC)", "%s / %s" % (before["utc"], after["utc"])],
        ["command", "`%s`" % common.reproduce_command(argv)],
    ]
    return "## Machine\n\n" + common.markdown_table(["", ""], rows)


def main(argv=None):
    """Runs the requested stages and writes the markdown report.

    Args:
      argv: command-line arguments (default: sys.argv[1:]).

    Returns:
      0 when every stage ran, 1 when a stage failed (its section says why), 2 on a usage error.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        output = Path(args.output)
        if not output.parent.is_dir():
            raise UsageError("the directory of --output does not exist. Received: %s" % args.output)
        if args.image_dir and not Path(args.image_dir).is_dir():
            raise UsageError("--image_dir is not a directory. Received: %s" % args.image_dir)
    except UsageError as err:
        sys.stderr.write("python -m benchmarks: error: %s\n" % err)
        return 2
    log = lambda text: print("[%s] %s" % (time.strftime("%H:%M:%S"), text), flush=True)  # noqa: E731
    work_dir = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="alexnet-bench-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    before = common.describe_machine()
    before["tensorflow_onednn_default"] = common.tensorflow_onednn_default()
    log("machine: %s, %s CPUs, load %s" % (before["cpu"], before["cores"], before["load_average"]))
    sections, failed, results = [], [], {}
    try:
        for stage in args.stages:
            started = time.time()
            try:
                section = run_stage(stage, args, work_dir, results, log)
            except Exception as err:  # noqa: BLE001  a failed stage is reported in the file, the others still run
                failed.append(stage)
                section = "### %s\n\nThis stage failed: `%s: %s`\n" % (stage, type(err).__name__, str(err).strip().splitlines()[-1] if str(err).strip() else "")
            sections.append(section)
            log("%s done in %.0f s" % (stage, time.time() - started))
    finally:
        if not args.work_dir:
            shutil.rmtree(work_dir, ignore_errors=True)
    after = common.describe_machine()
    text = INTRO + "\n" + machine_section(before, after, argv) + "\n## Results\n\n"
    if args.tiny:
        text += "**--tiny run: sizes shrunk to check the machinery; these figures say nothing about speed.**\n\n"
    targets = target_rows(results)
    if targets:
        text += "### Targets of issue 8 measured in this run\n\n" + common.markdown_table(["target", "measured", ""], targets) + "\n"
    text += "\n".join(sections)
    # Write beside the target and rename: a crash never leaves a half-written report.
    with tempfile.NamedTemporaryFile("w", dir=output.parent, prefix=".benchmarks-", suffix=".md", delete=False,
                                     encoding="utf-8") as f:  # fmt: skip
        f.write(text)
    os.replace(f.name, output)
    log("wrote %s%s" % (output, " (failed stages: %s)" % ",".join(failed) if failed else ""))
    return 1 if failed else 0


def sample_root():
    """The ImageNet sample beside the checkout when it is complete (train/, val/, meta/), else None."""
    if all((SHARED_SAMPLE / d).is_dir() for d in ("train", "val", "meta")):
        return SHARED_SAMPLE
    return None


def make_images(dest, classes, per_class, size, seed=0):
    """Writes deterministic random-content JPEGs in class folders (for runs without real images).

    Args:
      dest: directory to create (dest/class_NN/img_MMM.JPEG).
      classes: number of class folders.
      per_class: images per folder.
      size: (width, height) of every image.
      seed: numpy seed.

    Returns:
      dest.
    """
    import numpy as np  # pylint: disable=import-outside-toplevel
    from PIL import Image  # pylint: disable=import-outside-toplevel

    rng = np.random.default_rng(seed)
    width, height = size
    for c in range(classes):
        folder = Path(dest) / ("class_%02d" % c)
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            # Smooth gradients plus noise compress like photographs, not like pure noise.
            base = rng.integers(0, 256, size=3)
            ramp = np.linspace(0, 1, width)[None, :, None] * rng.integers(-128, 128, size=3)
            noise = rng.normal(0, 20, size=(height, width, 3))
            pixels = np.clip(base + ramp + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / ("img_%03d.JPEG" % i), quality=90)
    return Path(dest)


def _generic_render(title, result):
    """A key/value table for a stage module that has no `render` of its own."""
    def cell(value):
        if isinstance(value, dict) and {"median", "min", "max"} <= set(value):
            return common.format_stats(value)
        return json.dumps(value) if isinstance(value, (dict, list)) else value
    rows = [[key, cell(value)] for key, value in result.items()]
    return "### %s\n\n%s" % (title, common.markdown_table(["figure", "value"], rows))


def run_contributed_stage(stage, args, work_dir, results, log):
    """The preprocessing and input stages, measured by their own modules' `run_benchmark`."""
    module_name = {"preprocessing": "benchmarks.preprocessing", "input": "benchmarks.input_pipeline"}[stage]
    title = {"preprocessing": "Preprocessing (Beam job vs bare Pillow loop)",
             "input": "Input pipeline (full augmentation vs decode-only)"}[stage]
    module = optional_module(module_name)
    if module is None or not hasattr(module, "run_benchmark"):
        return "### %s\n\nNot measured: `%s.run_benchmark` is not on main yet.\n" % (title, module_name)
    command = "`python -m benchmarks --stages %s --repeats %d%s`" % (stage, args.repeats, " --tiny" if args.tiny else "")
    if stage == "preprocessing":
        if args.image_dir:
            image_dir, what = Path(args.image_dir), "--image_dir %s" % args.image_dir
        else:
            # Not the 100-image sample: the job's fixed start-up (pipeline construction,
            # about 1.5 s) would dominate, and a per-core rate says nothing then.
            count = (3, 4) if args.tiny else (10, 300)
            image_dir = make_images(work_dir / "generated_images", count[0], count[1], (96, 72) if args.tiny else (500, 375))
            what = "%d generated %s JPEGs" % (count[0] * count[1], "96x72" if args.tiny else "500x375")
        log("preprocessing: %s" % what)
        stage_dir = work_dir / "preprocessing"
        stage_dir.mkdir(exist_ok=True)
        result = results["preprocessing"] = module.run_benchmark(str(image_dir), str(stage_dir), repeats=args.repeats)
        header = "Images: %s. Reproduce: %s\n\n" % (what, command)
    else:
        jpeg_dir = None if args.tiny or sample_root() is None else sample_root() / "train"
        what = ("256x256 records made from the ImageNet sample's train/ photographs" if jpeg_dir
                else "generated photo-like 256x256 records")  # fmt: skip
        log("input: %s" % what)
        if args.tiny:
            result = results["input"] = module.run_benchmark(None, batch_size=8, seconds=0.5, repeats=args.repeats, image_size=67,
                                          num_images=64)  # fmt: skip
        else:
            result = results["input"] = module.run_benchmark(None, batch_size=128, seconds=10.0, repeats=args.repeats,
                                          jpeg_dir=jpeg_dir and str(jpeg_dir))  # fmt: skip
        header = "Records: %s. Reproduce: %s\n\n" % (what, command)
    # The stage's own module knows its figures best; then the input layout this file knows; then key/value.
    if hasattr(module, "render"):
        return "### %s\n\n%s%s" % (title, header, module.render(result))
    if stage == "input" and {"train", "decode_only", "train_over_decode_only", "cores"} <= set(result):
        return "### %s\n\n%s%s" % (title, header, render_input(result))
    text = _generic_render(title, result)
    return text.replace("\n\n", "\n\n" + header, 1)


INPUT_ROWS = (
    ("train", "full training augmentation, as the trainer reads it (pixel finish in the train step)"),
    ("train_host", "full training augmentation, all in tf.data (--augment_on_host)"),
    ("decode_only", "decode only (same records)"),
)


def render_input(result):
    """The input-pipeline table from `benchmarks.input_pipeline.run_benchmark`'s result."""
    cores = result["cores"]
    rows = []
    names = [(name, label) for name, label in INPUT_ROWS if name in result]
    cpu_seconds = all("images_per_cpu_second" in result[name] for name, _ in names)
    for name, label in names:
        r = result[name]
        rows.append([label, common.format_stats(r["images_per_s"], 0), common.format_stats(r["images_per_s_per_core"], 0)])
        if cpu_seconds:
            rows[-1].append(common.format_stats(r["images_per_cpu_second"], 0))
    targets = result.get("targets", {})
    per_core = result["train"]["images_per_s_per_core"]["median"]
    ratio = result["train_over_decode_only"]
    text = ("Batch %d, crop %d, %d alternating runs of %.1f s per pipeline after warm-up, %d CPUs.\n\n"
            % (result["batch_size"], result["image_size"], result["repeats"], result["seconds_per_run"], cores))
    headers = ["pipeline", "images/s", "images/s per core"] + (["images per CPU-second of the pipeline"] if cpu_seconds else [])
    text += common.markdown_table(headers, rows)
    finish = result.get("finish_on_this_cpu")
    if finish:
        text += (
            "\nThe trainer's input stops at the uint8 crops and each batch's random draws (flips, PCA noise and mean "
            "as one RGB offset per image); `input_pipeline.finish_crops` applies them at the start of the train step, "
            "on the accelerator, in one XLA-fused pass, and the host sends a quarter of the bytes of float32. On this "
            "CPU that pass runs at %s images/s (%.1f ms per batch of %d); on a CPU-only machine it shares the cores "
            "with the step, which the end-to-end table below includes.\n"
            % (common.format_stats(finish["images_per_s"], 0), finish["ms_per_batch"], result["batch_size"])
        )
    if "train_over_decode_only_cpu" in result:
        text += "\nPer CPU-second of the pipeline's threads, full augmentation / decode-only: %.2f.\n" % (
            result["train_over_decode_only_cpu"])
    if "train_host_over_decode_only" in result:
        text += "\nAll in tf.data / decode-only: %.2f (%.2f per CPU-second).\n" % (
            result["train_host_over_decode_only"], result["train_host_over_decode_only_cpu"])
    text += ("\nFull augmentation / decode-only: **%.2f** (target >= %s: %s). Per core: **%.0f** images/s "
             "(target >= %s: %s).\n" % (ratio, targets.get("ratio", 0.8), "met" if ratio >= targets.get("ratio", 0.8)
                                          else "missed", per_core, targets.get("per_core", 1200),
                                          "met" if per_core >= targets.get("per_core", 1200) else "missed"))  # fmt: skip
    return text


def _verdict(value, target):
    return "met" if value >= target else "**missed**"


def target_rows(results):
    """One row per target of the issue that this run measured: (target, measured, verdict)."""
    rows = []
    pre = results.get("preprocessing")
    if pre and "ratio_per_core" in pre:
        mode = pre.get(pre.get("job_mode")) or {}
        steady = mode.get("steady_ratio_per_core", pre.get("steady_ratio_per_core"))
        measured = "%.2f" % pre["ratio_per_core"]
        if steady is not None:
            measured += " (%.2f without the job's start-up)" % steady
        if pre.get("job_mode"):
            measured += ", job mode %s" % pre["job_mode"]
        rows.append(["Beam job >= 0.8 of the bare Pillow loop, per core", measured, _verdict(pre["ratio_per_core"], 0.8)])
    inp = results.get("input")
    if inp and "train_over_decode_only" in inp:
        per_core = inp["train"]["images_per_s_per_core"]["median"]
        rows.append(["input, full augmentation >= 1,200 images/s per core", "%.0f" % per_core, _verdict(per_core, 1200)])
        ratio = inp["train_over_decode_only"]
        measured = "%.2f" % ratio
        if "train_host_over_decode_only" in inp:
            # The trainer's pipeline leaves the fused flip/scale/noise/mean pass to the
            # train step on the accelerator; say what it gives with that pass on the host.
            measured += (" (the trainer's host pipeline; %.2f with the fused pixel pass in tf.data too, "
                         "--augment_on_host)" % inp["train_host_over_decode_only"])  # fmt: skip
        rows.append(["input, full augmentation >= 0.8 of decode-only", measured, _verdict(ratio, 0.8)])
    train = results.get("train")
    if train:
        keras_run, torch_run, best = train["keras"], train["torch"], training_step.ceiling(train)
        gflop = train["flops"]["estimate"] / 1e9
        for batch in train["settings"]["batch_sizes"]:
            k = keras_run.get("batches", {}).get(str(batch))
            t = torch_run.get("batches", {}).get(str(batch))
            if k and t:
                ratio = k["median"] / t["median"]
                rows.append(["Keras step >= 1.3x PyTorch, batch %d" % batch, "%.2fx" % ratio, _verdict(ratio, 1.3)])
            elif k:
                rows.append(["Keras step >= 1.3x PyTorch, batch %d" % batch, torch_run.get("unavailable") or
                             "PyTorch run failed", "not measured"])  # fmt: skip
            if k and best:
                share = k["median"] * gflop / best[0]["median"]
                measured = "%.0f%%" % (100 * share)
                convs = training_step.conv_summary(train, batch)
                if convs:
                    measured += " (its convolutions, each op timed by itself: %.0f%%)" % (100 * convs["share_of_ceiling"])
                rows.append(["Keras step >= 80%% of the float32 GEMM ceiling, batch %d" % batch, measured,
                             _verdict(share, 0.8)])  # fmt: skip
    e2e = results.get("end_to_end")
    if e2e:
        for run in e2e["runs"]:
            name = "trainer.task >= 0.9 of the bare step, %s" % run["strategy"]
            if "error" in run:
                rows.append([name, "run failed", "not measured"])
            else:
                ratio = run["trainer"]["median"] / run["bare"]["median"]
                rows.append([name, "%.2f" % ratio, _verdict(ratio, 0.9)])
    return rows


def input_rate(results):
    """Images/s of the trainer's input pipeline measured by this run's input stage, or None when it did not run."""
    train = (results.get("input") or {}).get("train")
    return train["images_per_s"]["median"] if train and "images_per_s" in train else None


def run_stage(stage, args, work_dir, results, log):
    """Runs one stage and returns its markdown section; `results` collects raw results for later stages."""
    if stage in ("preprocessing", "input"):
        return run_contributed_stage(stage, args, work_dir, results, log)
    if stage == "train":
        results["train"] = training_step.run_stage(args.tiny, args.repeats, args.variants, log)
        return training_step.render(results["train"])
    if stage == "distribute":
        results["distribute"] = distribute.run_stage(args.tiny, args.repeats, log)
        return distribute.render(results["distribute"], input_rate(results))
    if stage == "end_to_end":
        if importlib.util.find_spec("trainer.task") is None:
            return "### End to end\n\nNot measured: `trainer/task.py` is not on main yet.\n"
        root = None if args.tiny else sample_root()
        results["end_to_end"] = distribute.run_end_to_end(args.tiny, args.repeats, str(work_dir), root and str(root), log)
        return distribute.render_end_to_end(results["end_to_end"])
    raise AssertionError("unhandled stage %r" % stage)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
