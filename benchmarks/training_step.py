"""Training step: Keras `model.build_alexnet` vs the same network in plain PyTorch, against the GEMM ceiling.

    python -m benchmarks --stages train             # the stage, as written to BENCHMARKS.md
    python -m benchmarks.keras_worker --batch_sizes 32,128 --conv_ops
    python -m benchmarks.torch_worker --batch_sizes 32,128

Both frameworks train, on the CPU (GPUs are the distribute stage's), the paper's
single-tower network (LRN, overlapping pooling, dropout 0.5, 1000 classes,
227x227x3 inputs) with SGD momentum 0.9, lr 0.01,
coupled weight decay 5e-4 on the weights, one fixed random batch held in memory,
so only the model step is timed. Each runs in its own worker process
(`benchmarks.keras_worker`, `benchmarks.torch_worker`), which also times a large
float32 matrix multiply: the machine's practical float32 ceiling in the same run.
This module runs the workers, pools their rounds and writes the stage's tables.

Training FLOPs per image use the usual estimate: forward multiply-accumulates of
the convolutions and fully connected layers (counted by `model.summary` from the
layer shapes) x 2 FLOPs per MAC x 3 for forward + backward (the backward pass
costs two forward passes: one for the data gradient, one for the weight
gradient). ReLU, LRN, pooling, dropout, softmax and the optimizer update are not
counted; conv1 needs no data gradient, so the exact count is a little lower (see
`training_flops_per_image`).
"""
from importlib import util as importlib_util

from benchmarks import common, step_workers
from benchmarks.keras_worker import CONV_OPS
from model import build_alexnet, summary

WORKERS = {"keras": "benchmarks.keras_worker", "torch": "benchmarks.torch_worker"}


def layer_macs(image_size=227, num_classes=1000, two_tower=False):
    """Forward multiply-accumulates per image of AlexNet's convolutions and dense layers.

    Counted by `model.summary` on `model.build_alexnet` itself (which also
    refuses an input too small for its pooling).

    Args:
      image_size: side of the square input.
      num_classes: width of fc8.
      two_tower: the paper's two-GPU connectivity.

    Returns:
      A list of (layer name, output shape without batch, MACs per image), in layer order.
    """
    model = build_alexnet(num_classes, image_size=image_size, two_tower=two_tower, weight_decay=0.0)
    return [(name, shape, macs) for name, shape, _, macs, kind in summary.layer_table(model) if kind]


def training_flops_per_image(image_size=227, num_classes=1000, two_tower=False):
    """Training FLOPs per image: the usual 6 x forward MACs, and the exact count without conv1's data gradient.

    Args:
      image_size, num_classes, two_tower: as for `layer_macs`.

    Returns:
      {"forward_macs", "estimate" (6 x MACs, the figure used for GFLOP/s),
       "exact" (2 x (3 x MACs - conv1 MACs))}.
    """
    layers = layer_macs(image_size, num_classes, two_tower)
    macs = sum(m for _, _, m in layers)
    conv1 = layers[0][2]
    return {"forward_macs": macs, "estimate": 6 * macs, "exact": 2 * (3 * macs - conv1)}


def torch_available():
    """Whether `import torch` can be attempted here (the worker still reports a failing import)."""
    return importlib_util.find_spec("torch") is not None


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
            "steps": 3, "matmul_size": step_workers.MATMUL_SIZE, "rounds": 2}  # fmt: skip


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
        def pooled_ms(batch, i):
            return common.summarize([v for result in rounds for v in result["conv_ops"][batch][i]["ms"]["values"]])

        pooled["conv_ops"] = {
            batch: [dict(entry, ms=pooled_ms(batch, i)) for i, entry in enumerate(entries)]
            for batch, entries in rounds[0]["conv_ops"].items()
        }
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


def run_worker(framework, label, settings, extra, env, round_name):
    """One worker run of the stage: its result (or {"error"} / {"unavailable"}), with its label and command."""
    s = settings
    args = step_workers.worker_args(s["batch_sizes"], s["image_size"], s["num_classes"], s["warmup"], s["repeats"],
                                    s["steps"], s["matmul_size"], extra)  # fmt: skip
    command = " ".join("%s=%s" % kv for kv in env.items()) + (" " if env else "")
    command += "python -m %s %s" % (WORKERS[framework], " ".join(str(a) for a in args))
    if framework == "torch" and not torch_available():
        result = {"framework": "torch", "unavailable": step_workers.TORCH_MISSING}
    else:
        try:
            result = common.run_worker(WORKERS[framework], args, env=env)
        except common.WorkerError as err:
            result = {"framework": framework, "error": "%s: %s" % (round_name, err) if round_name else str(err)}
    result.update(label=label, command=command)
    return result


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
        log("train: %s%s" % (label, " (%s)" % round_name if round_name else ""))
        results.append(run_worker(framework, label, s, extra, env, round_name))
    return {
        "settings": settings,
        "flops": training_flops_per_image(settings["image_size"], settings["num_classes"]),
        "layers": layer_macs(settings["image_size"], settings["num_classes"]),
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
            [_ms(c["total_ms"]), "%.0f%%" % (100 * c["share_of_step"]), "%.1f" % c["images_per_s"],
             _gflops_cell(c["gflops"], best)]
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
        "AlexNet (single tower, LRN, dropout, %d classes), %dx%d inputs, SGD momentum 0.9 and weight decay 5e-4 on "
        "the weights in the update (both frameworks; Keras: the trainer's PaperSGD), one fixed batch in "
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
        out.append("Float32 matrix-multiply ceiling, measured in the same run, in each worker before and after its steps, "
                   "the fastest kept (GFLOP/s):\n")  # fmt: skip
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
