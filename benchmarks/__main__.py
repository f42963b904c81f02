"""`python -m benchmarks`: every stage against its limit and against PyTorch, written to BENCHMARKS.md.

    python -m benchmarks                                   # all stages, 3 repeats, writes BENCHMARKS.md
    python -m benchmarks --stages train,distribute --repeats 5 --output /tmp/b.md
    python -m benchmarks --tiny --output /tmp/tiny.md      # checks the machinery, figures meaningless
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
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks import common, distribute, end_to_end, input_pipeline, preprocessing, targets, training_step
from cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Parser, UsageError, positive_int

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
- A cell that says a framework is not installed or a configuration failed means exactly that: no
  number was measured, none is shown.
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
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: checks the machinery, its figures say nothing")
    parser.add_argument("--output", default="BENCHMARKS.md", help="markdown file to write (default BENCHMARKS.md)")
    parser.add_argument("--stages", type=_stage_list, default=list(STAGES), help="comma-separated: " + ",".join(STAGES))
    parser.add_argument("--repeats", type=positive_int, default=3,
                        help="timed runs per figure, per round for the train stage's default rows (default 3)")
    parser.add_argument("--no_variants", dest="variants", action="store_false",
                        help="train stage: skip the oneDNN / XLA / threads / channels_last investigation")
    parser.add_argument("--image_dir", help="images for the preprocessing and end_to_end stages (class folders); "
                        "default: 3,000 generated 500x375 JPEGs for preprocessing; for end_to_end the "
                        "ImageNet sample beside the checkout when present, else generated images")
    parser.add_argument("--work_dir", help="scratch directory (default: a temporary directory, removed at the end)")
    return parser


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
        return EXIT_USAGE
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
                section = failure_section(stage, err)
            sections.append(section)
            log("%s done in %.0f s" % (stage, time.time() - started))
    finally:
        if not args.work_dir:
            shutil.rmtree(work_dir, ignore_errors=True)
    write_report(output, report_text(args, argv, before, common.describe_machine(), results, sections))
    log("wrote %s%s" % (output, " (failed stages: %s)" % ",".join(failed) if failed else ""))
    return EXIT_FAILED if failed else EXIT_OK


def failure_section(stage, err):
    """The section of a stage that raised: the error's last line, no figure."""
    message = str(err).strip()
    return "### %s\n\nThis stage failed: `%s: %s`\n" % (stage, type(err).__name__, message.splitlines()[-1] if message else "")


def report_text(args, argv, before, after, results, sections):
    """The whole report: introduction, machine, the targets this run measured, the stages' sections."""
    text = INTRO + "\n" + machine_section(before, after, argv) + "\n## Results\n\n"
    if args.tiny:
        text += "**--tiny run: sizes shrunk to check the machinery; these figures say nothing about speed.**\n\n"
    rows = targets.target_rows(results)
    if rows:
        text += "### Targets measured in this run\n\n" + common.markdown_table(["target", "measured", ""], rows) + "\n"
    return text + "\n".join(sections)


def write_report(output, text):
    """Writes beside the target and renames: a crash never leaves a half-written report."""
    with tempfile.NamedTemporaryFile("w", dir=output.parent, prefix=".benchmarks-", suffix=".md", delete=False,
                                     encoding="utf-8") as f:  # fmt: skip
        f.write(text)
    os.replace(f.name, output)


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


def preprocessing_section(args, work_dir, results, log):
    """The preprocessing stage (`benchmarks.preprocessing`): the Beam job vs a bare Pillow loop."""
    if args.image_dir:
        image_dir, what = Path(args.image_dir), "--image_dir %s" % args.image_dir
    else:
        # Not the 100-image sample: the job's fixed start-up would dominate, and a per-core rate says
        # nothing then (docs/decisions/benchmarks-job-start-up.md).
        count = (3, 4) if args.tiny else (10, 300)
        image_dir = make_images(work_dir / "generated_images", count[0], count[1], (96, 72) if args.tiny else (500, 375))
        what = "%d generated %s JPEGs" % (count[0] * count[1], "96x72" if args.tiny else "500x375")
    log("preprocessing: %s" % what)
    stage_dir = work_dir / "preprocessing"
    stage_dir.mkdir(exist_ok=True)
    result = results["preprocessing"] = preprocessing.run_benchmark(str(image_dir), str(stage_dir), repeats=args.repeats)
    return "### Preprocessing (Beam job vs bare Pillow loop)\n\nImages: %s. Reproduce: %s\n\n%s" % (
        what, _stage_command("preprocessing", args), preprocessing.render(result))


def input_section(args, results, log):
    """The input stage (`benchmarks.input_pipeline`): full augmentation vs decode-only on the same records."""
    jpeg_dir = None if args.tiny or sample_root() is None else sample_root() / "train"
    what = ("256x256 records made from the ImageNet sample's train/ photographs" if jpeg_dir
            else "generated photo-like 256x256 records")  # fmt: skip
    log("input: %s" % what)
    if args.tiny:
        result = input_pipeline.run_benchmark(None, batch_size=8, seconds=0.5, repeats=args.repeats, image_size=67,
                                              num_images=64)  # fmt: skip
    else:
        result = input_pipeline.run_benchmark(None, batch_size=128, seconds=10.0, repeats=args.repeats,
                                              jpeg_dir=jpeg_dir and str(jpeg_dir))  # fmt: skip
    results["input"] = result
    return "### Input pipeline (full augmentation vs decode-only)\n\nRecords: %s. Reproduce: %s\n\n%s" % (
        what, _stage_command("input", args), input_pipeline.render(result))


def _stage_command(stage, args):
    """The command that reproduces one stage's section, as the section quotes it."""
    return "`python -m benchmarks --stages %s --repeats %d%s`" % (stage, args.repeats, " --tiny" if args.tiny else "")


def input_rate(results):
    """Images/s of the trainer's input pipeline measured by this run's input stage, or None when it did not run."""
    train = (results.get("input") or {}).get("train")
    return train["images_per_s"]["median"] if train and "images_per_s" in train else None


def run_stage(stage, args, work_dir, results, log):
    """Runs one stage and returns its markdown section; `results` collects raw results for later stages."""
    if stage == "preprocessing":
        return preprocessing_section(args, work_dir, results, log)
    if stage == "input":
        return input_section(args, results, log)
    if stage == "train":
        results["train"] = training_step.run_stage(args.tiny, args.repeats, args.variants, log)
        return training_step.render(results["train"])
    if stage == "distribute":
        results["distribute"] = distribute.run_stage(args.tiny, args.repeats, log)
        return distribute.render(results["distribute"], input_rate(results))
    if stage == "end_to_end":
        root = None if args.tiny else sample_root()
        results["end_to_end"] = end_to_end.run_stage(args.tiny, args.repeats, str(work_dir), root and str(root), log)
        return end_to_end.render(results["end_to_end"])
    raise AssertionError("unhandled stage %r" % stage)


if __name__ == "__main__":
    sys.exit(main())
