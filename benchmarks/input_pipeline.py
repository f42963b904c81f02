"""Input pipeline throughput: the trainer's pipeline with full training augmentation vs decode-only, same records.

    python -m benchmarks.input_pipeline                 # generated 256x256 shards, 3 x 10 s each
    python -m benchmarks.input_pipeline --tiny          # a few seconds, to check it runs
    python -m benchmarks.input_pipeline --data_dir DIR  # existing train-*-of-* shards
    python -m benchmarks.input_pipeline --jpeg_dir DIR  # shards made from your JPEGs (256x256)

The pipelines read the same TFRecords with the same interleave and parallelism:
  train:       what the trainer reads (make_dataset(training=True,
               finish_on_device=True)): shuffle, random 227 crop decoded with
               decode_and_crop_jpeg, the batch's random draws (flips, PCA noise
               and mean as one RGB offset per image). The pixel work of those
               (mirror, scale, offset: `finish_crops`, one fused XLA pass) runs
               in the train step, on the accelerator; its cost on this CPU is
               measured on its own and reported beside the pipelines.
  train_host:  the same with that pixel work in tf.data too (--augment_on_host).
  decode_only: parse + full tf.io.decode_jpeg of the stored image + batch, nothing else.
Each is timed `repeats` times for `seconds` after a warm-up, alternating, and the
median, min and max images/s are reported, also per CPU core. The targets:
train >= 1,200 images/s per core and >= 0.8 of decode_only, judged on wall-clock
rates. The machine's load average is reported too: other processes on the
machine lower both figures. So each run also reports images per CPU-second of
this process (all its threads): what one core gives the pipeline when it has
the core to itself, a figure that other jobs on the machine disturb much less.
"""
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf

from benchmarks import common
from cli import EXIT_OK, EXIT_USAGE, Parser, UsageError, positive_float, positive_int
from preprocessing import schema
from trainer import data_info, datasets, shard_reader

TARGET_PER_CORE = 1200
TARGET_RATIO = 0.8
STORED = 256


def _synthetic_image(rng):
    """A photo-like 256x256 image: smooth colour fields, edges and mild noise.

    Pure noise would make JPEGs several times larger (and slower to decode)
    than photographs; this gives sizes close to resized ImageNet images.
    """
    low = rng.uniform(0, 255, (8, 8, 3)).astype(np.float32)
    image = tf.image.resize(low[np.newaxis], [STORED, STORED], method="bicubic")[0].numpy()
    for _ in range(3):  # a few hard-edged rectangles
        y, x = rng.integers(0, STORED - 32, 2)
        h, w = rng.integers(16, 128, 2)
        image[y : y + h, x : x + w] = rng.uniform(0, 255, 3)
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _jpeg_images(jpeg_dir):
    """JPEGs of a folder and its subfolders (one level), resized (shorter side 256) and centre-cropped."""
    candidates = tf.io.gfile.glob(os.path.join(jpeg_dir, "*")) + tf.io.gfile.glob(os.path.join(jpeg_dir, "*", "*"))
    for path in sorted(p for p in set(candidates) if p.lower().endswith((".jpeg", ".jpg"))):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        h, w = image.shape[0], image.shape[1]
        scale = STORED / min(h, w)
        image = tf.image.resize(image, [max(STORED, round(h * scale)), max(STORED, round(w * scale))], antialias=True)
        image = tf.image.resize_with_crop_or_pad(image, STORED, STORED)
        yield tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8).numpy()


def write_shards(directory, num_images=2048, num_shards=8, jpeg_dir=None, seed=0):
    """Writes 256x256 JPEG training shards and a metadata.json for the benchmark.

    Args:
      directory: output directory.
      num_images: records to write (cycled from jpeg_dir's images when given).
      num_shards: shard files.
      jpeg_dir: folder of JPEGs to use instead of generated images.
      seed: generator seed.

    Returns:
      Mean JPEG size in bytes.
    """
    rng = np.random.default_rng(seed)
    if jpeg_dir:
        source = list(_jpeg_images(jpeg_dir))
        if not source:
            raise ValueError("--jpeg_dir %s holds no .jpeg/.jpg files" % jpeg_dir)
        encoded = [tf.io.encode_jpeg(im, quality=90).numpy() for im in source]
    else:
        encoded = [tf.io.encode_jpeg(_synthetic_image(rng), quality=90).numpy() for _ in range(min(num_images, 256))]
    writers = [
        tf.io.TFRecordWriter(os.path.join(directory, schema.shard_name(schema.TRAIN, i, num_shards)))
        for i in range(num_shards)
    ]
    for i in range(num_images):
        example = schema.make_example(encoded[i % len(encoded)], i % 10, STORED, STORED)
        writers[i % num_shards].write(schema.serialize_example(example))
    for writer in writers:
        writer.close()
    meta = {
        "format_version": schema.METADATA_FORMAT_VERSION,
        "num_classes": 10,
        "label_offset": 0,
        "synsets": [],
        "class_names": [],
        "image_size": STORED,
        "counts": {schema.TRAIN: num_images, schema.VALIDATION: 0},
        "rgb": {
            "pixel_scale": "[0, 1]",
            "mean": list(schema.IMAGENET_RGB_MEAN),
            "eigenvalues": list(schema.IMAGENET_EIGENVALUES),
            "eigenvectors": [list(r) for r in schema.IMAGENET_EIGENVECTORS],
        },
    }
    with tf.io.gfile.GFile(os.path.join(directory, schema.METADATA_FILE), "w") as f:
        json.dump(meta, f)
    return float(np.mean([len(e) for e in encoded]))


def decode_only_dataset(data_dir, batch_size):
    """The baseline: same shards, interleave and parallelism; parse and full decode only."""
    files = shard_reader.list_shards(data_dir, schema.TRAIN)
    spec = {schema.ENCODED: schema.FEATURE_SPEC[schema.ENCODED], schema.LABEL: schema.FEATURE_SPEC[schema.LABEL]}

    def parse(records):  # parsed in chunks, as make_dataset does: the cheaper way
        features = tf.io.parse_example(records, spec)
        return features[schema.ENCODED], tf.cast(features[schema.LABEL], tf.int32)

    def decode(encoded, label):
        image = tf.io.decode_jpeg(encoded, channels=3)
        image.set_shape([STORED, STORED, 3])
        return image, label

    def read(path):
        return tf.data.TFRecordDataset(path).batch(64).map(parse).unbatch()

    ds = tf.data.Dataset.from_tensor_slices(files).interleave(
        read, cycle_length=min(len(files), 16), num_parallel_calls=tf.data.AUTOTUNE, deterministic=False,
    )
    ds = ds.repeat().map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def _rate(ds, batch_size, seconds, warmup_batches):
    """(images per wall second, images per CPU second of this process) over `seconds`."""
    iterator = iter(ds)
    for _ in range(warmup_batches):  # fills the shuffle buffer and lets autotuning settle
        next(iterator)
    count, start, cpu = 0, time.perf_counter(), common.cpu_seconds()
    while time.perf_counter() - start < seconds:
        next(iterator)
        count += batch_size
    wall, cpu = time.perf_counter() - start, common.cpu_seconds() - cpu
    return count / wall, count / cpu


def finish_rate(batch_size, image_size, seconds=3.0, repeats=3):
    """Images/s of the train step's part of the augmentation on this CPU.

    `trainer.datasets.finish_crops` (mirror, scale to [0, 1], add the RGB
    offset; one XLA-fused pass) on a batch of random uint8 crops, over and over
    for `seconds`, after one untimed call that compiles it. On an accelerator
    this runs there; on a CPU-only machine it shares the cores with the step.

    Returns:
      {"images_per_s": median/min/max stats, "ms_per_batch": median}.
    """
    rng = np.random.default_rng(0)
    images = tf.constant(rng.integers(0, 256, (batch_size, image_size, image_size, 3), dtype=np.uint8))
    labels = tf.zeros([batch_size], tf.int32)
    flips = tf.constant(rng.random(batch_size) < 0.5)
    offsets = tf.constant(rng.normal(0, 0.1, (batch_size, 3)).astype(np.float32))
    finish = tf.function(datasets.finish_crops)
    finish(images, labels, flips, offsets)[0].numpy()
    rates = []
    for _ in range(repeats):
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            finish(images, labels, flips, offsets)[0].numpy()  # .numpy(): wait for the result
            count += batch_size
        rates.append(count / (time.perf_counter() - start))
    median = statistics.median(rates)
    return {
        "images_per_s": {"median": median, "min": min(rates), "max": max(rates), "runs": rates},
        "ms_per_batch": 1000.0 * batch_size / median,
    }


def _summary(runs, cores):
    rates = [wall for wall, _ in runs]
    cpu_rates = [cpu for _, cpu in runs]
    median = statistics.median(rates)
    return {
        "images_per_s": {"median": median, "min": min(rates), "max": max(rates), "runs": rates},
        "images_per_s_per_core": {"median": median / cores, "min": min(rates) / cores, "max": max(rates) / cores},
        # Images per CPU-second used by the pipeline's own threads: what one
        # core delivers when the pipeline has it to itself. On a machine shared
        # with other jobs this is steadier than wall-clock rate / cores.
        "images_per_cpu_second": {
            "median": statistics.median(cpu_rates), "min": min(cpu_rates), "max": max(cpu_rates), "runs": cpu_rates,
        },
    }


def run_benchmark(data_dir=None, batch_size=128, seconds=10.0, repeats=3, image_size=227, num_images=2048,
                  jpeg_dir=None, warmup_batches=None):
    """Measures images/s of the training pipeline (as the trainer reads it, and all in tf.data)
    and of decode-only on the same records, and the train step's pixel pass on this CPU.

    Args:
      data_dir: directory with train-*-of-* shards (and metadata.json, or the
        ImageNet constants are used with 1000 classes); None to generate 256x256 shards.
      batch_size: batch size of both pipelines.
      seconds: timed seconds per run.
      repeats: runs of each pipeline (alternating).
      image_size: crop side of the training pipeline.
      num_images: records to generate when data_dir is None.
      jpeg_dir: when generating, make the records from these JPEGs.
      warmup_batches: untimed batches before each run (default: enough to cycle the shuffle buffer once).

    Returns:
      Dict of the figures, targets and the machine's load average.
    """
    cores = common.cores()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        jpeg_bytes = None
        if data_dir is None:
            data_dir = tmp
            jpeg_bytes = write_shards(tmp, num_images, jpeg_dir=jpeg_dir)
        if tf.io.gfile.exists(os.path.join(data_dir, schema.METADATA_FILE)):
            info = data_info.read_data_info(data_dir)
        else:
            info = data_info.read_data_info(data_dir, label_offset=1, num_classes=1000)
        count = info.counts.get(schema.TRAIN) or 10_000
        shuffle_buffer = min(count, datasets.DEFAULT_SHUFFLE_BUFFER)
        if warmup_batches is None:
            warmup_batches = max(2, shuffle_buffer // batch_size)
        runs = {"train": [], "train_host": [], "decode_only": []}
        for _ in range(repeats):
            for name in runs:
                if name == "decode_only":
                    ds = decode_only_dataset(data_dir, batch_size)
                else:
                    ds = datasets.make_dataset(
                        data_dir, schema.TRAIN, batch_size, training=True, image_size=image_size, info=info, seed=0,
                        shuffle_buffer=shuffle_buffer, finish_on_device=name == "train",
                    )
                runs[name].append(_rate(ds, batch_size, seconds, warmup_batches))
        finish = finish_rate(batch_size, image_size, seconds=min(seconds, 3.0), repeats=repeats)
    summaries = {name: _summary(rates, cores) for name, rates in runs.items()}
    train, decode = summaries["train"], summaries["decode_only"]
    ratio = train["images_per_s"]["median"] / decode["images_per_s"]["median"]
    cpu_ratio = train["images_per_cpu_second"]["median"] / decode["images_per_cpu_second"]["median"]
    host = summaries["train_host"]
    return {
        "cores": cores,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "batch_size": batch_size,
        "image_size": image_size,
        "seconds_per_run": seconds,
        "repeats": repeats,
        "jpeg_bytes_mean": jpeg_bytes,
        "records": ("generated from %s" % jpeg_dir if jpeg_dir else "generated") if jpeg_bytes else data_dir,
        "train": train,
        "train_host": host,
        "decode_only": decode,
        "finish_on_this_cpu": finish,
        "train_over_decode_only": ratio,
        "train_over_decode_only_cpu": cpu_ratio,
        "train_host_over_decode_only": host["images_per_s"]["median"] / decode["images_per_s"]["median"],
        "train_host_over_decode_only_cpu": host["images_per_cpu_second"]["median"] / decode["images_per_cpu_second"]["median"],
        "targets": {"per_core": TARGET_PER_CORE, "ratio": TARGET_RATIO},
        "meets_per_core": train["images_per_s_per_core"]["median"] >= TARGET_PER_CORE,
        "meets_ratio": ratio >= TARGET_RATIO,
        "tensorflow": tf.__version__,
    }


INPUT_ROWS = (
    ("train", "full training augmentation, as the trainer reads it (pixel finish in the train step)"),
    ("train_host", "full training augmentation, all in tf.data (--augment_on_host)"),
    ("decode_only", "decode only (same records)"),
)


def render(result):
    """The stage's markdown (for BENCHMARKS.md and this module's command) from `run_benchmark`'s result."""
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
            "as one RGB offset per image); `trainer.datasets.finish_crops` applies them at the start of the train step, "
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


def build_parser():
    """The flags of `python -m benchmarks.input_pipeline`."""
    parser = Parser(prog="python -m benchmarks.input_pipeline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", default=None, help="existing shards; default: generate 256x256 shards")
    parser.add_argument("--jpeg_dir", default=None, help="generate the shards from these JPEGs")
    parser.add_argument("--batch_size", type=positive_int, default=128)
    parser.add_argument("--seconds", type=positive_float, default=10.0)
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--image_size", type=positive_int, default=227)
    parser.add_argument("--num_images", type=positive_int, default=2048)
    parser.add_argument("--tiny", action="store_true", help="seconds, not minutes: 1 s runs on 256 records")
    parser.add_argument("--json", default=None, help="also write the result dict here")
    return parser


def main(argv=None):
    """Entry point: prints the stage's tables (and writes the figures as JSON with --json)."""
    try:
        args = build_parser().parse_args(argv)
        if args.tiny:
            args.seconds, args.repeats, args.num_images, args.batch_size = 1.0, 1, 256, 32
        try:
            result = run_benchmark(
                args.data_dir, args.batch_size, args.seconds, args.repeats, args.image_size, args.num_images, args.jpeg_dir
            )
        except (ValueError, FileNotFoundError) as err:
            raise UsageError(str(err)) from err
    except UsageError as err:
        print("python -m benchmarks.input_pipeline: error: %s" % err, file=sys.stderr)
        return EXIT_USAGE
    print(render(result), end="")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
