"""Training step: Keras `model.build_alexnet` vs the same network in plain PyTorch, against the GEMM ceiling.

    python -m benchmarks --stages train             # the stage, as written to BENCHMARKS.md
    python -m benchmarks.training_step --worker --framework keras --batch_sizes 32,128
    python -m benchmarks.training_step --worker --framework torch --batch_sizes 32,128

Both frameworks train, on the CPU (GPUs are the distribute stage's), the paper's
single-tower network (LRN, overlapping pooling, dropout 0.5, 1000 classes,
227x227x3 inputs) with SGD momentum 0.9, lr 0.01,
coupled weight decay 5e-4 on the weights, one fixed random batch held in memory,
so only the model step is timed. Each worker also times a large float32 matrix
multiply (TensorFlow and numpy, or torch), the machine's practical float32
ceiling in the same run. With `--conv_ops` (the stage's default Keras worker)
the Keras worker also times each convolution op of the step by itself
(`keras_conv_op_times`): how close TensorFlow's convolution kernels alone come
to the ceiling on this machine, beside how close the whole step comes.

Training FLOPs per image use the usual estimate: forward multiply-accumulates of
the convolutions and fully connected layers (from the layer shapes) x 2 FLOPs per
MAC x 3 for forward + backward (the backward pass costs two forward passes: one
for the data gradient, one for the weight gradient). ReLU, LRN, pooling, dropout,
softmax and the optimizer update are not counted; conv1 needs no data gradient,
so the exact count is a little lower (see `training_flops_per_image`).
"""
import argparse
import os
import sys
from importlib import util as importlib_util

from benchmarks import common

MATMUL_SIZE = 4096  # 137 GFLOP per product: long enough to time, large enough for full-speed GEMM kernels
TORCH_MISSING = "PyTorch is not installed: pip install -e '.[bench]' to compare"


def alexnet_layer_macs(image_size=227, num_classes=1000, two_tower=False):
    """Forward multiply-accumulates of AlexNet's convolutions and dense layers, from the layer shapes.

    Same stack as `model.build_alexnet` with overlapping pooling: conv1 11x11/4
    valid, pools 3/2 valid, conv2..conv5 'same'. With `two_tower`, conv2, conv4
    and conv5 see half of the input channels.

    Args:
      image_size: side of the square input (>= 67).
      num_classes: width of fc8.
      two_tower: the paper's two-GPU connectivity.

    Returns:
      A list of (layer name, output shape without batch, MACs per image).
    """
    if image_size < 67:
        raise ValueError("alexnet_layer_macs expected image_size >= 67. Received: image_size=%r" % (image_size,))
    pool = lambda s: (s - 3) // 2 + 1  # noqa: E731  (3x3 stride 2, valid)
    groups = 2 if two_tower else 1
    layers = []
    s = (image_size - 11) // 4 + 1
    layers.append(("conv1", (s, s, 96), s * s * 96 * 11 * 11 * 3))
    s = pool(s)
    layers.append(("conv2", (s, s, 256), s * s * 256 * 5 * 5 * 96 // groups))
    s = pool(s)
    layers.append(("conv3", (s, s, 384), s * s * 384 * 3 * 3 * 256))
    layers.append(("conv4", (s, s, 384), s * s * 384 * 3 * 3 * 384 // groups))
    layers.append(("conv5", (s, s, 256), s * s * 256 * 3 * 3 * 384 // groups))
    s = pool(s)
    flat = s * s * 256
    layers.append(("fc6", (4096,), flat * 4096))
    layers.append(("fc7", (4096,), 4096 * 4096))
    layers.append(("fc8", (num_classes,), 4096 * num_classes))
    return layers


def training_flops_per_image(image_size=227, num_classes=1000, two_tower=False):
    """Training FLOPs per image: the usual 6 x forward MACs, and the exact count without conv1's data gradient.

    Args:
      image_size, num_classes, two_tower: as for `alexnet_layer_macs`.

    Returns:
      {"forward_macs", "estimate" (6 x MACs, the figure used for GFLOP/s),
       "exact" (2 x (3 x MACs - conv1 MACs))}.
    """
    layers = alexnet_layer_macs(image_size, num_classes, two_tower)
    macs = sum(m for _, _, m in layers)
    conv1 = layers[0][2]
    return {"forward_macs": macs, "estimate": 6 * macs, "exact": 2 * (3 * macs - conv1)}


# ---------------------------------------------------------------- Keras (TensorFlow) worker


def onednn_enabled():
    """Whether this TensorFlow build runs with oneDNN (MKL) kernels; None when TF does not say."""
    try:
        from tensorflow.python.util import _pywrap_util_port  # pylint: disable=import-outside-toplevel
    except ImportError:
        return None
    return bool(_pywrap_util_port.IsMklEnabled())


def tf_matmul_gflops(n, warmup, repeats):
    """GFLOP/s of an n x n float32 `tf.linalg.matmul` (2 n^3 FLOPs), timed to completion."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    a = tf.random.uniform((n, n))
    b = tf.random.uniform((n, n))
    product = tf.function(lambda: tf.reduce_sum(tf.linalg.matmul(a, b)))  # a scalar fetch syncs cheaply
    return common.rate_stats(2 * n**3 / 1e9, common.time_runs(lambda: product().numpy(), warmup, repeats))


def numpy_matmul_gflops(n, warmup, repeats):
    """GFLOP/s of an n x n float32 numpy matrix product (numpy's BLAS)."""
    import numpy as np  # pylint: disable=import-outside-toplevel

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
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    x = tf.random.uniform((batch_size, image_size, image_size, 3), seed=1)
    y = tf.random.uniform((batch_size,), 0, num_classes, dtype=tf.int32, seed=2)

    def run():
        for _ in range(steps):
            model.train_on_batch(x, y)  # returns numpy logs: the step has finished

    return common.rate_stats(batch_size * steps, common.time_runs(run, warmup, repeats))


CONV_OPS = ("forward", "input gradient", "filter gradient")


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
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

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
    import keras  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

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
    """Compiles `model` with the trainer's optimizer (trainer.loop.build_optimizer):
    SGD, lr 0.01, momentum 0.9, the paper's coupled weight decay 5e-4 applied to
    the kernels in the update (trainer.optimizer.PaperSGD), logits loss. Build the
    model with weight_decay=0 (`paper_alexnet`), or it would decay twice."""
    import keras  # pylint: disable=import-outside-toplevel

    from trainer.optimizer import PaperSGD  # pylint: disable=import-outside-toplevel

    model.compile(
        optimizer=PaperSGD(learning_rate=0.01, momentum=0.9, l2=5e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    return model


def paper_alexnet(num_classes, image_size, jit_compile=False, lrn=True):
    """`model.build_alexnet` compiled as the trainer trains it (see `compile_alexnet`)."""
    from model import build_alexnet  # pylint: disable=import-outside-toplevel

    model = build_alexnet(num_classes, image_size=image_size, lrn=lrn, weight_decay=0.0)
    return compile_alexnet(model, jit_compile)


def run_keras(args):
    """The Keras worker's measurements (see `main`)."""
    import keras  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

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
    result["matmul"] = _faster(before, gemms())
    return result


def _faster(before, after):
    """Per GEMM, the faster of its measurements before and after the steps: the
    ceiling is the best the machine gave in this worker, so "% of ceiling" errs low."""
    return {name: max(before[name], after[name], key=lambda stats: stats["median"]) for name in before}


# ---------------------------------------------------------------- PyTorch worker


def torch_alexnet(num_classes=1000, image_size=227):
    """The same single-tower AlexNet in plain `torch.nn` (channels-first, as PyTorch users write it).

    LRN: `torch.nn.LocalResponseNorm` divides alpha by the window size (Caffe's
    convention), so alpha = 5 x 1e-4 gives the paper's k=2, n=5, alpha=1e-4, beta=0.75.
    Weights N(0, 0.01), biases 1 in conv2, conv4, conv5, fc6, fc7 (the paper's init).

    Args:
      num_classes: width of fc8.
      image_size: input side (fixes fc6's input width).

    Returns:
      A `torch.nn.Sequential` from (B, 3, image_size, image_size) to logits.
    """
    import torch  # pylint: disable=import-outside-toplevel
    from torch import nn  # pylint: disable=import-outside-toplevel

    flat = dict((name, shape) for name, shape, _ in alexnet_layer_macs(image_size, num_classes))
    s = (flat["conv5"][0] - 3) // 2 + 1
    lrn = lambda: nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)  # noqa: E731
    net = nn.Sequential(
        nn.Conv2d(3, 96, 11, stride=4), nn.ReLU(inplace=True), lrn(), nn.MaxPool2d(3, 2),
        nn.Conv2d(96, 256, 5, padding=2), nn.ReLU(inplace=True), lrn(), nn.MaxPool2d(3, 2),
        nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Flatten(),
        nn.Linear(s * s * 256, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(4096, num_classes),
    )  # fmt: skip
    bias_one = {3, 10, 12, 16, 19}  # conv2, conv4, conv5, fc6, fc7
    with torch.no_grad():
        for index, layer in enumerate(net):
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                layer.weight.normal_(0.0, 0.01)
                layer.bias.fill_(1.0 if index in bias_one else 0.0)
    return net


def torch_matmul_gflops(n, warmup, repeats):
    """GFLOP/s of an n x n float32 `torch.mm`."""
    import torch  # pylint: disable=import-outside-toplevel

    a = torch.rand(n, n)
    b = torch.rand(n, n)
    return common.rate_stats(2 * n**3 / 1e9, common.time_runs(lambda: torch.mm(a, b), warmup, repeats))


def torch_step_rates(batch_size, image_size, num_classes, warmup, repeats, steps, channels_last=False):
    """Images/s of a PyTorch SGD momentum training step of `torch_alexnet` on one fixed random batch."""
    import torch  # pylint: disable=import-outside-toplevel

    torch.manual_seed(0)
    net = torch_alexnet(num_classes, image_size).train()
    x = torch.rand(batch_size, 3, image_size, image_size)
    y = torch.randint(0, num_classes, (batch_size,))
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    weights = [p for name, p in net.named_parameters() if name.endswith("weight")]
    biases = [p for name, p in net.named_parameters() if name.endswith("bias")]
    # Coupled weight decay on weights only, as build_alexnet's kernel regularizer.
    optimizer = torch.optim.SGD(
        [{"params": weights, "weight_decay": 5e-4}, {"params": biases, "weight_decay": 0.0}], lr=0.01, momentum=0.9
    )
    loss_fn = torch.nn.CrossEntropyLoss()

    def run():
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(net(x), y)
            loss.backward()
            optimizer.step()
        return loss.item()

    return common.rate_stats(batch_size * steps, common.time_runs(run, warmup, repeats))


def run_torch(args):
    """The PyTorch worker's measurements, or {'unavailable': ...} when PyTorch is not installed."""
    try:
        import torch  # pylint: disable=import-outside-toplevel
    except ImportError:
        return {"framework": "torch", "unavailable": TORCH_MISSING}
    if args.threads:
        torch.set_num_threads(args.threads)
    result = {
        "framework": "torch",
        "version": "PyTorch %s" % torch.__version__,
        "onednn": bool(torch.backends.mkldnn.is_available()),
        "channels_last": args.channels_last,
        "threads": torch.get_num_threads(),
        "batches": {},
    }
    before = {"torch.mm": torch_matmul_gflops(args.matmul_size, 1, args.repeats)}
    for batch_size in args.batch_sizes:
        result["batches"][str(batch_size)] = torch_step_rates(
            batch_size, args.image_size, args.num_classes, args.warmup, args.repeats, args.steps, args.channels_last
        )
    result["matmul"] = _faster(before, {"torch.mm": torch_matmul_gflops(args.matmul_size, 1, args.repeats)})
    result["parameters"] = sum(p.numel() for p in torch_alexnet(args.num_classes, args.image_size).parameters())
    return result


def torch_available():
    """Whether `import torch` can be attempted here (the worker still reports a failing import)."""
    return importlib_util.find_spec("torch") is not None


# ---------------------------------------------------------------- the stage, run from benchmarks/__main__


def worker_args(framework, batch_sizes, image_size, num_classes, warmup, repeats, steps, matmul_size, extra=()):
    """The command-line arguments of one worker run."""
    return [
        "--worker", "--framework", framework, "--batch_sizes", ",".join(str(b) for b in batch_sizes),
        "--image_size", image_size, "--num_classes", num_classes, "--warmup", warmup, "--repeats", repeats,
        "--steps", steps, "--matmul_size", matmul_size, *extra,
    ]  # fmt: skip


def stage_settings(tiny, repeats):
    """Sizes for a full or a `--tiny` run of the stage.

    `rounds`: the default Keras and PyTorch workers run that many times each,
    alternating (Keras, PyTorch, Keras, PyTorch), and their timed runs are
    pooled: a slow spell of a shared machine then falls on both frameworks,
    not on whichever happened to run during it.
    """
    if tiny:
        return {"batch_sizes": [4], "image_size": 67, "num_classes": 10, "warmup": 1, "repeats": repeats, "steps": 1,
                "matmul_size": 256, "rounds": 1}  # fmt: skip
    return {"batch_sizes": [32, 128], "image_size": 227, "num_classes": 1000, "warmup": 1, "repeats": repeats,
            "steps": 3, "matmul_size": MATMUL_SIZE, "rounds": 2}  # fmt: skip


def pool_rounds(rounds):
    """One worker result from several runs of the same worker command.

    Args:
      rounds: worker results, in the order they ran.

    Returns:
      The first round's result with, per batch, the statistics of all rounds'
      timed runs together and, per GEMM, the round with the fastest median
      (the ceiling is the best the machine gave). A failed or unavailable round
      makes the whole result that round's.
    """
    for result in rounds:
        if "batches" not in result:
            return result
    pooled = dict(rounds[0], rounds=len(rounds))
    pooled["batches"] = {
        batch: common.summarize([v for result in rounds for v in result["batches"][batch]["values"]])
        for batch in rounds[0]["batches"]
    }
    if all("conv_ops" in result for result in rounds):
        pooled["conv_ops"] = {
            batch: [dict(entry, ms=common.summarize([v for result in rounds for v in result["conv_ops"][batch][i]["ms"]["values"]]))
                    for i, entry in enumerate(entries)]
            for batch, entries in rounds[0]["conv_ops"].items()
        }  # fmt: skip
    if all("matmul" in result for result in rounds):
        pooled["matmul"] = {
            name: max((result["matmul"][name] for result in rounds), key=lambda stats: stats["median"])
            for name in rounds[0]["matmul"]
        }
    return pooled


def variant_runs(settings):
    """The investigation runs, at the smallest batch: what changes the Keras step and the PyTorch step."""
    small = dict(settings, batch_sizes=settings["batch_sizes"][:1])
    return [
        ("keras", "Keras, oneDNN off (TF_ENABLE_ONEDNN_OPTS=0)", small, (), {"TF_ENABLE_ONEDNN_OPTS": "0"}),
        ("keras", "Keras, XLA (jit_compile=True)", small, ("--jit_compile",), {}),
        ("keras", "Keras, 1 inter-op thread (ops run one at a time, each on all cores)", small, ("--inter_op", "1"), {}),
        ("keras", "Keras, without LRN (what the two LRN layers cost)", small, ("--no_lrn",), {}),
        ("torch", "PyTorch, channels_last", small, ("--channels_last",), {}),
    ]


def run_stage(tiny=False, repeats=3, variants=True, log=print):
    """Runs the Keras and PyTorch workers (and the investigation variants) and collects their results.

    Args:
      tiny: small input, batch and matrix: checks the machinery in seconds, figures meaningless.
      repeats: timed runs per figure (per round for the default Keras and PyTorch
        workers, which run `stage_settings(...)["rounds"]` times each, alternating).
      variants: also run the oneDNN / XLA / threads / channels_last variants (not in tiny mode).
      log: progress printer.

    Returns:
      {"settings", "flops", "keras", "torch", "variants": [...]} where each run is a
      worker result or {"error": message} / {"unavailable": message}.
    """
    settings = stage_settings(tiny, repeats)
    defaults = [("keras", "Keras (default)", settings, ("--conv_ops",), {}), ("torch", "PyTorch (default)", settings, (), {})]
    runs = [(run, "round %d of %d" % (r + 1, settings["rounds"]) if settings["rounds"] > 1 else "")
            for r in range(settings["rounds"]) for run in defaults]  # fmt: skip
    if variants and not tiny:
        runs += [(run, "") for run in variant_runs(settings)]
    results = []
    for (framework, label, s, extra, env), round_name in runs:
        args = worker_args(framework, s["batch_sizes"], s["image_size"], s["num_classes"], s["warmup"],
                           s["repeats"], s["steps"], s["matmul_size"], extra)  # fmt: skip
        command = " ".join("%s=%s" % kv for kv in env.items()) + (" " if env else "")
        command += "python -m benchmarks.training_step " + " ".join(str(a) for a in args)
        log("train: %s%s" % (label, " (%s)" % round_name if round_name else ""))
        if framework == "torch" and not torch_available():
            result = {"framework": "torch", "unavailable": TORCH_MISSING}
        else:
            try:
                result = common.run_worker("benchmarks.training_step", args, env=env)
            except common.WorkerError as err:
                result = {"framework": framework, "error": "%s: %s" % (round_name, err) if round_name else str(err)}
        result.update(label=label, command=command)
        results.append(result)
    return {
        "settings": settings,
        "flops": training_flops_per_image(settings["image_size"], settings["num_classes"]),
        "layers": alexnet_layer_macs(settings["image_size"], settings["num_classes"]),
        "keras": pool_rounds(results[0:2 * settings["rounds"]:2]),
        "torch": pool_rounds(results[1:2 * settings["rounds"]:2]),
        "variants": results[2 * settings["rounds"]:],
    }


def ceiling(stage):
    """The largest median GEMM GFLOP/s measured in the stage's default runs: (GFLOP/s stats, name)."""
    best = None
    for run in (stage["keras"], stage["torch"]):
        for name, stats in run.get("matmul", {}).items():
            if best is None or stats["median"] > best[0]["median"]:
                best = (stats, name)
    return best


def _op_gflop(stage, layer, batch):
    """GFLOP of one convolution op of `layer` at `batch`: each op (forward, either gradient) does
    the layer's forward multiply-accumulates, 2 FLOPs each."""
    return 2 * dict((name, m) for name, _, m in stage["layers"])[layer] * batch / 1e9


def conv_summary(stage, batch):
    """What the Keras step's convolutions cost when each op runs alone (`keras_conv_op_times`).

    Returns:
      None when the Keras run has no op times for `batch`; else {"ms": {op kind:
      summed median ms}, "total_ms", "images_per_s" (the batch over the summed
      time: the step's rate if it did nothing else and ran these ops one after
      another), "gflops" (the FLOPs of the timed ops, 2 x the layer's MACs x
      the batch each, over the summed time), "share_of_ceiling" (that over the
      GEMM ceiling; None without a ceiling), "share_of_step" (summed time over
      the measured step's median time)}.
    """
    run = stage["keras"]
    entries = run.get("conv_ops", {}).get(str(batch))
    if not entries or "batches" not in run:
        return None
    ms = {op: sum(e["ms"]["median"] for e in entries if e["op"] == op) for op in CONV_OPS}
    total = sum(ms.values())
    gflops = sum(_op_gflop(stage, e["layer"], batch) for e in entries) / (total / 1000.0)
    best = ceiling(stage)
    step_ms = 1000.0 * batch / run["batches"][str(batch)]["median"]
    return {"ms": ms, "total_ms": total, "images_per_s": 1000.0 * batch / total, "gflops": gflops,
            "share_of_ceiling": gflops / best[0]["median"] if best else None, "share_of_step": total / step_ms}  # fmt: skip


def _ms(value):
    """Milliseconds for a table cell: whole above 10, one decimal below."""
    return "%.0f" % value if value >= 10 else "%.1f" % value


def _gflops_cell(gflops, best):
    """'N GFLOP/s (M%)' of the ceiling, or without the share when there is no ceiling."""
    return "%.0f GFLOP/s" % gflops + (" (%.0f%%)" % (100 * gflops / best[0]["median"]) if best else "")


def _render_conv_ops(stage):
    """The tables of the convolutions alone: per batch, and per layer and op at the first batch."""
    settings, keras_run, best = stage["settings"], stage["keras"], ceiling(stage)
    summaries = [(b, conv_summary(stage, b)) for b in settings["batch_sizes"]]
    summaries = [(b, c) for b, c in summaries if c]
    if not summaries:
        return []
    fused = "fused by oneDNN, as in the step" if keras_run.get("onednn") else "oneDNN off: not fused"
    out = ["Convolutions alone (Keras worker, same run): each convolution op of the step timed by itself on all "
           "cores, on random tensors of its shapes: the forward with its bias and ReLU and the filter gradient "
           "with the bias gradient (%s), and the input gradient (none for conv1: the image needs none). Their sum "
           "(of medians) is the step's time if it did nothing else and ran these ops one after another; the rest of "
           "the step (LRN, pooling, dense layers, dropout, the update) and the ops' cost inside it come on top. "
           "GFLOP/s: 2 x the layer's MACs x the batch per op, over its time.\n" % fused]  # fmt: skip
    rows = [[b] + [_ms(c["ms"][op]) for op in CONV_OPS] +
            [_ms(c["total_ms"]), "%.0f%%" % (100 * c["share_of_step"]), "%.1f" % c["images_per_s"], _gflops_cell(c["gflops"], best)]
            for b, c in summaries]  # fmt: skip
    out.append(common.markdown_table(
        ["batch"] + ["%s ms" % op for op in CONV_OPS] +
        ["all convolutions ms", "share of the measured step", "images/s if the step were only these ops",
         "their GFLOP/s (% of ceiling)"],
        rows))  # fmt: skip
    batch = summaries[0][0]
    cells = {}
    for e in keras_run["conv_ops"][str(batch)]:
        ms = e["ms"]["median"]
        gflops = _op_gflop(stage, e["layer"], batch) / (ms / 1000.0)
        cells.setdefault(e["layer"], {})[e["op"]] = "%s ms, %s" % (_ms(ms), _gflops_cell(gflops, best))
    out.append("Per layer at batch %d (median ms; GFLOP/s of the op and its %% of the ceiling):\n" % batch)
    out.append(common.markdown_table(["layer"] + list(CONV_OPS),
                                     [[layer] + [ops.get(op, "-") for op in CONV_OPS] for layer, ops in cells.items()]))
    return out


def _cell(run, batch):
    if "unavailable" in run:
        return run["unavailable"]
    if "error" in run:
        return "failed: " + run["error"]
    return common.format_stats(run["batches"][str(batch)])


def render(stage):
    """The stage's markdown: GEMM ceiling, the Keras vs PyTorch table, the FLOP count, the variants."""
    settings, flops = stage["settings"], stage["flops"]
    keras_run, torch_run = stage["keras"], stage["torch"]
    gflop_per_image = flops["estimate"] / 1e9
    best = ceiling(stage)
    out = ["### Training step\n"]
    rounds = settings.get("rounds", 1)
    timed_runs = "%d timed runs" % (rounds * settings["repeats"])
    if rounds > 1:
        timed_runs += (" (%d rounds of %d, the Keras and PyTorch workers alternating; the investigation rows "
                       "below are one round each)" % (rounds, settings["repeats"]))  # fmt: skip
    out.append(
        "AlexNet (single tower, LRN, dropout, %d classes), %dx%d inputs, SGD momentum 0.9 and weight decay 5e-4 on the weights in the update (both frameworks; Keras: the trainer's PaperSGD), one fixed batch in "
        "memory. Images/s: median (min-max) of %s of %d steps, after %d warm-up run(s) per worker. "
        "Training cost: %.2f GFLOP per image (%d forward MACs x 2 x 3; %.2f GFLOP without conv1's data gradient).\n"
        % (settings["num_classes"], settings["image_size"], settings["image_size"], timed_runs,
           settings["steps"], settings["warmup"], gflop_per_image, flops["forward_macs"], flops["exact"] / 1e9)
    )  # fmt: skip
    rows = []
    for run in (keras_run, torch_run):
        for name, stats in run.get("matmul", {}).items():
            rows.append(["%s (%s)" % (name, run["version"]), "%d x %d float32" % ((settings["matmul_size"],) * 2),
                         common.format_stats(stats)])  # fmt: skip
    if rows:
        out.append("Float32 matrix-multiply ceiling, measured in the same run, in each worker before and after its steps, the fastest kept (GFLOP/s):\n")
        out.append(common.markdown_table(["GEMM", "size", "GFLOP/s"], rows))
        out.append("Ceiling used below: **%.1f GFLOP/s** (%s, the fastest median).\n" % (best[0]["median"], best[1]))
    headers = ["batch", "Keras images/s", "PyTorch images/s", "Keras / PyTorch", "Keras GFLOP/s", "Keras % of ceiling",
               "PyTorch GFLOP/s", "PyTorch % of ceiling"]  # fmt: skip
    rows = []
    for batch in settings["batch_sizes"]:
        row = [batch, _cell(keras_run, batch), _cell(torch_run, batch)]
        ok_k, ok_t = "batches" in keras_run, "batches" in torch_run
        kmed = keras_run["batches"][str(batch)]["median"] if ok_k else None
        tmed = torch_run["batches"][str(batch)]["median"] if ok_t else None
        row.append("%.2fx" % (kmed / tmed) if ok_k and ok_t else "n/a")
        for med in (kmed, tmed):
            if med is None or best is None:
                row += ["n/a", "n/a"]
            else:
                row += ["%.1f" % (med * gflop_per_image), "%.0f%%" % (100 * med * gflop_per_image / best[0]["median"])]
        rows.append(row)
    out.append(common.markdown_table(headers, rows))
    out += _render_conv_ops(stage)
    bullets = []
    for run in (keras_run, torch_run):
        extra = ""
        if "onednn" in run:
            extra = " (oneDNN %s, threads %s)" % ("on" if run["onednn"] else "off", run.get("threads"))
        bullets.append("- %s%s: `%s`\n" % (run.get("version", run["label"]), extra, run["command"]))
    out.append("Commands:\n\n" + "".join(bullets))
    if stage["variants"]:
        out.append("Investigation, batch %d (each row its own process, same run):\n" % settings["batch_sizes"][0])
        base = {"keras": keras_run, "torch": torch_run}
        rows = []
        batch = settings["batch_sizes"][0]
        for run in stage["variants"]:
            ref = base[run["framework"]]
            if "batches" in run and "batches" in ref:
                ratio = "%.2fx" % (run["batches"][str(batch)]["median"] / ref["batches"][str(batch)]["median"])
            else:
                ratio = "n/a"
            rows.append([run["label"], _cell(run, batch), ratio, "`%s`" % run["command"]])
        out.append(common.markdown_table(["variant", "images/s", "vs default", "command"], rows))
    return "\n".join(x if x.endswith("\n") else x + "\n" for x in out)


# ---------------------------------------------------------------- worker entry point


def _int_list(text):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError("expected comma-separated integers. Received: %r" % text) from err
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("expected positive integers. Received: %r" % text)
    return values


def main(argv=None):
    """Worker: measures one framework and prints one JSON result line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.training_step", description=__doc__.split("\n")[0])
    parser.add_argument("--worker", action="store_true", required=True, help="run one measurement process")
    parser.add_argument("--framework", choices=("keras", "torch"), required=True)
    parser.add_argument("--batch_sizes", type=_int_list, default=[32, 128])
    parser.add_argument("--image_size", type=int, default=227)
    parser.add_argument("--num_classes", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before timing")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per figure")
    parser.add_argument("--steps", type=int, default=2, help="train steps per timed run")
    parser.add_argument("--matmul_size", type=int, default=MATMUL_SIZE)
    parser.add_argument("--jit_compile", action="store_true", help="Keras: compile the step with XLA")
    parser.add_argument("--no_lrn", action="store_true", help="Keras: build_alexnet(lrn=False), to price the LRN layers")
    parser.add_argument("--channels_last", action="store_true", help="PyTorch: channels_last memory format")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: framework default)")
    parser.add_argument("--inter_op", type=int, default=0, help="Keras: TensorFlow inter-op threads (0: default)")
    parser.add_argument("--conv_ops", action="store_true",
                        help="Keras: also time each convolution op of the step alone (keras_conv_op_times)")
    args = parser.parse_args(argv)
    if args.image_size < 67 or args.repeats < 1 or args.steps < 1 or args.warmup < 0 or args.matmul_size < 1:
        parser.error("expected image_size >= 67, repeats >= 1, steps >= 1, warmup >= 0, matmul_size >= 1. Received: "
                     "%d, %d, %d, %d, %d" % (args.image_size, args.repeats, args.steps, args.warmup, args.matmul_size))
    common.emit_result(run_keras(args) if args.framework == "keras" else run_torch(args))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
