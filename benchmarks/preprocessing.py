"""Preprocessing benchmark: the whole Beam job against a bare Pillow loop.

    python -m benchmarks.preprocessing --tiny                    # seconds; checks the machinery
    python -m benchmarks.preprocessing --image_dir DIR            # class folders (e.g. ImageNet train/)
    python -m benchmarks.preprocessing --generate 3000            # photo-like 400x350 JPEGs, made first

Both sides do the same per-image work on the same files: read, decode (JPEG
draft mode when shrinking), convert to RGB, resize the shorter side to 256 and
centre-crop, encode JPEG quality 90. The bare loop stops there, in one process.
The job adds everything a real run needs: listing, labels, the shard shuffle,
TFRecord framing and writing, per-image RGB moments and the PCA, rejects and
metadata.json, and Beam's own start-up. "Per core" divides the job's images/s
by the workers it ran: one in-process worker, or one worker process per
usable core (the job's default from 10,000 images on). The target is at least
0.8 of the bare loop per core.
"""
import io
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks import common
from cli import EXIT_OK, EXIT_USAGE, Parser, UsageError, positive_int
from preprocessing import build_tfrecords, demo

IMAGE_SIZE = 256
QUALITY = 90


def _stats(values):
    values = [float(v) for v in values]
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": values}


def list_images(image_dir):
    """Files of a folder of class folders, sorted."""
    return sorted(p for p in Path(image_dir).glob("*/*") if p.is_file())


def bare_loop(files, image_size=IMAGE_SIZE, quality=QUALITY):
    """The reference: one process, plain Pillow, nothing else. Returns seconds."""
    start = time.perf_counter()
    for path in files:
        with open(path, "rb") as f:
            img = Image.open(io.BytesIO(f.read()))
            w, h = img.size
            short = min(w, h)
            if img.format == "JPEG" and short > image_size:
                img.draft("RGB", (-(-w * image_size // short), -(-h * image_size // short)))
            img = img.convert("RGB")
            w, h = img.size
            short = min(w, h)
            left, top = (w - short) / 2.0, (h - short) / 2.0
            img = img.resize((image_size, image_size), Image.BICUBIC, box=(left, top, left + short, top + short))
            out = io.BytesIO()
            img.save(out, format="JPEG", quality=quality)
    return time.perf_counter() - start


def _job(image_dir, out, runner_flags, shards):
    """Runs the job; returns (wall seconds, CPU seconds, examples written)."""
    argv = ["--train_dir", str(image_dir), "--output_dir", str(out), "--overwrite", "--train_shards", str(shards),
            "--image_size", str(IMAGE_SIZE), "--jpeg_quality", str(QUALITY), *runner_flags]
    cpu = common.cpu_seconds(children=True)
    start = time.perf_counter()
    meta = build_tfrecords.run(argv)
    seconds = time.perf_counter() - start
    cpu = common.cpu_seconds(children=True) - cpu
    if meta["rgb"] is None or meta["counts"]["train"] + meta["rejected"]["train"] != meta["inputs"]["train"]:
        raise RuntimeError("the job's counts do not reconcile: %r" % meta)
    return seconds, cpu, meta["counts"]["train"]


# Below this many images only the one-worker job is measured by default: the
# worker processes' start-up would be all it showed (docs/decisions/benchmarks-job-start-up.md).
PROCESSES_FROM_IMAGES = 100


def one_per_class(files, small):
    """Links the first image of each class folder into `small`: the same job on it is the job's
    fixed cost (process start-up, imports, listing, metadata). Returns `small`."""
    if small.exists():
        shutil.rmtree(small)
    for folder in sorted({f.parent for f in files}):
        (small / folder.name).mkdir(parents=True)
        first = sorted(folder.iterdir())[0]
        (small / folder.name / first.name).symlink_to(first.resolve())
    return small


def _mode_figures(runs, workers, written, bare_stats, bare_cpu_stats):
    """One job configuration's figures from its timed runs (see `run_benchmark`)."""
    rate = _stats([written / s for s in runs["full"]])
    startup = _stats(runs["startup"])
    # Subtracting the start-up only means something when the run is much
    # longer than it (1.5x; not on ~100 images): otherwise report n/a.
    steady = [written / (s - startup["median"]) for s in runs["full"] if s > 1.5 * startup["median"]]
    figures = {
        "workers": workers,
        "images_per_s": rate,
        "images_per_s_per_core": _stats([v / workers for v in rate["values"]]),
        "ratio_per_core": rate["median"] / workers / bare_stats["median"],
        "startup_s": startup,
        "steady_ratio_per_core": (statistics.median(steady) / workers / bare_stats["median"]) if steady else None,
        "images_per_cpu_s": _stats([written / c for c in runs["cpu"]]),
        "startup_cpu_s": _stats(runs["startup_cpu"]),
    }
    per_cpu = [written / (c - figures["startup_cpu_s"]["median"]) for c in runs["cpu"]
               if c > 1.5 * figures["startup_cpu_s"]["median"]]  # fmt: skip
    figures["cpu_ratio"] = figures["images_per_cpu_s"]["median"] / bare_cpu_stats["median"]
    figures["steady_cpu_ratio"] = statistics.median(per_cpu) / bare_cpu_stats["median"] if per_cpu else None
    return figures


def run_benchmark(image_dir, work_dir, repeats=3, modes=None):
    """Measures the job and the bare loop side by side on the same images.

    Args:
      image_dir: a folder of class folders (ImageNet's train/ layout).
      work_dir: scratch folder for the job's outputs.
      repeats: timed runs of each configuration (after one untimed warm-up
        pass of the bare loop, which also warms the file cache).
      modes: job configurations to time, from ("one_worker", "processes");
        default both, or only "one_worker" for fewer than 100 images.

    Returns:
      dict: images, cores, default_mode (what the job picks for this input),
      bare_images_per_s (one process: also its per-core figure), and for
      "one_worker" (one in-process worker) and "processes" (one worker process
      per core): images_per_s, images_per_s_per_core and ratio_per_core (to the
      bare loop), startup_s (the same job on one image per class: its fixed
      cost) and steady_ratio_per_core (images/s with that start-up taken off).
      Figures are medians with min and max over `repeats` runs.
      job_images_per_s and ratio_per_core repeat the figures of the mode the
      job itself picks by default for this many images (or the one measured).
    """
    files = list_images(image_dir)
    if not files:
        raise ValueError("run_benchmark expected class folders with images. Received: %s" % image_dir)
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    cores = common.cores()
    shards = max(2 * cores, 4)

    small = one_per_class(files, work / "one_per_class")

    configs = {
        "one_worker": (1, ["--direct_running_mode", "in_memory", "--direct_num_workers", "1"]),
        "processes": (cores, ["--direct_running_mode", "multi_processing", "--direct_num_workers", str(cores)]),
    }
    if modes is None:
        modes = ("one_worker", "processes") if len(files) >= PROCESSES_FROM_IMAGES else ("one_worker",)
    unknown = set(modes) - set(configs)
    if unknown:
        raise ValueError("run_benchmark expected modes from %s. Received: %r" % (sorted(configs), modes))
    configs = {name: configs[name] for name in modes}
    bare_loop(files)  # warm-up: file cache, Pillow's plugins
    bare, bare_cpu = [], []
    runs = {name: {"full": [], "cpu": [], "startup": [], "startup_cpu": []} for name in configs}
    written = None
    for _ in range(repeats):
        cpu = time.process_time()
        bare.append(len(files) / bare_loop(files))
        bare_cpu.append(len(files) / (time.process_time() - cpu))
        for name, (_, flags) in configs.items():
            seconds, cpu, written = _job(image_dir, work / name, flags, shards)
            runs[name]["full"].append(seconds)
            runs[name]["cpu"].append(cpu)
            seconds, cpu, _ = _job(small, work / (name + "_startup"), flags, shards)
            runs[name]["startup"].append(seconds)
            runs[name]["startup_cpu"].append(cpu)
    bare_stats = _stats(bare)
    bare_cpu_stats = _stats(bare_cpu)
    result = {
        "images": len(files),
        "written": written,
        "cores": cores,
        "image_size": IMAGE_SIZE,
        "default_mode": "processes" if len(files) >= build_tfrecords.PROCESSES_FROM_IMAGES else "one_worker",
        "bare_images_per_s": bare_stats,
        # Images per CPU-second hold up on a loaded machine, where wall-clock
        # rates depend on what else runs.
        "bare_images_per_cpu_s": bare_cpu_stats,
    }
    for name, (workers, _) in configs.items():
        result[name] = _mode_figures(runs[name], workers, written, bare_stats, bare_cpu_stats)
    shown = result["default_mode"] if result["default_mode"] in configs else next(iter(configs))
    result["job_images_per_s"] = result[shown]["images_per_s"]
    result["ratio_per_core"] = result[shown]["ratio_per_core"]
    result["job_mode"] = shown
    return result


RENDER_HEADERS = ("what", "workers", "images/s", "images/s per core", "ratio per core to the bare loop", "start-up s",
                  "ratio per core without start-up", "images per CPU-second", "CPU ratio without start-up")  # fmt: skip


def render(result):
    """The stage's markdown table (for BENCHMARKS.md and this module's command)."""
    f = lambda st: "%.1f (%.1f-%.1f)" % (st["median"], st["min"], st["max"])  # noqa: E731
    ratio = lambda value: "n/a" if value is None else "%.2f" % value  # noqa: E731
    rows = [["bare Pillow decode+resize+encode loop", 1, f(result["bare_images_per_s"]), f(result["bare_images_per_s"]),
             "1.00", "-", "-", f(result["bare_images_per_cpu_s"]), "1.00"]]  # fmt: skip
    for name, title in (("one_worker", "the job, one in-process worker"), ("processes", "the job, one worker process per core")):
        if name not in result:
            continue
        r = result[name]
        rows.append([title, r["workers"], f(r["images_per_s"]), f(r["images_per_s_per_core"]), "%.2f" % r["ratio_per_core"],
                     f(r["startup_s"]), ratio(r["steady_ratio_per_core"]), f(r["images_per_cpu_s"]),
                     ratio(r["steady_cpu_ratio"])])  # fmt: skip
    note = ("\n%d images, %d usable cores, output %dx%d, PCA included. The job's default for this many images: %s. "
            "Start-up = the same job on one image per class.\n"
            % (result["images"], result["cores"], IMAGE_SIZE, IMAGE_SIZE, result["default_mode"]))
    return common.markdown_table(RENDER_HEADERS, rows) + note


def make_photo_like(root, count, size=(400, 350), seed=0):
    """`count` JPEGs in 10 class folders: demo figures plus noise, so that they
    compress like photographs (tens of kB at ImageNet's typical 400x350)."""
    root = Path(root)
    for i in range(count):
        c = i % len(demo.CLASSES)
        rng = np.random.default_rng([seed, i])
        img = demo.draw_image(c, rng).resize(size)
        arr = np.asarray(img, np.int16) + rng.normal(0, 12, (size[1], size[0], 3)).astype(np.int16)
        folder = root / demo.CLASSES[c][0]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(folder / ("%d.JPEG" % i), quality=90)
    return root


def build_parser():
    """The flags of `python -m benchmarks.preprocessing`."""
    parser = Parser(prog="python -m benchmarks.preprocessing", description=__doc__.split("\n\n")[0])
    parser.add_argument("--image_dir", help="class folders to convert (default: generated images)")
    parser.add_argument("--generate", type=positive_int, default=3000,
                        help="photo-like images to generate when --image_dir is not given")  # fmt: skip
    parser.add_argument("--work_dir", help="scratch folder (default: a temporary one, removed)")
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--tiny", action="store_true", help="40 small images, 1 repeat: checks the machinery only")
    parser.add_argument("--json", action="store_true", help="print the result dict as JSON too")
    return parser


def main(argv=None):
    """Entry point: prints the stage's table (and the figures as JSON with --json)."""
    try:
        args = build_parser().parse_args(argv)
        if args.image_dir and not Path(args.image_dir).is_dir():
            raise UsageError("--image_dir is not a directory. Received: %s" % args.image_dir)
    except UsageError as err:
        print("python -m benchmarks.preprocessing: error: %s" % err, file=sys.stderr)
        return EXIT_USAGE
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench-preprocessing-"))
    try:
        image_dir = args.image_dir
        if image_dir is None:
            count, size = (40, (120, 100)) if args.tiny else (args.generate, (400, 350))
            image_dir = make_photo_like(work / "images", count, size)
        result = run_benchmark(image_dir, work / "runs", repeats=1 if args.tiny else args.repeats)
        print(render(result), end="")
        if args.json:
            print(json.dumps(result))
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
