"""Builds TFRecord shards and RGB PCA statistics from an ImageNet download.

Class folders or the official tars, on all local cores with no download:

    python -m preprocessing.build_tfrecords \\
        --train_dir ILSVRC2012_img_train.tar --val_dir ILSVRC2012_img_val.tar \\
        --val_labels ILSVRC2012_validation_ground_truth.txt --devkit_classes map_clsloc.txt \\
        --synsets LOC_synset_mapping.txt --output_dir /data/imagenet-tfrecords

Tiny ImageNet as its archive unpacks (stored at its own 64 px):

    python -m preprocessing.build_tfrecords --train_dir tiny-imagenet-200/train \
        --val_dir tiny-imagenet-200/val --synsets tiny-imagenet-200/wnids.txt \
        --class_names tiny-imagenet-200/words.txt --image_size 64 --output_dir /data/tiny-tfrecords

The synthetic demo set (generated into OUTPUT/source/, then converted):

    python -m preprocessing.build_tfrecords --demo --output_dir /tmp/demo-records

On Dataflow, add Beam's usual flags (every path may be gs://):

    --runner DataflowRunner --project P --region R --temp_location gs://B/tmp --setup_file ./setup.py

Writes OUTPUT/train-00000-of-01024 ..., validation-00000-of-00128 ..., rejects.tsv
(path, split, reason for every input that could not become an example),
skipped.tsv (the same for every file that is not an image by name: sidecars,
.DS_Store, hidden files), labels_without_images.txt, and metadata.json last.
A user mistake is one line on stderr and exit code 2; a job that ran and failed
(over --max_reject_fraction) leaves only job_failed.txt and the two lists, one
line on stderr and exit code 1.
"""
import json
import logging
import sys
import time

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options import pipeline_options

import cli
from preprocessing import configure, fields, images, listing, pipeline, shards, stats

_PROG = "build_tfrecords"
# From this many input images on, the default local runner uses one worker
# process per core; below it, one in-process worker. Worker processes pay a
# fixed start-up and move every record between processes, so they convert
# fewer images per CPU-second and win on the wall clock only on larger inputs;
# the threshold keeps small jobs on one core at full efficiency. The
# measurements behind it: docs/decisions/preprocessing-runner.md.
PROCESSES_FROM_IMAGES = 10_000


def _parser():
    parser = cli.Parser(prog="python -m preprocessing.build_tfrecords", description=__doc__.split("\n\n")[0])
    parser.add_argument("--train_dir", help="class folders train/<synset>/... (files at any depth below a class folder), "
                        "or ILSVRC2012_img_train.tar, or a tar of class folders")
    parser.add_argument("--val_dir", help="a flat folder, class folders, ILSVRC2012_img_val.tar, or Tiny ImageNet's val/ "
                        "(images/ beside val_annotations.txt, used as the labels)")
    parser.add_argument(
        "--val_labels",
        help="labels of a flat --val_dir: ILSVRC2012_validation_ground_truth.txt (needs --devkit_classes), "
        "one synset per line, '<file> <synset>' lines, tab-separated '<file> <synset> ...' rows "
        "(val_annotations.txt), or LOC_val_solution.csv",
    )
    parser.add_argument("--devkit_classes", help="the devkit's map_clsloc.txt (devkit ID -> synset)")
    parser.add_argument(
        "--synsets",
        help="class list (LOC_synset_mapping.txt, wnids.txt or one synset per line); labels index its SORTED synsets. "
        "Default: the sorted class folders of --train_dir",
    )
    parser.add_argument(
        "--class_names",
        help="WordNet words.txt ('<synset><TAB>names' lines; extra synsets are ignored): each class is named by its "
        "first name (metadata.json class_names, each record's image/class/text); every class must be there",
    )
    parser.add_argument("--output_dir", help="where shards and metadata.json go (local or gs://)")
    parser.add_argument("--train_shards", type=int, help="default %d (%d with --demo)" % (
        configure.DEFAULT_TRAIN_SHARDS, configure.DEMO_TRAIN_SHARDS))
    parser.add_argument("--val_shards", type=int, help="default %d (%d with --demo)" % (
        configure.DEFAULT_VAL_SHARDS, configure.DEMO_VAL_SHARDS))
    parser.add_argument(
        "--image_size", type=int, default=256,
        help="shorter side resized to this, then centre-cropped square (the paper's 256); images smaller than this "
        "are upscaled (bicubic) unless --keep_small; 0 keeps the original size",
    )
    parser.add_argument(
        "--keep_small", action="store_true",
        help="store images whose shorter side is under --image_size at their own size (their central square, "
        "not resampled) instead of upscaling them; metadata.json counts them (kept_small)",
    )
    parser.add_argument("--keep_size", action="store_true", help="same as --image_size 0")
    parser.add_argument("--jpeg_quality", type=int, default=images.DEFAULT_JPEG_QUALITY, help="quality of re-encoded JPEGs")
    parser.add_argument(
        "--max_image_pixels", type=int, default=images.DEFAULT_MAX_PIXELS,
        help="images with more pixels are rejected as decompression bombs before decoding",
    )
    parser.add_argument(
        "--max_reject_fraction", type=float, default=0.1,
        help="fail (no metadata.json) when a split rejects more than this fraction of its images (skipped files aside)",
    )
    parser.add_argument(
        "--stats_stride", type=int, default=stats.DEFAULT_STRIDE,
        help="RGB statistics over every Nth row and column of each stored training image (1 = every pixel)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace this job's files in a non-empty --output_dir "
                        "(not needed over a failed job's leftovers)")
    parser.add_argument("--demo", action="store_true", help="generate the synthetic demo set into OUTPUT/%s and convert it"
                        % configure.DEMO_SOURCE)
    parser.add_argument("--demo_train_per_class", type=int, default=130)
    parser.add_argument("--demo_val_per_class", type=int, default=30)
    parser.add_argument("--demo_seed", type=int, default=0)
    return parser


def _check_beam_flags(beam_args):
    """parse_known_args hands every flag it does not know to Beam, and Beam
    silently drops flags IT does not know either: a typo (--trian_dir) would
    vanish. Parse them with all of Beam's option classes and refuse leftovers.
    A bad value raises UsageError (one line), not argparse's usage of every
    Beam flag."""
    parser = cli.Parser(allow_abbrev=False, add_help=False)
    seen = set()
    for cls in pipeline_options.PipelineOptions.__subclasses__():
        if str(cls) not in seen:
            seen.add(str(cls))
            cls._add_argparse_args(parser)  # pylint: disable=protected-access
    try:
        _, unknown = parser.parse_known_args(beam_args)
    except cli.UsageError as err:
        raise cli.UsageError("bad Beam flag: %s" % err) from err
    if unknown:
        raise cli.UsageError("unknown flag(s): %s (see --help)" % " ".join(unknown))


def _beam_options(beam_args, estimated_images):
    """Beam's flags, with an offline local default runner.

    The default is Beam's FnApiRunner (never the DirectRunner: it tries to
    download the Prism binary). Large inputs get one worker process per core;
    small ones one in-process worker, because worker processes pay a fixed
    start-up (Python and Beam imports) and move every record between
    processes, so they convert fewer images per CPU-second (see
    PROCESSES_FROM_IMAGES). --direct_running_mode/--direct_num_workers
    override the choice.
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
    for _, source in cfg.sources():
        count = listing.estimate_count(*source)
        if count is None:
            return None
        total += count
    return total


def _fail(message, code):
    print("%s: error: %s" % (_PROG, message), file=sys.stderr)
    raise SystemExit(code)


def _read_text(output_dir, name):
    """A file the job wrote, through Beam's FileSystems (local or gs://), or None.
    The job never imports TensorFlow (schema.load_metadata would)."""
    path = shards.join(output_dir, name)
    if not FileSystems.exists(path):
        return None
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return f.read().decode("utf-8")


def _run_pipeline(options, cfg):
    """Runs the job; a crash leaves no shard behind (the in-progress folder goes)."""
    try:
        with beam.Pipeline(options=options) as p:
            pipeline.build(p, cfg)
    except BaseException:
        shards.remove_in_progress(cfg.output_dir)
        raise


def _summary(meta, output_dir, seconds):
    counts, rejected, skipped = meta["counts"], meta["rejected"], meta["skipped"]
    written = counts["train"] + counts["validation"]
    rgb = meta["rgb"]
    return (
        "%s: wrote %d train + %d validation examples (%d + %d shards, %d classes) to %s; rejected %d + %d "
        "(see %s), skipped %d + %d files that are not images (see %s); %.1f s, %.1f images/s; RGB eigenvalues %s"
        % (
            _PROG, counts["train"], counts["validation"], meta["shards"]["train"], meta["shards"]["validation"],
            meta["num_classes"], output_dir, rejected["train"], rejected["validation"], shards.REJECTS_FILE,
            skipped["train"], skipped["validation"], shards.SKIPPED_FILE, seconds, written / max(seconds, 1e-9),
            json.dumps([round(v, 4) for v in rgb["eigenvalues"]]) if rgb else "n/a (no training images)",
        )
    )


def run(argv=None, save_main_session=False):
    """Runs the job. Returns the metadata dict on success.

    Args:
      argv: flags (default sys.argv[1:]); Beam's own flags pass through.
      save_main_session: Beam's pickling of __main__ (not needed: every
        function of the job lives in the preprocessing package).

    Raises:
      SystemExit(cli.EXIT_USAGE): a user mistake, after one line on stderr.
      SystemExit(cli.EXIT_FAILED): the job ran and failed (job_failed.txt
        says why, repeated on stderr).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args, beam_args = _parser().parse_known_args(argv)
        _check_beam_flags(beam_args)
        cfg = configure.configure(args)
    except cli.UsageError as err:
        _fail(str(err), cli.EXIT_USAGE)
    options = _beam_options(beam_args, estimated_images(cfg))
    options.view_as(pipeline_options.SetupOptions).save_main_session = save_main_session
    logging.getLogger("preprocessing").setLevel(logging.INFO)

    start = time.time()
    _run_pipeline(options, cfg)
    seconds = time.time() - start

    text = _read_text(cfg.output_dir, fields.METADATA_FILE)
    if text is None:
        failure = _read_text(cfg.output_dir, shards.FAILED_FILE)
        _fail((failure or "").strip() or "the job ended without writing %s" % fields.METADATA_FILE, cli.EXIT_FAILED)
    meta = json.loads(text)
    print(_summary(meta, cfg.output_dir, seconds))
    return meta


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    run()
