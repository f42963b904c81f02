"""The run's setup around the epoch loop: strategy, data, restore, final evaluation, export, cleanup.

`run(config)` is what `python -m trainer.task` does once its flags are parsed:
it builds the strategy, checks the data and the model directory before
anything is trained (a user mistake is a `cli.UsageError`, one line), restores
the last checkpoint, runs `trainer.loop.fit`, evaluates, exports, and removes
the scratch directories non-chief workers wrote to.
"""
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

import cli
from trainer import checkpoints as ckpt_lib
from trainer import config as config_lib
from trainer import cpu as cpu_lib
from trainer import data_faults
from trainer import data_info
from trainer import datasets
from trainer import demo_data
from trainer import evaluate as eval_lib
from trainer import export as export_lib
from trainer import loop
from trainer import per_class
from trainer import run_lock
from trainer import progress
from trainer import shard_reader
from trainer import strategy as strategy_lib
from trainer import summaries as summaries_lib
from trainer.step import Trainer


def run(config, tf_config=None, log=None):
    """Runs the job a TrainConfig describes: train (resuming if possible), evaluate, export.

    Args:
      config: trainer.config.TrainConfig.
      tf_config: parsed TF_CONFIG dict for multi-worker training, or None.
      log: print-like function for progress lines (default: print to stdout, flushed).

    Returns:
      Exit code: cli.EXIT_OK done, cli.EXIT_PREEMPTED stopped by SIGTERM after saving a checkpoint.

    Raises:
      cli.UsageError: a user mistake (message says which).
      trainer.step.TrainingDiverged: NaN or infinite loss.
    """
    log = log or (lambda *a: print(*a, flush=True))
    try:
        strategy_lib.configure_cpu_replicas(config.cpu_replicas)
        strategy = strategy_lib.make_strategy(config.strategy, tf_config, config.tpu)
        if config.xla:
            strategy_lib.check_xla(strategy)
    except (strategy_lib.StrategyError, RuntimeError, ValueError) as err:
        raise cli.UsageError(str(err)) from err
    accelerators = len(tf.config.list_logical_devices("GPU")) + len(tf.config.list_logical_devices("TPU"))
    warning = cpu_lib.bfloat16_warning(config.mixed_precision, config.xla, accelerators, cpu_lib.cpu_flags())
    if warning:
        log(warning)
    previous_policy = keras.mixed_precision.dtype_policy()
    if config.mixed_precision != "none":
        keras.mixed_precision.set_dtype_policy("mixed_" + config.mixed_precision)
    if config.deterministic:
        # Deterministic kernels, and tf.data keeps its order (make_dataset is told too). The seeds
        # already come from config.seed: Trainer calls keras.utils.set_random_seed (Python, NumPy,
        # TensorFlow; dropout's seed generators), and the shuffles and augmentation draws are
        # stateless ops seeded from it, so the same seed gives the same batches at any parallelism.
        # It stays on for the rest of the process: TensorFlow has no public switch to turn it off.
        tf.config.experimental.enable_op_determinism()
    try:
        return _run(config, strategy, log)
    except tf.errors.OpError as err:
        fault = data_faults.fault_for(config, err)
        if fault is None:
            raise
        raise fault from None  # one line; TensorFlow's graph trace says nothing more to a user
    finally:
        keras.mixed_precision.set_dtype_policy(previous_policy)


def _run(config, strategy, log):
    started = time.time()
    chief = strategy_lib.is_chief(strategy)
    if config.demo and chief:
        demo_data.ensure_demo_data(config, log)
    info = _data_info(config)
    _check_shards(config)
    train_count = info.counts.get("train")
    steps_per_epoch = config.steps_per_epoch or ((train_count or 0) // config.batch_size)
    if steps_per_epoch < 1 and not config.eval_only:
        raise cli.UsageError(
            "cannot tell the epoch length: %s has %s training examples for global batch %d. Give --steps_per_epoch."
            % (config.data_dir, train_count, config.batch_size)
        )
    if config.eval_only:  # a reader: it takes no writer lock
        return _evaluate_only(config, strategy, info, chief)
    if not chief:  # the other workers write to scratch directories of their own
        return _train(config, strategy, info, steps_per_epoch, chief, log, started)
    with run_lock.writer_lock(config, log):
        return _train(config, strategy, info, steps_per_epoch, chief, log, started)


def _train(config, strategy, info, steps_per_epoch, chief, log, started):
    """Restores (or starts) the run, trains it, evaluates, exports; returns the exit code."""
    checkpoint_dir = config.resolved_checkpoint_dir
    latest = tf.train.latest_checkpoint(checkpoint_dir)
    write_config = _check_config(config, config.model_dir, latest, chief, log)
    write_dirs = (
        strategy_lib.write_dir(checkpoint_dir, strategy),
        strategy_lib.write_dir(os.path.join(config.model_dir, "best"), strategy),
        strategy_lib.write_dir(config.resolved_log_dir, strategy),
    )
    trainer = Trainer(config, strategy, info.num_classes, config.batch_size)
    managers = ckpt_lib.make_managers(trainer.checkpoint, write_dirs[0], write_dirs[1], config.keep_checkpoints)
    if latest:
        hint = ""
        if config.allow_config_change:
            hint = "; --allow_config_change cannot resume a model whose weights changed shape: use another --model_dir"
        _restore(trainer, latest, hint)
        state = trainer.state
        log("resumed from %s at step %d (epoch %d completed)" % (latest, int(state.step.numpy()), int(state.epoch.numpy())))
    write_config()
    start_step = int(trainer.state.step.numpy())
    # A resumed run reshuffles with a seed of its own instead of replaying the first batches.
    train, validation = _make_datasets(config, strategy, info, config.seed + start_step)
    # Only the chief's logs are kept: the others skip histograms, graph and profile.
    summaries = summaries_lib.Summaries(write_dirs[2], enabled=chief)
    sample = None
    if start_step == 0 and chief:
        summaries.hparams(config)
        sample = _sample_images(config, info, config.seed)
    outcome = loop.fit(
        trainer, config, train, validation, steps_per_epoch, managers, summaries,
        log=log, sample_images=sample, rgb_mean=info.rgb_mean,
    )
    if outcome["status"] == "preempted":
        _cleanup(strategy, write_dirs)
        return cli.EXIT_PREEMPTED
    results = _finish(config, strategy, info, trainer, validation, managers, summaries, outcome, chief, write_dirs, log)
    print(_summary_line(config, outcome, results, started), flush=True)
    return cli.EXIT_OK


def _evaluate_only(config, strategy, info, chief):
    """--eval_only: both views of the chosen checkpoint, written to eval.json and reported in one line."""
    checkpoint_dir = config.resolved_checkpoint_dir
    path = config.checkpoint or tf.train.latest_checkpoint(checkpoint_dir)
    if not path:
        raise cli.UsageError("--eval_only found no checkpoint in %s. Train first or give --checkpoint." % checkpoint_dir)
    trainer = Trainer(config, strategy, info.num_classes, config.batch_size)
    _restore(trainer, path)
    _, validation = _make_datasets(config, strategy, info, config.seed, train=False)
    results, outcomes = final_evaluation(trainer, validation, config, ten_view=True)
    results.update({"checkpoint": path, "step": int(trainer.state.step.numpy())})
    eval_path = os.path.join(config.model_dir, "eval.json")
    if chief:
        _write_json(eval_path, results)
        summaries = summaries_lib.Summaries(config.resolved_log_dir)
        per_class.write(config.model_dir, outcomes, info, summaries, results["step"], lambda *a: print(*a, flush=True))
        summaries.close()
    c, t = results["centre_crop"], results["ten_view"]
    print(
        "trainer.task: eval of %s (step %d) on %d validation images: centre crop top-1 %.4f top-5 %.4f; "
        "10 views top-1 %.4f top-5 %.4f; wrote %s"
        % (path, results["step"], c["examples"], c["top1"], c["top5"], t["top1"], t["top5"], eval_path),
        flush=True,
    )
    return cli.EXIT_OK


def _finish(config, strategy, info, trainer, validation, managers, summaries, outcome, chief, write_dirs, log):
    """After training: the final evaluation into eval.json, the export, the test aids' weights, cleanup.

    Returns:
      The final evaluation's results (what eval.json holds).
    """
    results, outcomes = final_evaluation(trainer, validation, config, ten_view=config.ten_crop)
    results.update({"checkpoint": managers[0].latest_checkpoint, "step": outcome["step"]})
    if chief:
        _write_json(os.path.join(config.model_dir, "eval.json"), results)
        per_class.write(config.model_dir, outcomes, info, summaries, outcome["step"], log)
        if config.export:
            export_lib.export(config, trainer.model, info, os.path.join(config.model_dir, "export"))
    if config.dump_weights:
        np.savez(config.dump_weights, *[keras.ops.convert_to_numpy(w) for w in trainer.model.weights])
    summaries.close()
    _cleanup(strategy, write_dirs)
    if config.demo:
        log_dir = config.resolved_log_dir
        log("TensorBoard logs are in %s; open them with: tensorboard --logdir %s" % (log_dir, log_dir))
    return results


def _summary_line(config, outcome, results, started):
    c = results["centre_crop"]
    line = "trainer.task: trained %d epochs (%d steps) in %s: validation top-1 %.4f top-5 %.4f (centre crop, %d images)" % (
        outcome["epoch"],
        outcome["step"],
        config.model_dir,
        c["top1"],
        c["top5"],
        c["examples"],
    )
    if "ten_view" in results:
        ten_view = results["ten_view"]
        line += ", 10 views top-1 %.4f top-5 %.4f" % (ten_view["top1"], ten_view["top5"])
    return line + "; total time %s" % progress.format_duration(time.time() - started)


def _cleanup(strategy, dirs):
    for d in dirs:
        strategy_lib.cleanup_write_dir(d, strategy)


def _check_config(config, model_dir, latest, chief, log):
    """Compares this run's config with the saved config.json when resuming.

    Only the chief reads and writes it: another worker could read the file
    while the chief is writing it.

    Returns:
      A function that archives the old config.json (when an allowed change
      replaces it) and writes this run's; called once the checkpoint restored,
      so a run that cannot resume leaves the model directory as it was.
    """
    if not chief:
        return lambda: None
    archive = False
    saved = ckpt_lib.read_saved_config(model_dir)
    if saved is not None:
        diffs = config_lib.config_differences(saved, config)
        if diffs:
            text = "; ".join("%s: saved %r, now %r" % d for d in diffs)
            if not config.allow_config_change:
                raise cli.UsageError(
                    "%s/config.json differs from this run's config (%s). Use the saved flags, another --model_dir, "
                    "or --allow_config_change to continue anyway." % (model_dir, text)
                )
            log("config changed on resume (allowed): %s" % text)
            archive = True
    elif latest and not config.allow_config_change:
        raise cli.UsageError(
            "%s has checkpoints but no config.json; cannot check the config. Use --allow_config_change to resume anyway."
            % model_dir
        )

    def write():
        if archive:
            ckpt_lib.archive_config(model_dir, ckpt_lib.step_of(latest) if latest else 0)
        ckpt_lib.write_config(model_dir, config)

    return write


def _restore(trainer, path, hint=""):
    """Restores a checkpoint into the trainer; cli.UsageError when it does not fit the model."""
    try:
        ckpt_lib.restore(trainer.checkpoint, path)
    except (tf.errors.OpError, AssertionError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise cli.UsageError("cannot restore %s into this model (%s)%s" % (path, first, hint)) from err


def _data_info(config):
    try:
        return data_info.read_data_info(
            config.data_dir,
            label_offset=None if config.label_offset < 0 else config.label_offset,
            num_classes=config.num_classes or None,
        )
    except (ValueError, FileNotFoundError) as err:
        raise cli.UsageError(str(err)) from err


def _check_shards(config):
    """cli.UsageError unless the splits this run reads have shards (validation always, train unless --eval_only).

    Checked before anything is built: validation is first read after the first
    epoch, and a missing split should not cost an epoch and end in a traceback.
    """
    for split in ("validation",) if config.eval_only else ("train", "validation"):
        try:
            shard_reader.list_shards(config.data_dir, split)
        except (ValueError, FileNotFoundError, tf.errors.OpError) as err:
            raise cli.UsageError("no %s data: %s" % (split, err)) from err


def _make_datasets(config, strategy, info, seed, train=True):
    """(distributed endless training dataset or None when not `train`,
    function returning a distributed validation dataset)."""

    def dataset_fn(split, ctx, **options):
        return datasets.make_dataset(
            config.data_dir,
            split,
            config.batch_size,
            image_size=config.image_size,
            info=info,
            input_context=ctx,
            skip_corrupt=config.skip_corrupt,
            deterministic=config.deterministic,
            **options,
        )

    def train_fn(ctx):
        ds = dataset_fn(
            "train", ctx, training=True, seed=seed, pca_noise=config.pca_noise, finish_on_device=not config.augment_on_host
        )
        return datasets.delay_batches(ds, config.debug_input_sleep_ms / 1000.0) if config.debug_input_sleep_ms else ds

    def validation(ten_crop=False):
        # Batches of one shape, padded and weighted (trainer.evaluate.fixed_batches): no
        # replica is handed an empty batch when the workers' shards run out unevenly.
        # The 10 views stay uint8 until the eval step finishes them, one view at a time.
        return strategy.distribute_datasets_from_function(
            lambda ctx: eval_lib.fixed_batches(
                dataset_fn("validation", ctx, training=False, ten_crop=ten_crop, finish_on_device=ten_crop),
                ctx.get_per_replica_batch_size(config.batch_size),
            )
        )

    try:
        train_dataset = strategy.distribute_datasets_from_function(train_fn) if train else None
        # Built once now so a problem with the validation shards (e.g. fewer shards
        # than workers) is a cli.UsageError here, not a traceback after the first epoch.
        validation()
    except (ValueError, FileNotFoundError) as err:
        raise cli.UsageError(str(err)) from err
    return train_dataset, validation


def _sample_images(config, info, seed):
    ds = datasets.make_dataset(
        config.data_dir, "train", 16, training=True, image_size=config.image_size, info=info, seed=seed,
        pca_noise=config.pca_noise, shuffle_buffer=64, deterministic=config.deterministic,
    )
    for images, _ in ds.take(1):
        return images
    return None


def final_evaluation(trainer, validation, config, ten_view):
    """Centre-crop (and optionally 10-view) accuracy over the validation split.

    Returns:
      ({view: accuracies}, {view: per-example outcomes for trainer.per_class}), views
      "centre_crop" and, with ten_view, "ten_view".
    """
    results, outcomes = {}, {}
    for view in ("centre_crop", "ten_view") if ten_view else ("centre_crop",):
        step = eval_lib.make_eval_step(
            trainer.strategy, trainer.model, trainer.num_classes, ten_view=view == "ten_view", jit_compile=config.xla,
            per_example=True,
        )
        results[view], outcomes[view] = eval_lib.evaluate_with_outcomes(step, validation(view == "ten_view"), config.val_steps)
    return results, outcomes


def _write_json(path, value):
    tf.io.gfile.makedirs(os.path.dirname(path))  # --eval_only --checkpoint may name a new model_dir
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(value, indent=2, sort_keys=True) + "\n")
