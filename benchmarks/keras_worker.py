"""The Keras worker of the training-step stage: `model.build_alexnet` trained as the trainer trains it.

    python -m benchmarks.keras_worker --batch_sizes 32,128 --conv_ops

One process per measurement (see `benchmarks.step_workers`): it times
`train_on_batch` on one fixed random batch held in memory, a large float32 matrix
multiply before and after the steps (TensorFlow and numpy: the machine's practical
float32 ceiling in the same run) and, with `--conv_ops`, each convolution op of the
step by itself (`keras_conv_op_times`): how close TensorFlow's convolution kernels
alone come to the ceiling, beside how close the whole step comes. It prints one
JSON result line. The distribute stage's workers reuse its model and step timer.
"""
import sys

import keras
import numpy as np
import tensorflow as tf

from benchmarks import common, step_workers
from cli import UsageError, non_negative_int
from model import build_alexnet, min_image_size
from trainer.optimizer import PaperSGD

try:  # a private module: without it the report says oneDNN is "unknown"
    from tensorflow.python.util import _pywrap_util_port
except ImportError:
    _pywrap_util_port = None

CONV_OPS = ("forward", "input gradient", "filter gradient")


def onednn_enabled():
    """Whether this TensorFlow build runs with oneDNN (MKL) kernels; None when TF does not say."""
    if _pywrap_util_port is None:
        return None
    return bool(_pywrap_util_port.IsMklEnabled())


def tf_matmul_gflops(n, warmup, repeats):
    """GFLOP/s of an n x n float32 `tf.linalg.matmul` (2 n^3 FLOPs), timed to completion."""
    a = tf.random.uniform((n, n))
    b = tf.random.uniform((n, n))
    product = tf.function(lambda: tf.reduce_sum(tf.linalg.matmul(a, b)))  # a scalar fetch syncs cheaply
    return common.rate_stats(2 * n**3 / 1e9, common.time_runs(lambda: product().numpy(), warmup, repeats))


def numpy_matmul_gflops(n, warmup, repeats):
    """GFLOP/s of an n x n float32 numpy matrix product (numpy's BLAS)."""
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    return common.rate_stats(2 * n**3 / 1e9, common.time_runs(lambda: a @ b, warmup, repeats))


def keras_step_rates(model, batch_size, image_size, num_classes, warmup, repeats, steps):
    """Images/s of `model.train_on_batch` on one fixed random batch.

    Args:
      model: a compiled Keras model from (B, image_size, image_size, 3) to logits.
      batch_size: global batch.
      image_size: input side.
      num_classes: label range.
      warmup: untimed runs of `steps` steps (the first traces the step).
      repeats: timed runs.
      steps: train steps per run.

    Returns:
      `common.rate_stats` of images/s over the timed runs.
    """
    x = tf.random.uniform((batch_size, image_size, image_size, 3), seed=1)
    y = tf.random.uniform((batch_size,), 0, num_classes, dtype=tf.int32, seed=2)

    def run():
        for _ in range(steps):
            model.train_on_batch(x, y)  # returns numpy logs: the step has finished

    return common.rate_stats(batch_size * steps, common.time_runs(run, warmup, repeats))


def conv_op_functions(layer, x, w, b, dy):
    """The step's three convolution ops of one Conv2D layer, as functions of no arguments.

    `forward`: the convolution with its bias and ReLU; `input gradient`: the
    gradient with respect to the layer's input, which the step skips for the
    first layer (the image needs none); `filter gradient`: the kernel and bias
    gradients. With oneDNN on, TensorFlow fuses the forward into one
    _MklNativeFusedConv2D and the filter gradient into one
    _MklNativeConv2DBackpropFilterWithBias, the kernels the step's profile shows.

    Args:
      layer: a built keras Conv2D, channels_last, groups 1, no dilation (its
        strides and padding are used).
      x, w, b, dy: the layer's input, kernel, bias and output gradient.

    Returns:
      {op name: callable returning the op's full result} in `CONV_OPS` order.
    """
    if layer.groups != 1 or tuple(layer.dilation_rate) != (1, 1) or layer.data_format != "channels_last":
        raise ValueError(
            "conv_op_functions expected groups 1, no dilation and channels_last. Received: layer %s with groups=%d, "
            "dilation_rate=%r, data_format=%s" % (layer.name, layer.groups, tuple(layer.dilation_rate), layer.data_format)
        )
    strides = [1, layer.strides[0], layer.strides[1], 1]
    padding = layer.padding.upper()
    return {
        "forward": lambda: tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, w, strides, padding), b)),
        "input gradient": lambda: tf.raw_ops.Conv2DBackpropInput(
            input_sizes=tf.shape(x), filter=w, out_backprop=dy, strides=strides, padding=padding
        ),
        "filter gradient": lambda: (
            tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=tf.shape(w), out_backprop=dy, strides=strides, padding=padding),
            tf.raw_ops.BiasAddGrad(out_backprop=dy),
        ),
    }


def keras_conv_op_times(model, batch_size, warmup, repeats):
    """Milliseconds of each convolution op of the train step, each op timed alone on all cores.

    The ops of `conv_op_functions`, on random tensors of the layers' shapes at
    `batch_size`. Their sum is the step's time if it did nothing else and ran
    them one after another with this TensorFlow's kernels on this machine; the
    rest of the step (LRN, pooling, the dense layers, dropout, the update) comes
    on top.

    Args:
      model: the Keras AlexNet whose step was timed (its Conv2D layers give the shapes).
      batch_size: the batch.
      warmup, repeats: untimed and timed calls of each op.

    Returns:
      A list of {"layer", "op", "ms": `common.summarize` of milliseconds}, in layer order.
    """
    times = []
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    for index, layer in enumerate(convs):
        x = tf.random.uniform((batch_size,) + tuple(layer.input.shape[1:]), seed=1)
        w = tf.random.normal(tuple(layer.kernel.shape), stddev=0.01, seed=2)
        b = tf.zeros((layer.filters,))
        dy = tf.random.normal((batch_size,) + tuple(layer.output.shape[1:]), seed=3)
        for op, fn in conv_op_functions(layer, x, w, b, dy).items():
            if op == "input gradient" and index == 0:
                continue
            # One element of each result is fetched: enough to wait for the op, no copy of its output timed.
            timed = tf.function(lambda fn=fn: [tf.reshape(t, [-1])[0] for t in tf.nest.flatten(fn())])
            durations = common.time_runs(lambda timed=timed: [t.numpy() for t in timed()], warmup, repeats)
            times.append({"layer": layer.name, "op": op, "ms": common.summarize([1000 * d for d in durations])})
    return times


def compile_alexnet(model, jit_compile):
    """Compiles `model` with the trainer's optimizer (trainer.step.build_optimizer):
    SGD, lr 0.01, momentum 0.9, the paper's coupled weight decay 5e-4 applied to
    the kernels in the update (trainer.optimizer.PaperSGD), logits loss. Build the
    model with weight_decay=0 (`paper_alexnet`), or it would decay twice."""

    model.compile(
        optimizer=PaperSGD(learning_rate=0.01, momentum=0.9, l2=5e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    return model


def paper_alexnet(num_classes, image_size, jit_compile=False, lrn=True):
    """`model.build_alexnet` compiled as the trainer trains it (see `compile_alexnet`)."""
    model = build_alexnet(num_classes, image_size=image_size, lrn=lrn, weight_decay=0.0)
    return compile_alexnet(model, jit_compile)


def measure(args):
    """The Keras worker's measurements: the result dict it prints."""
    # A CPU-to-CPU comparison with the PyTorch CPU build: GPUs, if any, belong to the distribute stage.
    tf.config.set_visible_devices([], "GPU")
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    if args.inter_op:
        tf.config.threading.set_inter_op_parallelism_threads(args.inter_op)
    result = {
        "framework": "keras",
        "version": "TF %s / Keras %s" % (tf.__version__, keras.__version__),
        "onednn": onednn_enabled(),
        "jit_compile": args.jit_compile,
        "lrn": not args.no_lrn,
        "threads": "intra %s, inter %s" % (args.threads or "default", args.inter_op or "default"),
        "batches": {},
    }

    def gemms():
        return {
            "tf.linalg.matmul": tf_matmul_gflops(args.matmul_size, 1, args.repeats),
            "numpy": numpy_matmul_gflops(args.matmul_size, 1, args.repeats),
        }

    before = gemms()
    for batch_size in args.batch_sizes:
        keras.utils.clear_session()
        model = paper_alexnet(args.num_classes, args.image_size, args.jit_compile, lrn=not args.no_lrn)
        result["batches"][str(batch_size)] = keras_step_rates(
            model, batch_size, args.image_size, args.num_classes, args.warmup, args.repeats, args.steps
        )
        if args.conv_ops:
            result.setdefault("conv_ops", {})[str(batch_size)] = keras_conv_op_times(model, batch_size, args.warmup, args.repeats)
        result["parameters"] = model.count_params()
    result["matmul"] = common.faster_gemms(before, gemms())
    return result


def build_parser():
    """The Keras worker's flags: `step_workers.worker_parser`'s and its own."""
    parser = step_workers.worker_parser("python -m benchmarks.keras_worker", __doc__.split("\n")[0])
    parser.add_argument("--jit_compile", action="store_true", help="compile the step with XLA")
    parser.add_argument("--no_lrn", action="store_true", help="build_alexnet(lrn=False), to price the LRN layers")
    parser.add_argument("--inter_op", type=non_negative_int, default=0,
                        help="TensorFlow inter-op threads (0: default)")  # fmt: skip
    parser.add_argument("--conv_ops", action="store_true",
                        help="also time each convolution op of the step alone (keras_conv_op_times)")  # fmt: skip
    return parser


def check_image_size(args):
    """The network's own minimum input side (pool5 at least 1x1), as a usage error."""
    if args.image_size < min_image_size():
        raise UsageError("argument --image_size: expected an int >= %d. Received: %d" % (min_image_size(), args.image_size))


def main(argv=None):
    """Worker: measures the Keras step and prints one JSON result line."""
    return step_workers.worker_main(build_parser(), measure, argv, check=check_image_size)


if __name__ == "__main__":
    sys.exit(main())
