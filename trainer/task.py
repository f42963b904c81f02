"""Trains AlexNet the way the paper did, under any tf.distribute strategy.

    python -m trainer.task --demo
    python -m trainer.task --data_dir gs://bucket/imagenet-tfrecords --model_dir gs://bucket/runs/alexnet
    python -m trainer.task --data_dir D --model_dir M --strategy mirrored --cpu_replicas 2
    python -m trainer.task --data_dir D --model_dir M --eval_only

Flags are parsed strictly into a frozen trainer.config.TrainConfig; this module
is the only place that reads flags and environment variables (AIP_MODEL_DIR,
AIP_CHECKPOINT_DIR, AIP_TENSORBOARD_LOG_DIR as directory defaults; TF_CONFIG
or Vertex AI's CLUSTER_SPEC for multi-worker training; the package,
trainer/__init__.py, gives TF_ENABLE_ONEDNN_OPTS its default). Rerunning the same
command resumes from the last checkpoint in the model directory.

Exit codes: 0 done; 2 a usage error (one line on stderr), including a model
directory another run is writing to; 3 the loss became NaN/Inf (the last good
checkpoint is kept); 4 a corrupt, truncated or undecodable shard or record (one
line naming it; the last good checkpoint is kept); 143 stopped by SIGTERM after
saving a checkpoint (rerun to resume).
"""
import argparse
import json
import os
import sys

import cli
import model as model_lib
from trainer import config as config_lib
from trainer import data_faults
from trainer import recipes
from trainer import run as run_lib
from trainer import strategy as strategy_lib
from trainer.step import TrainingDiverged

DEMO_DATA_DIR = "demo_data"  # relative to the working directory; ignored by git
DEMO_MODEL_DIR = os.path.join("runs", "demo")


def build_parser():
    """The strict flag parser. Flags not given are absent from the namespace."""
    p = cli.Parser(prog="python -m trainer.task", description=__doc__.split("\n\n")[0], argument_default=argparse.SUPPRESS)
    p.add_argument("--data_dir", help="TFRecord shards and metadata.json (preprocessing.build_tfrecords)")
    p.add_argument("--model_dir", help="run directory (default: AIP_MODEL_DIR, or runs/alexnet; runs/demo with --demo)")
    p.add_argument("--checkpoint_dir", help="default: AIP_CHECKPOINT_DIR or <model_dir>/checkpoints")
    p.add_argument("--log_dir", help="TensorBoard directory (default: AIP_TENSORBOARD_LOG_DIR or <model_dir>/logs)")
    p.add_argument("--strategy", choices=config_lib.STRATEGIES)
    p.add_argument("--cpu_replicas", type=int, help="split the CPU into N logical devices (mirrored training without GPUs)")
    p.add_argument("--tpu", help="TPU name or address for --strategy tpu")
    p.add_argument("--batch_size", type=int, help="GLOBAL batch size (default 128)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--steps_per_epoch", type=int, help="default: training examples // batch size")
    p.add_argument("--val_steps", type=int, help="cap on validation batches per evaluation (default: all)")
    p.add_argument("--learning_rate", type=float, help="for batch 128; scaled linearly above it")
    p.add_argument("--momentum", type=float)
    p.add_argument("--weight_decay", type=float)
    p.add_argument("--lr_schedule", choices=config_lib.LR_SCHEDULES)
    p.add_argument("--plateau_patience", type=int)
    p.add_argument("--lr_step_epochs", type=int)
    p.add_argument("--max_lr_drops", type=int)
    p.add_argument("--warmup_epochs", type=float, help="default: 5 when batch > 128, else 0")
    p.add_argument("--no_scale_lr", dest="scale_lr", action="store_false", help="do not scale the learning rate with the batch")
    p.add_argument("--image_size", type=int)
    p.add_argument("--num_classes", type=int, help="default: from metadata.json")
    p.add_argument("--label_offset", type=int, help="default: from metadata.json (1 for TF's 1001-class shards)")
    p.add_argument("--init", choices=config_lib.INITS)
    p.add_argument("--two_tower", action="store_true")
    p.add_argument("--activation", choices=config_lib.ACTIVATIONS)
    p.add_argument("--no_lrn", dest="lrn", action="store_false")
    p.add_argument("--no_overlap", dest="overlapping_pool", action="store_false")
    p.add_argument("--dropout_rate", type=float)
    p.add_argument("--no_pca_noise", dest="pca_noise", action="store_false")
    p.add_argument("--skip_corrupt", action="store_true", help="skip (and count) undecodable records instead of failing")
    p.add_argument(
        "--augment_on_host", action="store_true",
        help="run flips, PCA noise and mean subtraction in tf.data instead of at the start of the train step",
    )
    p.add_argument("--mixed_precision", choices=config_lib.MIXED_PRECISION)
    p.add_argument("--xla", action="store_true")
    p.add_argument("--steps_per_call", type=int)
    p.add_argument("--checkpoint_every_steps", type=int)
    p.add_argument("--keep_checkpoints", type=int)
    p.add_argument("--allow_config_change", action="store_true")
    p.add_argument("--log_every_steps", type=int)
    p.add_argument("--stall_steps", type=int, help="warn once if the loss is still at ln(classes) after N steps (0: never)")
    p.add_argument("--profile_steps", help="'first,last' global steps to profile, e.g. 10,15")
    p.add_argument("--eval_only", action="store_true")
    p.add_argument("--checkpoint", help="--eval_only: checkpoint prefix (default: the latest)")
    p.add_argument("--ten_crop", action="store_true", help="end-of-training evaluation also with 10 views")
    p.add_argument("--no_export", dest="export", action="store_false")
    p.add_argument("--demo", action="store_true", help="build the demo data set if needed and train on it (the 'demo' recipe)")
    p.add_argument(
        "--recipe", choices=sorted(recipes.RECIPES),
        help="a named set of defaults for a data set (trainer/recipes.py); flags given explicitly win",
    )
    p.add_argument("--demo_train_per_class", type=int)
    p.add_argument("--demo_val_per_class", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument(
        "--deterministic", action="store_true",
        help="op determinism and a fixed input order: the same seed, data and strategy give identical weights (slower)",
    )
    p.add_argument(
        "--lock_stale_seconds", type=float,
        help="refresh the model directory's writer lock within this interval (default 300); tests shorten it",
    )
    p.add_argument("--debug_nan_at_step", type=int, help="test aid: make the loss NaN at this global step")
    p.add_argument("--dump_weights", help="test aid: write this worker's final weights to an .npz")
    p.add_argument("--debug_input_sleep_ms", type=int, help="test aid: sleep this long before each training batch")
    return p


def parse_config(argv, environ):
    """Flags and environment -> (TrainConfig, TF_CONFIG dict or None).

    Precedence: explicit flags, then the --recipe (or --demo) preset, then the environment
    (AIP_* directories), then the dataclass defaults.

    Args:
      argv: command-line arguments (without the program name).
      environ: a mapping like os.environ.

    Returns:
      (config, tf_config).

    Raises:
      cli.UsageError: on any invalid flag or value.
    """
    given = vars(build_parser().parse_args(argv))
    values = {}
    if environ.get("AIP_MODEL_DIR"):
        values["model_dir"] = environ["AIP_MODEL_DIR"]
    if environ.get("AIP_CHECKPOINT_DIR"):
        values["checkpoint_dir"] = environ["AIP_CHECKPOINT_DIR"]
    if environ.get("AIP_TENSORBOARD_LOG_DIR"):
        values["log_dir"] = environ["AIP_TENSORBOARD_LOG_DIR"]
    if given.get("demo") and given.get("recipe", "demo") != "demo":
        raise cli.UsageError("--demo trains the 'demo' recipe. Received it with --recipe %s." % given["recipe"])
    if given.get("demo"):
        values.update(recipes.DEMO)
        values.setdefault("model_dir", DEMO_MODEL_DIR)
        values["data_dir"] = DEMO_DATA_DIR
    if given.get("recipe"):
        values.update(recipes.RECIPES[given["recipe"]])
    values.update(given)
    batch = values.get("batch_size", config_lib.TrainConfig.batch_size)
    if "warmup_epochs" not in values and batch > config_lib.PAPER_BATCH_SIZE:
        values["warmup_epochs"] = 5.0  # Goyal et al.: 5 epochs of warm-up make the scaled rate safe
    config = config_lib.TrainConfig(**values)
    _validate(config)

    tf_config = None
    try:
        if environ.get("TF_CONFIG"):
            tf_config = strategy_lib.parse_tf_config(environ["TF_CONFIG"])
        elif environ.get("CLUSTER_SPEC"):
            try:
                spec = json.loads(environ["CLUSTER_SPEC"])
            except json.JSONDecodeError as err:
                raise cli.UsageError("CLUSTER_SPEC is not valid JSON. Received: %r" % environ["CLUSTER_SPEC"]) from err
            tf_config = strategy_lib.tf_config_from_cluster_spec(spec)
    except strategy_lib.StrategyError as err:
        raise cli.UsageError(str(err)) from err
    return config, tf_config


def _validate(c):
    def need(ok, message):
        if not ok:
            raise cli.UsageError(message)

    need(c.data_dir or c.demo, "--data_dir is required (or --demo). Received neither.")
    need(c.batch_size >= 1, "expected --batch_size >= 1. Received: %d" % c.batch_size)
    need(c.epochs >= 1, "expected --epochs >= 1. Received: %d" % c.epochs)
    need(c.steps_per_epoch >= 0, "expected --steps_per_epoch >= 0 (0 = from the data). Received: %d" % c.steps_per_epoch)
    need(c.val_steps >= 0, "expected --val_steps >= 0. Received: %d" % c.val_steps)
    need(c.learning_rate > 0, "expected --learning_rate > 0. Received: %g" % c.learning_rate)
    need(0 <= c.momentum < 1, "expected 0 <= --momentum < 1. Received: %g" % c.momentum)
    need(c.weight_decay >= 0, "expected --weight_decay >= 0. Received: %g" % c.weight_decay)
    need(0 <= c.dropout_rate < 1, "expected 0 <= --dropout_rate < 1. Received: %g" % c.dropout_rate)
    need(c.warmup_epochs >= 0, "expected --warmup_epochs >= 0. Received: %g" % c.warmup_epochs)
    need(c.cpu_replicas >= 1, "expected --cpu_replicas >= 1. Received: %d" % c.cpu_replicas)
    need(c.steps_per_call >= 1, "expected --steps_per_call >= 1. Received: %d" % c.steps_per_call)
    need(c.keep_checkpoints >= 1, "expected --keep_checkpoints >= 1. Received: %d" % c.keep_checkpoints)
    need(
        c.checkpoint_every_steps >= 0,
        "expected --checkpoint_every_steps >= 0 (0 = only at epoch ends). Received: %d" % c.checkpoint_every_steps,
    )
    need(c.lock_stale_seconds > 0, "expected --lock_stale_seconds > 0. Received: %g" % c.lock_stale_seconds)
    need(c.stall_steps >= 0, "expected --stall_steps >= 0 (0 = no stall check). Received: %d" % c.stall_steps)
    need(c.debug_input_sleep_ms >= 0, "expected --debug_input_sleep_ms >= 0. Received: %d" % c.debug_input_sleep_ms)
    need(c.plateau_patience >= 1, "expected --plateau_patience >= 1. Received: %d" % c.plateau_patience)
    need(c.num_classes >= 0, "expected --num_classes >= 1 (or 0: from metadata.json). Received: %d" % c.num_classes)
    need(c.label_offset >= -1, "expected --label_offset >= 0 (or -1: from metadata.json). Received: %d" % c.label_offset)
    smallest = model_lib.min_image_size(c.overlapping_pool)
    need(
        c.image_size >= smallest,
        "expected --image_size >= %d (the smallest input AlexNet's layers accept). Received: %d" % (smallest, c.image_size),
    )
    try:
        config_lib.parse_profile_steps(c.profile_steps)
    except ValueError as err:
        raise cli.UsageError(str(err)) from err
    if c.checkpoint:
        need(c.eval_only, "--checkpoint selects the checkpoint for --eval_only. Received it without --eval_only.")


def main(argv=None):
    """Runs the job; returns the process exit code (0 on success)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        config, tf_config = parse_config(argv, os.environ)
    except cli.UsageError as err:
        print("python -m trainer.task: error: %s" % err, file=sys.stderr)
        return cli.EXIT_USAGE
    except SystemExit as done:  # --help printed its text
        return int(done.code or 0)
    try:
        return run_lib.run(config, tf_config)
    except cli.UsageError as err:
        print("python -m trainer.task: error: %s" % err, file=sys.stderr)
        return cli.EXIT_USAGE
    except TrainingDiverged as err:
        print("python -m trainer.task: training diverged: %s" % err, file=sys.stderr)
        return cli.EXIT_DIVERGED
    except data_faults.DataFault as err:
        print("python -m trainer.task: data error: %s" % err, file=sys.stderr)
        return cli.EXIT_DATA


if __name__ == "__main__":
    sys.exit(main())
