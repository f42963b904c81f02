"""Builds TFRecord shards and RGB PCA statistics from an ImageNet download.

Class folders or the official tars, on all local cores with no download:

    python -m preprocessing.build_tfrecords \\
        --train_dir ILSVRC2012_img_train.tar --val_dir ILSVRC2012_img_val.tar \\
        --val_labels ILSVRC2012_validation_ground_truth.txt --devkit_classes map_clsloc.txt \\
        --synsets LOC_synset_mapping.txt --output_dir /data/imagenet-tfrecords

The synthetic demo set (generated into OUTPUT/source/, then converted):

    python -m preprocessing.build_tfrecords --demo --output_dir /tmp/demo-records

On Dataflow, add Beam's usual flags (every path may be gs://):

    --runner DataflowRunner --project P --region R --temp_location gs://B/tmp --setup_file ./setup.py

Writes OUTPUT/train-00000-of-01024 ..., validation-00000-of-00128 ..., rejects.tsv
(path, split, reason for every input that could not become an example),
labels_without_images.txt, and metadata.json last. Exit code 2 and one line on
stderr for a user mistake.
"""
import argparse
import json
import logging
import os
import sys
import time

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options import pipeline_options

from preprocessing import demo, fields, images, pipeline, shards, sources, stats

_PROG = "build_tfrecords"
DEFAULT_TRAIN_SHARDS, DEFAULT_VAL_SHARDS = 1024, 128  # the TensorFlow ImageNet shard counts
DEMO_TRAIN_SHARDS, DEMO_VAL_SHARDS = 8, 2  # ~160 demo images a shard, not 1024 nearly empty shards
DEMO_SOURCE = "source"  # demo inputs go to OUTPUT/source/, outside the shard namespace
# From this many input images on, the default local runner uses one worker
# process per core; below it, one in-process worker, which converts the most
# images per CPU-second. Measured on 2 cores (benchmarks/preprocessing.py,
# 3,000 400x350 JPEGs), since the job stopped importing TensorFlow: the two
# worker processes start in about 2.5 s (3.7 CPU-s) against 0.5 s in-process,
# then convert about 1.65x faster on the wall clock, but at 0.7x the images
# per CPU-second (records travel between the runner and its workers). So on
# an idle machine they finish first from about 2,000 images on; below 10,000
# the default keeps to one core at full efficiency.
PROCESSES_FROM_IMAGES = 10_000


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise sources.UserError(message)


def _parser():
    parser = _Parser(prog="python -m preprocessing.build_tfrecords", description=__doc__.split("\n\n")[0])
    parser.add_argument("--train_dir", help="class folders train/<synset>/*, or ILSVRC2012_img_train.tar")
    parser.add_argument("--val_dir", help="a flat folder, class folders, or ILSVRC2012_img_val.tar")
    parser.add_argument(
        "--val_labels",
        help="labels of a flat --val_dir: ILSVRC2012_validation_ground_truth.txt (needs --devkit_classes), "
        "one synset per line, '<file> <synset>' lines, or LOC_val_solution.csv",
    )
    parser.add_argument("--devkit_classes", help="the devkit's map_clsloc.txt (devkit ID -> synset)")
    parser.add_argument(
        "--synsets",
        help="class list (LOC_synset_mapping.txt or one synset per line); labels index its SORTED synsets. "
        "Default: the sorted class folders of --train_dir",
    )
    parser.add_argument("--output_dir", help="where shards and metadata.json go (local or gs://)")
    parser.add_argument("--train_shards", type=int, help="default %d (%d with --demo)" % (DEFAULT_TRAIN_SHARDS, DEMO_TRAIN_SHARDS))
    parser.add_argument("--val_shards", type=int, help="default %d (%d with --demo)" % (DEFAULT_VAL_SHARDS, DEMO_VAL_SHARDS))
    parser.add_argument(
        "--image_size", type=int, default=256,
        help="shorter side resized to this, then centre-cropped square (the paper's 256); 0 keeps the original size",
    )
    parser.add_argument("--keep_size", action="store_true", help="same as --image_size 0")
    parser.add_argument("--jpeg_quality", type=int, default=images.DEFAULT_JPEG_QUALITY, help="quality of re-encoded JPEGs")
    parser.add_argument(
        "--max_image_pixels", type=int, default=images.DEFAULT_MAX_PIXELS,
        help="images with more pixels are rejected as decompression bombs before decoding",
    )
    parser.add_argument(
        "--max_reject_fraction", type=float, default=0.1,
        help="fail (no metadata.json) when a split rejects more than this fraction of its inputs",
    )
    parser.add_argument(
        "--stats_stride", type=int, default=stats.DEFAULT_STRIDE,
        help="RGB statistics over every Nth row and column of each stored training image (1 = every pixel)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace this job's files in a non-empty --output_dir")
    parser.add_argument("--demo", action="store_true", help="generate the synthetic demo set into OUTPUT/%s and convert it" % DEMO_SOURCE)
    parser.add_argument("--demo_train_per_class", type=int, default=130)
    parser.add_argument("--demo_val_per_class", type=int, default=30)
    parser.add_argument("--demo_seed", type=int, default=0)
    return parser


def _check_beam_flags(beam_args):
    """parse_known_args hands every flag it does not know to Beam, and Beam
    silently drops flags IT does not know either: a typo (--trian_dir) would
    vanish. Parse them with all of Beam's option classes and refuse leftovers.
    A bad value raises UserError (one line), not argparse's usage of every
    Beam flag."""
    parser = _Parser(allow_abbrev=False, add_help=False)
    seen = set()
    for cls in pipeline_options.PipelineOptions.__subclasses__():
        if str(cls) not in seen:
            seen.add(str(cls))
            cls._add_argparse_args(parser)  # pylint: disable=protected-access
    try:
        _, unknown = parser.parse_known_args(beam_args)
    except sources.UserError as err:
        raise sources.UserError("bad Beam flag: %s" % err) from err
    if unknown:
        raise sources.UserError("unknown flag(s): %s (see --help)" % " ".join(unknown))


def _beam_options(beam_args, estimated_images):
    """Beam's flags, with an offline local default runner.

    The default is Beam's FnApiRunner (never the DirectRunner: it tries to
    download the Prism binary). Large inputs get one worker process per core;
    small ones one in-process worker, because worker processes pay a fixed
    start-up (Python and Beam imports, about 2.5 s on 2 cores) and move every
    record between processes, so they convert fewer images per CPU-second (see
    PROCESSES_FROM_IMAGES and benchmarks/preprocessing.py).
    --direct_running_mode/--direct_num_workers override the choice.
    """
    args = list(beam_args)
    given = {a.split("=", 1)[0] for a in args if a.startswith("--")}
    if "--runner" not in given:
        args.append("--runner=FnApiRunner")
        large = estimated_images is None or estimated_images >= PROCESSES_FROM_IMAGES
        if "--direct_running_mode" not in given:
            args.append("--direct_running_mode=%s" % ("multi_processing" if large else "in_memory"))
        if "--direct_num_workers" not in given:
            args.append("--direct_num_workers=%d" % (0 if large else 1))  # 0 = one worker per core
    return pipeline_options.PipelineOptions(args)


def estimated_images(cfg):
    """Images the job will read, estimated cheaply at launch (None = unknown)."""
    total = 0
    for source in (cfg.train, cfg.val):
        if source:
            count = sources.estimate_count(*source)
            if count is None:
                return None
            total += count
    return total


def _check_output(output_dir, overwrite):
    """Refuses a file, or a non-empty output dir without --overwrite. Deletes
    nothing. Returns the dir's entries."""
    if "://" not in output_dir and os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise sources.UserError("--output_dir is a file, not a folder. Received: %s" % output_dir)
    entries = shards.directory_entries(output_dir)
    if entries and not overwrite:
        raise sources.UserError(
            "--output_dir %s is not empty (%d entries, e.g. %s); pass --overwrite to replace this job's files"
            % (output_dir, len(entries), entries[0])
        )
    return entries


def _prepare_output(output_dir, overwrite):
    """Refuses a non-empty output dir unless --overwrite; with it, deletes this
    job's previous files (metadata.json first) so no stale shard survives.

    Destructive: call it only once every flag and input has been validated,
    right before the job writes (a typo must never cost an existing data set).
    """
    entries = _check_output(output_dir, overwrite)
    if entries:
        previous = shards.output_files(output_dir)
        if previous:
            FileSystems.delete(previous)
    if "://" not in output_dir:
        os.makedirs(output_dir, exist_ok=True)


def _configure(args, beam_args):
    """Validates flags and inputs (user errors raise UserError) -> JobConfig.

    With --overwrite, the previous output is deleted only after everything
    has been validated (for --demo: right before generating its inputs).
    """
    _check_beam_flags(beam_args)
    if not args.output_dir:
        raise sources.UserError("--output_dir is required")
    for flag in ("train_shards", "val_shards", "demo_train_per_class", "demo_val_per_class", "stats_stride"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise sources.UserError("--%s must be >= 1. Received: %d" % (flag, value))
    if args.image_size < 0:
        raise sources.UserError("--image_size must be >= 0 (0 keeps the size). Received: %d" % args.image_size)
    if not 1 <= args.jpeg_quality <= 100:
        raise sources.UserError("--jpeg_quality must be in 1..100. Received: %d" % args.jpeg_quality)
    if not 0.0 <= args.max_reject_fraction <= 1.0:
        raise sources.UserError("--max_reject_fraction must be in [0, 1]. Received: %g" % args.max_reject_fraction)
    if args.max_image_pixels < 1:
        raise sources.UserError("--max_image_pixels must be >= 1. Received: %d" % args.max_image_pixels)
    if args.demo and (args.train_dir or args.val_dir or args.val_labels or args.synsets or args.devkit_classes):
        raise sources.UserError("--demo generates its own inputs; drop --train_dir/--val_dir/--val_labels/--synsets/--devkit_classes")
    if args.demo and "://" in args.output_dir:
        raise sources.UserError("--demo draws its images on this machine: give a local --output_dir. Received: %s" % args.output_dir)
    if not args.demo and not (args.train_dir or args.val_dir):
        raise sources.UserError("nothing to do: pass --train_dir and/or --val_dir (or --demo)")

    _check_output(args.output_dir, args.overwrite)  # refuse early; delete nothing yet
    if args.demo:
        # Every flag is checked and the demo's inputs are our own: replace the
        # previous output only now, right before generating.
        _prepare_output(args.output_dir, args.overwrite)
        generated = demo.generate(
            os.path.join(args.output_dir, DEMO_SOURCE), args.demo_train_per_class, args.demo_val_per_class, args.demo_seed
        )
        args.train_dir, args.val_dir = generated["train_dir"], generated["val_dir"]
        args.synsets, args.val_labels = generated["synsets"], generated["val_labels"]
        args.train_shards = args.train_shards or DEMO_TRAIN_SHARDS
        args.val_shards = args.val_shards or DEMO_VAL_SHARDS

    train = (args.train_dir, sources.describe_source(args.train_dir, "--train_dir")) if args.train_dir else None
    if train and train[1] == "flat":
        raise sources.UserError("--train_dir must hold class folders (train/<synset>/*) or be a .tar. Received: %s" % args.train_dir)
    val = (args.val_dir, sources.describe_source(args.val_dir, "--val_dir")) if args.val_dir else None
    flat_val = val is not None and (val[1] == "flat" or (val[1] == "tar" and sources.tar_is_flat(val[0])))

    id_to_synset, devkit_names = (None, {})
    if args.devkit_classes:
        id_to_synset, devkit_names = sources.read_devkit_classes(args.devkit_classes)
    val_labels = None
    if args.val_labels:
        if not val:
            raise sources.UserError("--val_labels needs --val_dir")
        val_labels = sources.read_val_labels(args.val_labels, id_to_synset)
    elif flat_val:
        raise sources.UserError(
            "--val_dir %s is a flat folder/tar: pass --val_labels (devkit ground truth, synsets, or LOC_val_solution.csv)"
            % args.val_dir
        )
    synsets, names = None, dict(devkit_names)
    if args.synsets:
        synsets, listed_names = sources.read_class_list(args.synsets)
        names.update(listed_names)
    elif not train and flat_val:
        raise sources.UserError("without --train_dir, pass --synsets to fix the class list of a flat --val_dir")

    if not args.demo:
        # Inputs, labels and class lists are valid: only now delete the previous output.
        _prepare_output(args.output_dir, args.overwrite)
    options = {k: v for k, v in sorted(vars(args).items())}
    image_size = 0 if args.keep_size else args.image_size
    options["image_size"] = image_size
    return pipeline.JobConfig(
        output_dir=args.output_dir,
        train=train,
        val=val,
        val_labels=val_labels,
        synsets=tuple(synsets) if synsets is not None else None,
        names=names,
        train_shards=args.train_shards or DEFAULT_TRAIN_SHARDS,
        val_shards=args.val_shards or DEFAULT_VAL_SHARDS,
        image_size=image_size,
        jpeg_quality=args.jpeg_quality,
        max_pixels=args.max_image_pixels,
        max_reject_fraction=args.max_reject_fraction,
        stats_stride=args.stats_stride,
        options=options,
    )


def _fail(message):
    print("%s: error: %s" % (_PROG, message), file=sys.stderr)
    raise SystemExit(2)


def _read_failure(output_dir):
    path = shards.join(output_dir, shards.FAILED_FILE)
    if not FileSystems.exists(path):
        return None
    with FileSystems.open(path) as f:
        return f.read().decode("utf-8").strip()


def _read_metadata(output_dir):
    """metadata.json as the job wrote it, or None. Read through Beam's
    FileSystems (local or gs://), like every other file of the job: the job
    never imports TensorFlow (schema.load_metadata would)."""
    path = shards.join(output_dir, fields.METADATA_FILE)
    if not FileSystems.exists(path):
        return None
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return json.loads(f.read().decode("utf-8"))


def run(argv=None, save_main_session=False):
    """Runs the job. Returns the metadata dict on success.

    Args:
      argv: flags (default sys.argv[1:]); Beam's own flags pass through.
      save_main_session: Beam's pickling of __main__ (not needed: every
        function of the job lives in the preprocessing package).

    Raises:
      SystemExit(2): a user mistake, after one line on stderr.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args, beam_args = _parser().parse_known_args(argv)
        cfg = _configure(args, beam_args)
    except sources.UserError as err:
        _fail(str(err))
    options = _beam_options(beam_args, estimated_images(cfg))
    options.view_as(pipeline_options.SetupOptions).save_main_session = save_main_session
    logging.getLogger("preprocessing").setLevel(logging.INFO)

    start = time.time()
    with beam.Pipeline(options=options) as p:
        pipeline.build(p, cfg)
    seconds = time.time() - start

    meta = _read_metadata(cfg.output_dir)
    if meta is None:
        failure = _read_failure(cfg.output_dir)
        _fail(failure or "the job ended without writing %s" % fields.METADATA_FILE)
    written = meta["counts"]["train"] + meta["counts"]["validation"]
    rgb = meta["rgb"]
    print(
        "%s: wrote %d train + %d validation examples (%d + %d shards, %d classes) to %s; rejected %d + %d "
        "(see %s); %.1f s, %.1f images/s; RGB eigenvalues %s"
        % (
            _PROG, meta["counts"]["train"], meta["counts"]["validation"], meta["shards"]["train"],
            meta["shards"]["validation"], meta["num_classes"], cfg.output_dir, meta["rejected"]["train"],
            meta["rejected"]["validation"], shards.REJECTS_FILE, seconds, written / max(seconds, 1e-9),
            json.dumps([round(v, 4) for v in rgb["eigenvalues"]]) if rgb else "n/a (no training images)",
        )
    )
    return meta


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    run()
