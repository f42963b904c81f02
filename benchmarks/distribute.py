"""Distribution: one device vs `MirroredStrategy`, mixed precision and XLA.

    python -m benchmarks --stages distribute          # the stage, as written to BENCHMARKS.md
    python -m benchmarks.distribute --worker --strategy mirrored --replicas 2 --precision float32

On a CPU-only machine the comparison is one CPU device vs `MirroredStrategy` over
`--replicas` logical CPU devices (`tf.config.set_logical_device_configuration`),
the configuration the trainer's `--strategy mirrored --cpu_replicas 2` uses; where
GPUs are present it is one GPU vs all GPUs. Logical devices can only be configured
before TensorFlow initialises its runtime, so every configuration runs in its own
worker process. Each worker times `train_on_batch` of `model.build_alexnet` on one
fixed random global batch (the replicas split it), exactly as the training-step stage.
The end-to-end stage (`benchmarks.end_to_end`) times its bare step with these workers.
"""
import sys

import keras
import tensorflow as tf

from benchmarks import common
from benchmarks.keras_worker import keras_step_rates, onednn_enabled, paper_alexnet
from cli import EXIT_OK, EXIT_USAGE, Parser, UsageError, positive_int

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def configure_devices(device, replicas):
    """Creates the devices a configuration needs; must run before any TensorFlow op.

    Args:
      device: 'cpu' or 'gpu'.
      replicas: CPU: number of logical CPU devices to split the one physical CPU
        into (1 = leave it alone). GPU: number of GPUs to use (the first ones).

    Returns:
      The device names the strategy should use, e.g. ['/cpu:0', '/cpu:1'].

    Raises:
      ValueError: more GPUs requested than present.
    """
    if device == "cpu":
        if replicas > 1:
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
        return ["/cpu:%d" % i for i in range(replicas)]
    gpus = tf.config.list_physical_devices("GPU")
    if replicas > len(gpus):
        raise ValueError("expected at most %d GPUs (present). Received: replicas=%d" % (len(gpus), replicas))
    return ["/gpu:%d" % i for i in range(replicas)]


def run_configuration(args):
    """One configuration's measurement (see `main`)."""
    devices = configure_devices(args.device, args.replicas)
    keras.mixed_precision.set_global_policy(args.precision)
    if args.strategy == "mirrored":
        strategy = tf.distribute.MirroredStrategy(devices)
    else:
        strategy = tf.distribute.OneDeviceStrategy(devices[0])
    with strategy.scope():
        model = paper_alexnet(args.num_classes, args.image_size, args.xla)
    rates = keras_step_rates(model, args.batch_size, args.image_size, args.num_classes, args.warmup, args.repeats,
                             args.steps)  # fmt: skip
    return {
        "device": args.device,
        "strategy": args.strategy,
        "replicas": strategy.num_replicas_in_sync,
        "precision": args.precision,
        "xla": args.xla,
        "batch_size": args.batch_size,
        "onednn": onednn_enabled(),
        "physical_gpus": len(tf.config.list_physical_devices("GPU")),
        "images_per_s": rates,
    }


def configurations(gpus, tiny):
    """The configurations the stage measures, in order; the first is the reference.

    Args:
      gpus: number of physical GPUs (0 on a CPU-only machine).
      tiny: only the one-device vs mirrored pair, in float32 without XLA.

    Returns:
      A list of dicts with device, strategy, replicas, precision, xla.
    """
    cpu = [
        dict(device="cpu", strategy=strategy, replicas=replicas, precision=precision, xla=xla)
        for precision, xla in (("float32", False), ("float32", True), ("mixed_bfloat16", False), ("mixed_bfloat16", True))
        for strategy, replicas in (("one", 1), ("mirrored", 2))
    ]
    if tiny:
        cpu = cpu[:2]
    if not gpus:
        return cpu
    gpu = [
        dict(device="gpu", strategy=strategy, replicas=replicas, precision=precision, xla=xla)
        for precision, xla in (("float32", False), ("mixed_bfloat16", False), ("mixed_bfloat16", True),
                               ("mixed_float16", True))
        for strategy, replicas in (("one", 1), ("mirrored", gpus))
    ]  # fmt: skip
    if tiny:
        gpu = gpu[:2]
    return cpu[:2] + gpu  # with GPUs, the CPU pair stays as the reference of the CPU-only tables


def stage_settings(tiny, repeats):
    """Sizes for a full or a `--tiny` run of the stage."""
    if tiny:
        return {"batch_size": 4, "image_size": 67, "num_classes": 10, "warmup": 1, "repeats": repeats, "steps": 1}
    return {"batch_size": 32, "image_size": 227, "num_classes": 1000, "warmup": 1, "repeats": repeats, "steps": 2}


def worker_args(config, settings):
    """The command-line arguments of the worker that measures `config` at `settings`."""
    args = ["--worker", "--device", config["device"], "--strategy", config["strategy"], "--replicas",
            config["replicas"], "--precision", config["precision"]]  # fmt: skip
    if config["xla"]:
        args.append("--xla")
    for key in ("batch_size", "image_size", "num_classes", "warmup", "repeats", "steps"):
        args += ["--" + key, settings[key]]
    return [str(a) for a in args]


def run_stage(tiny=False, repeats=3, log=print):
    """Runs every configuration in its own worker process.

    The first worker (one CPU device) also reports the number of physical GPUs;
    the GPU configurations are added only when there are some.

    Args:
      tiny: small inputs: checks the machinery, figures meaningless.
      repeats: timed runs per configuration.
      log: progress printer.

    Returns:
      {"settings", "gpus", "runs": [worker result or {"error"}, each with its config and command]}.
    """
    settings = stage_settings(tiny, repeats)
    pending = configurations(0, tiny)
    runs, gpus, index = [], 0, 0
    while index < len(pending):
        config = pending[index]
        args = worker_args(config, settings)
        command = "python -m benchmarks.distribute " + " ".join(args)
        log("distribute: %s" % " ".join("%s=%s" % kv for kv in config.items()))
        try:
            result = common.run_worker("benchmarks.distribute", args)
        except common.WorkerError as err:
            result = {"error": str(err)}
        result.update(config=config, command=command)
        runs.append(result)
        if index == 0 and result.get("physical_gpus"):
            gpus = result["physical_gpus"]
            pending = configurations(gpus, tiny)
        index += 1
    return {"settings": settings, "gpus": gpus, "runs": runs}


# tf_cnn_benchmarks' AlexNet: conv1 64 and conv2 192 filters where the paper has 96 and 256, no LRN.
GPU_ANCHORS = (
    "A published anchor for a close variant of the network, tf_cnn_benchmarks' AlexNet (conv1 and conv2 with 64 and "
    "192 filters instead of 96 and 256, no LRN: about a quarter fewer multiply-accumulates per image): about 2,900 "
    "images/s on one P100 (TensorFlow's published benchmarks of 2017, float32, batch 512 per GPU)."
)


def percent(fraction):
    """A fraction as a percentage with at least two significant digits below 10% (0.031%, 0.5%, 72%)."""
    value = 100 * fraction
    return ("%.0f%%" % value) if value >= 10 else ("%.2g%%" % value)


# The error TensorFlow 2.21 raises for an XLA step mirrored over logical CPU devices (trainer/strategy.py, check_xla).
MIRRORED_XLA_ERROR = "Trying to access resource"


def known_failure(config, error):
    """A note for a failure the project knows and the trainer refuses up front, else ""."""
    mirrored_cpu_xla = config["device"] == "cpu" and config["strategy"] == "mirrored" and config["xla"]
    if mirrored_cpu_xla and MIRRORED_XLA_ERROR in error:
        return (" (the known failure of XLA mirrored over logical CPU devices, keras-team/keras#19005: trainer.task "
                "refuses --xla with --cpu_replicas > 1 before it starts)")  # fmt: skip
    return ""


def render(stage, input_rate=None):
    """The stage's markdown table: images/s, speed-up over the first (one CPU device, float32) row and,
    when the input stage measured it, each configuration's images/s as a percentage of the input pipeline's rate.

    Args:
      stage: `run_stage`'s result.
      input_rate: images/s of the trainer's input pipeline measured in the same run (the input
        stage's full-augmentation pipeline), or None when this run has none.
    """
    settings, runs = stage["settings"], stage["runs"]
    out = ["### Distribution, mixed precision, XLA\n"]
    out.append(
        "AlexNet (%d classes), %dx%d inputs, global batch %d, SGD momentum 0.9 with the paper's weight decay in the "
        "update, as the trainer runs it. Images/s: median (min-max) of %d "
        "timed runs of %d steps after %d warm-up run(s); each configuration in its own process.\n"
        % (settings["num_classes"], settings["image_size"], settings["image_size"], settings["batch_size"],
           settings["repeats"], settings["steps"], settings["warmup"])
    )  # fmt: skip
    reference = runs[0]["images_per_s"]["median"] if "images_per_s" in runs[0] else None
    rows = []
    for run in runs:
        c = run["config"]
        if c["strategy"] == "one":
            placement = "1 %s" % c["device"].upper()
        else:
            placement = "mirrored, %d %s" % (c["replicas"], "logical CPU devices" if c["device"] == "cpu" else "GPUs")
        row = [placement, c["precision"], "on" if c["xla"] else "off"]
        if "images_per_s" in run:
            median = run["images_per_s"]["median"]
            row += [common.format_stats(run["images_per_s"]), "%.2fx" % (median / reference) if reference else "n/a"]
            row += [percent(median / input_rate)] if input_rate else []
        else:
            row += ["failed: " + run["error"] + known_failure(c, run["error"]), "n/a"] + (["n/a"] if input_rate else [])
        rows.append(row + ["`%s`" % run["command"]])
    headers = ["devices", "precision", "XLA", "images/s", "vs first row"]
    headers += ["% of the input pipeline's rate"] if input_rate else []
    out.append(common.markdown_table(headers + ["command"], rows))
    if input_rate:
        out.append(
            "*%% of the input pipeline's rate*: images/s over the %.0f images/s that the trainer's input pipeline (full "
            "augmentation) reached in the input stage of this run, alone on this host's CPUs. At 100%% or more the host "
            "could not feed the configuration; below, it may still fall short, since the step's own work on the host "
            "(on a CPU-only machine, the whole step) takes CPU time from the pipeline. The end-to-end table measures "
            "both together.\n" % input_rate
        )
    else:
        out.append("No input-pipeline rate in this run (the input stage was not selected, or it failed): no "
                   "percentage of it is shown.\n")  # fmt: skip
    if stage["gpus"]:
        out.append(GPU_ANCHORS + "\n")
    else:
        out.append("No GPU present on this machine: the 1 GPU vs all GPUs rows (bfloat16 / float16, XLA) were not run.\n")
    return "\n".join(x if x.endswith("\n") else x + "\n" for x in out)


def build_parser():
    """The worker's flags."""
    parser = Parser(prog="python -m benchmarks.distribute", description=__doc__.split("\n")[0])
    parser.add_argument("--worker", action="store_true", required=True, help="run one measurement process")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--strategy", choices=("one", "mirrored"), default="one")
    parser.add_argument("--replicas", type=positive_int, default=1, help="logical CPU devices, or GPUs")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32", help="Keras dtype policy")
    parser.add_argument("--xla", action="store_true", help="compile the train step with XLA (jit_compile)")
    parser.add_argument("--batch_size", type=positive_int, default=32, help="global batch")
    parser.add_argument("--image_size", type=positive_int, default=227)
    parser.add_argument("--num_classes", type=positive_int, default=1000)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--steps", type=positive_int, default=2)
    return parser


def parse_args(argv=None):
    """The worker's flags, checked together; a mistake raises `cli.UsageError`."""
    args = build_parser().parse_args(argv)
    if args.batch_size % args.replicas:
        raise UsageError("expected replicas dividing batch_size. Received: replicas=%d, batch_size=%d"
                         % (args.replicas, args.batch_size))  # fmt: skip
    if args.strategy == "one" and args.replicas != 1:
        raise UsageError("expected replicas=1 with --strategy one. Received: replicas=%d" % args.replicas)
    return args


def main(argv=None):
    """Worker: measures one configuration and prints one JSON result line."""
    try:
        args = parse_args(argv)
    except UsageError as err:
        sys.stderr.write("python -m benchmarks.distribute: error: %s\n" % err)
        return EXIT_USAGE
    common.emit_result(run_configuration(args))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
