"""The data set of `python -m trainer.task --demo`, built by the Beam job in a child process.

The trainer takes only the record schema from `preprocessing/`: running
`python -m preprocessing.build_tfrecords --demo` as a child process keeps Apache
Beam out of the trainer's process, and out of every training worker's image.
"""
import os
import subprocess
import sys

import tensorflow as tf

import cli
from preprocessing import schema
from trainer import config as config_lib
from trainer import data_info

BUILDER = "preprocessing.build_tfrecords"


def builder_flags(config, rebuild=False):
    """The builder's flags for the demo set `config` asks for (`rebuild`: replace its own files)."""
    argv = ["--demo", "--output_dir", config.data_dir, "--image_size", str(config_lib.DEMO_STORED_SIZE)]
    if config.demo_train_per_class:
        argv += ["--demo_train_per_class", str(config.demo_train_per_class)]
    if config.demo_val_per_class:
        argv += ["--demo_val_per_class", str(config.demo_val_per_class)]
    if rebuild:
        argv.append("--overwrite")
    return argv


def ensure_demo_data(config, log):
    """Builds the demo data set in config.data_dir unless its metadata.json is there already.

    Raises:
      cli.UsageError: the build failed (the message names the command), or left no metadata.json.
    """
    if _metadata(config.data_dir) is not None:
        log("demo data: using %s" % config.data_dir)
        return
    rebuild = bool(tf.io.gfile.exists(config.data_dir) and tf.io.gfile.listdir(config.data_dir))
    if rebuild:
        # No metadata.json but files: an interrupted demo build (metadata is written
        # last). The builder's --overwrite replaces only its own files.
        log("demo data: %s has no %s (an interrupted build?); rebuilding it" % (config.data_dir, schema.METADATA_FILE))
    argv = builder_flags(config, rebuild)
    command = "python -m %s %s" % (BUILDER, " ".join(argv))
    log("demo data: building %s (%s)" % (config.data_dir, command))
    _build(argv, command)
    if _metadata(config.data_dir) is None:
        raise cli.UsageError("building the demo data set in %s wrote no %s" % (config.data_dir, schema.METADATA_FILE))


def _metadata(data_dir):
    try:
        return data_info.read_metadata(data_dir)
    except ValueError as err:  # a demo set of another format version
        raise cli.UsageError(str(err)) from err


def _build(argv, command):
    """Runs the builder; its stdout passes through, its stderr is shown on success and summarised on failure."""
    proc = subprocess.run([sys.executable, "-m", BUILDER, *argv], env=_child_env(), stderr=subprocess.PIPE, text=True)
    if proc.returncode == 0:
        sys.stderr.write(proc.stderr)
        return
    lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
    raise cli.UsageError(
        "building the demo data set failed: %s exited with code %d%s"
        % (command, proc.returncode, ": %s" % lines[-1] if lines else "")
    )


def _child_env():
    """This environment, with the source tree this trainer runs from first on the child's path."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(schema.__file__)))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env
