"""Flags and inputs, checked at launch, -> the job's JobConfig.

Every user mistake raises `cli.UsageError` before anything is written or
deleted: with --overwrite, the previous output goes only once every flag,
input, label file and class list has been validated.
"""
import os

from cli import UsageError
from preprocessing import demo, labels, listing, pipeline, shards

DEFAULT_TRAIN_SHARDS, DEFAULT_VAL_SHARDS = 1024, 128  # the TensorFlow ImageNet shard counts
DEMO_TRAIN_SHARDS, DEMO_VAL_SHARDS = 8, 2  # ~160 demo images a shard, not 1024 nearly empty shards
DEMO_SOURCE = "source"  # demo inputs go to OUTPUT/source/, outside the shard namespace


def _check_values(args):
    if not args.output_dir:
        raise UsageError("--output_dir is required")
    for flag in ("train_shards", "val_shards", "demo_train_per_class", "demo_val_per_class", "stats_stride"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UsageError("--%s must be >= 1. Received: %d" % (flag, value))
    if args.image_size < 0:
        raise UsageError("--image_size must be >= 0 (0 keeps the size). Received: %d" % args.image_size)
    if not 1 <= args.jpeg_quality <= 100:
        raise UsageError("--jpeg_quality must be in 1..100. Received: %d" % args.jpeg_quality)
    if not 0.0 <= args.max_reject_fraction <= 1.0:
        raise UsageError("--max_reject_fraction must be in [0, 1]. Received: %g" % args.max_reject_fraction)
    if args.max_image_pixels < 1:
        raise UsageError("--max_image_pixels must be >= 1. Received: %d" % args.max_image_pixels)
    given = (args.train_dir, args.val_dir, args.val_labels, args.synsets, args.devkit_classes, args.class_names)
    if args.demo and any(given):
        raise UsageError(
            "--demo generates its own inputs; drop --train_dir/--val_dir/--val_labels/--synsets/--devkit_classes/--class_names"
        )
    if args.demo and "://" in args.output_dir:
        raise UsageError("--demo draws its images on this machine: give a local --output_dir. Received: %s" % args.output_dir)
    if not args.demo and not (args.train_dir or args.val_dir):
        raise UsageError("nothing to do: pass --train_dir and/or --val_dir (or --demo)")


def _generate_demo(args):
    """Every flag is checked and the demo's inputs are our own: replace the
    previous output only now, right before generating."""
    shards.prepare_output(args.output_dir, args.overwrite, own=(DEMO_SOURCE,))
    generated = demo.generate(
        os.path.join(args.output_dir, DEMO_SOURCE), args.demo_train_per_class, args.demo_val_per_class, args.demo_seed
    )
    args.train_dir, args.val_dir = generated["train_dir"], generated["val_dir"]
    args.synsets, args.val_labels = generated["synsets"], generated["val_labels"]
    args.train_shards = args.train_shards or DEMO_TRAIN_SHARDS
    args.val_shards = args.val_shards or DEMO_VAL_SHARDS


def _sources(args):
    """(train, val, flat_val): the (path, layout) of each split, and whether
    validation needs a label file. Tiny ImageNet's `val/` (images/ beside
    val_annotations.txt) becomes its images/ folder, labelled by the
    annotations unless --val_labels says otherwise."""
    train = (args.train_dir, listing.describe_source(args.train_dir, "--train_dir")) if args.train_dir else None
    if train and train[1] == "flat":
        raise UsageError("--train_dir must hold class folders (train/<synset>/*) or be a .tar. Received: %s" % args.train_dir)
    tiny = listing.tiny_imagenet_val(args.val_dir) if args.val_dir else None
    if tiny:
        args.val_labels = args.val_labels or tiny[1]
    val_dir = tiny[0] if tiny else args.val_dir
    val = (val_dir, listing.describe_source(val_dir, "--val_dir")) if val_dir else None
    flat_val = val is not None and (val[1] == "flat" or (val[1] == "tar" and listing.tar_is_flat(val[0])))
    return train, val, flat_val


def _classes_and_names(args, train, flat_val, devkit_names):
    """(synsets or None, names, names_required) from --synsets, --devkit_classes and --class_names."""
    synsets, names = None, dict(devkit_names)
    if args.synsets:
        synsets, listed_names = labels.read_class_list(args.synsets)
        names.update(listed_names)
    elif not train and flat_val:
        raise UsageError("without --train_dir, pass --synsets to fix the class list of a flat --val_dir")
    if not args.class_names:
        return synsets, names, False
    words = labels.read_class_names(args.class_names)
    source = "--class_names %s" % args.class_names
    # The class list known at launch is checked now (one line naming the class);
    # a tar's or a bucket's classes are known only once listed: Finalize checks those.
    known = synsets
    if known is None and train and train[1] == "classes" and "://" not in train[0]:
        known = listing.class_folders(train[0])
    if known is not None:
        return synsets, labels.names_of(known, words, source), True
    return synsets, words, True


def configure(args):
    """Validates flags and inputs -> pipeline.JobConfig.

    Raises:
      UsageError: a mistake in the flags or the files they name.
    """
    _check_values(args)
    own = (DEMO_SOURCE,) if args.demo else ()
    shards.check_output(args.output_dir, args.overwrite, own)  # refuse early; delete nothing yet
    if args.demo:
        _generate_demo(args)
    train, val, flat_val = _sources(args)
    id_to_synset, devkit_names = labels.read_devkit_classes(args.devkit_classes) if args.devkit_classes else (None, {})
    val_labels = None
    if args.val_labels:
        if not val:
            raise UsageError("--val_labels needs --val_dir")
        val_labels = labels.read_val_labels(args.val_labels, id_to_synset)
    elif flat_val:
        raise UsageError(
            "--val_dir %s is a flat folder/tar: pass --val_labels (devkit ground truth, synsets, '<file> <synset>' "
            "rows or LOC_val_solution.csv)" % args.val_dir
        )
    synsets, names, names_required = _classes_and_names(args, train, flat_val, devkit_names)
    if not args.demo:
        # Inputs, labels and class lists are valid: only now delete the previous output.
        shards.prepare_output(args.output_dir, args.overwrite)
    image_size = 0 if args.keep_size else args.image_size
    options = {k: v for k, v in sorted(vars(args).items())}
    options["image_size"] = image_size
    return pipeline.JobConfig(
        output_dir=args.output_dir,
        train=train,
        val=val,
        val_labels=val_labels,
        synsets=tuple(synsets) if synsets is not None else None,
        names=names,
        names_required=names_required,
        train_shards=args.train_shards or DEFAULT_TRAIN_SHARDS,
        val_shards=args.val_shards or DEFAULT_VAL_SHARDS,
        image_size=image_size,
        keep_small=args.keep_small,
        jpeg_quality=args.jpeg_quality,
        max_pixels=args.max_image_pixels,
        max_reject_fraction=args.max_reject_fraction,
        stats_stride=args.stats_stride,
        options=options,
    )
