"""Tests of `python -m benchmarks`: the machinery, not the speed.

Benchmarks are not tests: the suite runs the command in --tiny mode and checks
that it writes a well-formed report whose cells are measured numbers or
explicit "not measured" notes, plus the pure parts (FLOP count from layer
shapes, statistics, tables, flag errors) against independent references.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import __main__ as bench_main
from benchmarks import common, distribute, training_step

REPO = Path(__file__).resolve().parents[1]
STATS_CELL = re.compile(r"^\d+\.\d+ \(\d+\.\d+-\d+\.\d+\)$")


# ---------------------------------------------------------------- FLOPs from layer shapes


def _keras_macs(model):
    """MACs per image from a built Keras model's own layer shapes (an independent count)."""
    total = {}
    for layer in model.layers:
        if layer.name.startswith("conv"):
            _, h, w, c = layer.output.shape
            kh, kw, cin, _ = layer.kernel.shape  # cin is already per group for grouped convolutions
            total[layer.name] = h * w * c * kh * kw * cin
        elif layer.name.startswith("fc"):
            cin, cout = layer.kernel.shape
            total[layer.name] = cin * cout
    return total


@pytest.mark.parametrize("image_size,two_tower", [(99, True), (131, False)])  # 227 is pinned by hand below
def test_layer_macs_match_the_keras_model(image_size, two_tower):
    from model import build_alexnet

    model = build_alexnet(1000, image_size=image_size, two_tower=two_tower)
    ours = {name: macs for name, _, macs in training_step.alexnet_layer_macs(image_size, 1000, two_tower)}
    assert ours == _keras_macs(model)
    shapes = {name: shape for name, shape, _ in training_step.alexnet_layer_macs(image_size, 1000, two_tower)}
    assert shapes["conv5"] == tuple(model.get_layer("conv5").output.shape[1:])


def test_training_flops_of_the_paper_network():
    # 227x227, 1000 classes: conv1 55*55*96*363, conv2 27*27*256*2400, conv3 13*13*384*2304,
    # conv4 13*13*384*3456, conv5 13*13*256*3456, fc6 9216*4096, fc7 4096*4096, fc8 4096*1000.
    macs = 105_415_200 + 447_897_600 + 149_520_384 + 224_280_576 + 149_520_384 + 37_748_736 + 16_777_216 + 4_096_000
    flops = training_step.training_flops_per_image(227, 1000)
    assert flops["forward_macs"] == macs == 1_135_256_096
    assert flops["estimate"] == 6 * macs
    assert flops["exact"] == 2 * (3 * macs - 105_415_200)
    with pytest.raises(ValueError, match="image_size >= 67. Received: image_size=63"):
        training_step.alexnet_layer_macs(63)


def test_torch_network_has_the_paper_parameter_count():
    torch = pytest.importorskip("torch")
    net = training_step.torch_alexnet(1000, 227)
    assert sum(p.numel() for p in net.parameters()) == 62_378_344  # as model.build_alexnet, single tower
    small = training_step.torch_alexnet(10, 67)
    assert tuple(small(torch.zeros(2, 3, 67, 67)).shape) == (2, 10)


# ---------------------------------------------------------------- statistics and tables


def test_time_runs_calls_warmup_then_times_repeats():
    calls = []
    durations = common.time_runs(lambda: calls.append(1), warmup=2, repeats=3)
    assert len(calls) == 5 and len(durations) == 3 and all(d >= 0 for d in durations)
    with pytest.raises(ValueError, match="repeats >= 1"):
        common.time_runs(lambda: None, 0, 0)


def test_rate_stats_median_min_max():
    stats = common.rate_stats(32, [2.0, 1.0, 4.0])
    assert stats["values"] == [16.0, 32.0, 8.0]
    assert (stats["median"], stats["min"], stats["max"], stats["n"]) == (16.0, 8.0, 32.0, 3)
    assert common.format_stats(stats) == "16.0 (8.0-32.0)"
    assert common.scale_stats(stats, 0.5)["max"] == 16.0


def test_pool_rounds_pools_timed_runs_and_keeps_the_fastest_gemm():
    def worker(rates, gemm):
        return {"framework": "keras", "batches": {"32": common.summarize(rates)},
                "matmul": {"numpy": common.summarize([gemm])}}  # fmt: skip

    pooled = training_step.pool_rounds([worker([20.0, 21.0, 19.0], 180.0), worker([24.0, 25.0, 26.0], 200.0)])
    assert pooled["batches"]["32"]["values"] == [20.0, 21.0, 19.0, 24.0, 25.0, 26.0]
    assert (pooled["batches"]["32"]["median"], pooled["batches"]["32"]["min"], pooled["batches"]["32"]["max"]) == (22.5, 19.0, 26.0)
    assert pooled["matmul"]["numpy"]["median"] == 200.0 and pooled["rounds"] == 2
    # A round that failed makes the result a failure, not a figure from the other round alone.
    failed = {"framework": "keras", "error": "exited with code 1"}
    assert training_step.pool_rounds([worker([20.0], 180.0), failed]) is failed
    assert training_step.stage_settings(False, 3)["rounds"] == 2


def _fake_training_workers(monkeypatch, fail_call=None):
    """Replaces the worker processes of the train stage: call n returns rate 20 + n
    (Keras) or 10 + n (PyTorch) at batch 32, and GEMM 100 + n GFLOP/s."""
    calls = []

    def run_worker(module, args, env=None):
        framework = args[args.index("--framework") + 1]
        calls.append(framework)
        n = len(calls)
        if n == fail_call:
            raise common.WorkerError("exited with code 1: boom")
        rate = (20.0 if framework == "keras" else 10.0) + n
        return {"framework": framework, "version": framework + " 1.0",
                "batches": {"32": common.summarize([rate]), "128": common.summarize([rate / 2])},
                "matmul": {framework + " mm": common.summarize([100.0 + n])}}  # fmt: skip

    monkeypatch.setattr(common, "run_worker", run_worker)
    monkeypatch.setattr(training_step, "torch_available", lambda: True)
    return calls


def test_train_stage_alternates_rounds_and_pools_each_framework(monkeypatch):
    calls = _fake_training_workers(monkeypatch)
    stage = training_step.run_stage(tiny=False, repeats=1, variants=False, log=lambda text: None)
    assert calls == ["keras", "torch", "keras", "torch"]
    assert stage["keras"]["batches"]["32"]["values"] == [21.0, 23.0]
    assert stage["torch"]["batches"]["32"]["values"] == [12.0, 14.0]
    assert training_step.ceiling(stage)[0]["median"] == 104.0 and stage["variants"] == []
    text = training_step.render(stage)
    assert "| 32 | 22.0 (21.0-23.0) | 13.0 (12.0-14.0) | 1.69x |" in text
    assert "2 rounds of 1, the Keras and PyTorch workers alternating" in text


def test_train_stage_names_the_round_that_failed(monkeypatch):
    _fake_training_workers(monkeypatch, fail_call=3)  # Keras, second round
    stage = training_step.run_stage(tiny=False, repeats=1, variants=False, log=lambda text: None)
    assert stage["keras"]["error"] == "round 2 of 2: exited with code 1: boom"
    assert "batches" in stage["torch"]
    assert "failed: round 2 of 2: exited with code 1: boom" in training_step.render(stage)


def test_onednn_cell_names_who_chose_the_setting():
    machine = {"TF_ENABLE_ONEDNN_OPTS": "1", "onednn_from_environment": None}
    assert common.describe_onednn(machine, False) == (
        "1 (the project's default, trainer/__init__.py); TensorFlow's own default on this CPU: off")
    machine = {"TF_ENABLE_ONEDNN_OPTS": "0", "onednn_from_environment": "0"}
    assert common.describe_onednn(machine, True) == "0 (set in the environment); TensorFlow's own default on this CPU: on"
    machine = {"TF_ENABLE_ONEDNN_OPTS": None, "onednn_from_environment": None}
    assert common.describe_onednn(machine, None).startswith("unset (TensorFlow started before")
    assert common.describe_onednn(machine, None).endswith("TensorFlow's own default on this CPU: unknown")


def test_markdown_table_escapes_and_checks_width():
    table = common.markdown_table(["a", "b"], [["x|y", 2]])
    assert table.splitlines() == ["| a | b |", "| --- | --- |", "| x\\|y | 2 |"]
    with pytest.raises(ValueError, match="rows of 2 cells"):
        common.markdown_table(["a", "b"], [[1]])


def test_error_line_picks_the_exception():
    out = "Traceback (most recent call last):\n  File x\nValueError: expected 3. Received: 4\n  Cf. https://x\n"
    assert common.error_line(out) == "ValueError: expected 3. Received: 4"
    assert common.error_line("") == "no output"
    # An installed package's absolute path is made relative (it names the machine).
    failed = "Traceback\nValueError: resource x (defined @ /opt/env/lib/python3.11/site-packages/keras/src/core.py:43)"
    assert common.error_line(failed) == "ValueError: resource x (defined @ keras/src/core.py:43)"


def test_distribute_configurations():
    cpu = distribute.configurations(0, tiny=False)
    assert len(cpu) == 8 and cpu[0] == dict(device="cpu", strategy="one", replicas=1, precision="float32", xla=False)
    assert {(c["precision"], c["xla"]) for c in cpu} == {(p, x) for p in ("float32", "mixed_bfloat16") for x in (False, True)}
    gpu = [c for c in distribute.configurations(4, tiny=False) if c["device"] == "gpu"]
    assert {c["replicas"] for c in gpu} == {1, 4} and any(c["precision"] == "mixed_bfloat16" and c["xla"] for c in gpu)


def _distribute_stage():
    """A made-up distribute stage with GPU rows and one failed configuration."""
    def run(device, strategy, replicas, precision, xla, median=None):
        config = dict(device=device, strategy=strategy, replicas=replicas, precision=precision, xla=xla)
        result = {"config": config, "command": "python -m benchmarks.distribute --device %s" % device}
        if median is None:
            result["error"] = "worker exited with code 1"
        else:
            result["images_per_s"] = {"median": median, "min": median - 1, "max": median + 1, "n": 3}
        return result

    return {
        "settings": distribute.stage_settings(False, 3),
        "gpus": 2,
        "runs": [run("cpu", "one", 1, "float32", False, 20.0), run("cpu", "mirrored", 2, "float32", False, 1.24),
                 run("gpu", "one", 1, "mixed_bfloat16", True, 3000.0), run("gpu", "mirrored", 2, "mixed_float16", True)],
    }  # fmt: skip


def test_distribute_table_gives_each_rate_as_a_percentage_of_the_input_pipeline():
    text = distribute.render(_distribute_stage(), input_rate=4000.0)
    (table,) = _tables(text)
    assert table[0] == ["devices", "precision", "XLA", "images/s", "vs first row", "% of the input pipeline's rate", "command"]
    rows = {(row[0], row[1]): row[3:6] for row in table[1:]}
    assert rows[("1 CPU", "float32")] == ["20.0 (19.0-21.0)", "1.00x", "0.5%"]
    assert rows[("mirrored, 2 logical CPU devices", "float32")][1:] == ["0.06x", "0.031%"]  # small, not rounded to 0
    assert rows[("1 GPU", "mixed_bfloat16")][1:] == ["150.00x", "75%"]  # 3,000 of the pipeline's 4,000 images/s
    assert rows[("mirrored, 2 GPUs", "mixed_float16")] == ["failed: worker exited with code 1", "n/a", "n/a"]
    assert "over the 4000 images/s that the trainer's input pipeline" in text
    assert distribute.GPU_ANCHORS in text and "No GPU present" not in text


def test_distribute_table_without_an_input_rate_has_no_percentage_column():
    stage = dict(_distribute_stage(), gpus=0)
    text = distribute.render(stage, input_rate=None)
    (table,) = _tables(text)
    assert "% of the input pipeline's rate" not in table[0] and len(table[0]) == 6
    assert all(len(row) == 6 for row in table) and table[4][3:5] == ["failed: worker exited with code 1", "n/a"]
    assert "No input-pipeline rate in this run" in text and "No GPU present" in text
    assert distribute.GPU_ANCHORS not in text


def test_distribute_table_names_the_known_mirrored_xla_failure():
    error = ("python -m benchmarks.distribute --worker --strategy mirrored --xla exited with code 1: tensorflow.python."
             "framework.errors_impl.InvalidArgumentError: Trying to access resource conv1/kernel/replica_1/3 located in "
             "device /job:localhost/replica:0/task:0/device:CPU:1 from device /job:localhost/replica:0/task:0/device:CPU:0")  # fmt: skip
    stage = dict(_distribute_stage(), gpus=0)
    stage["runs"][1] = dict(stage["runs"][1], error=error)
    del stage["runs"][1]["images_per_s"]
    stage["runs"][1]["config"] = dict(stage["runs"][1]["config"], xla=True)
    (table,) = _tables(distribute.render(stage))
    assert table[2][3] == "failed: %s (the known failure of XLA mirrored over logical CPU devices, keras-team/keras#19005: " \
        "trainer.task refuses --xla with --cpu_replicas > 1 before it starts)" % error
    # Another failure, or the same error without XLA, gets no such note.
    assert table[4][3] == "failed: worker exited with code 1"
    assert distribute.known_failure(dict(stage["runs"][1]["config"], xla=False), error) == ""
    assert distribute.known_failure(stage["runs"][1]["config"], "worker exited with code 1") == ""


def test_percent_keeps_two_significant_digits_below_ten():
    assert [distribute.percent(f) for f in (0.00031, 0.005, 0.0996, 0.725, 1.45)] == ["0.031%", "0.5%", "10%", "72%", "145%"]


def test_input_rate_is_the_trainer_pipeline_of_the_input_stage():
    stats = {"median": 3873.0, "min": 3787.0, "max": 4533.0, "n": 3}
    assert bench_main.input_rate({"input": {"train": {"images_per_s": stats}, "decode_only": {}}}) == 3873.0
    assert bench_main.input_rate({}) is None and bench_main.input_rate({"input": {"error": "x"}}) is None


def test_trainer_epoch_line_pattern():
    line = ("epoch 2/4 step 12: train loss 6.9078 top-1 0.0000 top-5 0.0000 | validation loss 6.9 top-1 0.0 "
            "top-5 0.0 (32 examples) | lr 0.01 | 17.9 images/s")  # fmt: skip
    match = distribute.EPOCH_LINE.match(line)
    assert match and match.group(1, 2, 3, 4) == ("2", "4", "12", "17.9")


def _stats(median, spread=1.0, values=None):
    values = values or [median - spread, median, median + spread]
    return {"median": median, "min": min(values), "max": max(values), "n": len(values), "values": values}


def test_end_to_end_table_gives_the_bare_step_timed_around_the_trainer():
    stage = {
        "settings": distribute.e2e_settings(False, 3),
        "data": "made-up shards",
        "runs": [
            {"strategy": "default", "replicas": 1, "trainer": _stats(18.0, 0.5), "epoch_overhead_s": _stats(2.0, 0.5),
             "bare_before": _stats(20.5), "bare_after": _stats(19.5),
             "bare": common.summarize(_stats(20.5)["values"] + _stats(19.5)["values"]),
             "command": "python -m trainer.task --strategy default", "bare_command": "python -m benchmarks.distribute"},
            {"strategy": "mirrored", "replicas": 2, "error": "python -m trainer.task exited with code 1: boom"},
        ],
    }  # fmt: skip
    text = distribute.render_end_to_end(stage)
    (table,) = _tables(text)
    assert table[0] == ["strategy", "trainer images/s", "bare step images/s", "trainer / bare", "fixed cost per epoch",
                        "commands"]  # fmt: skip
    # 18.0 / 20.0 = 0.90 meets the target; an ImageNet epoch at 18 images/s is 71,176 s, 2 s of it 0.003%.
    assert table[1][:5] == ["default", "18.0 (17.5-18.5)", "20.0 (18.5-21.5); before 20.5, after 19.5", "0.90 (met)",
                            "2.0 (1.5-2.5) s (0.003% of an ImageNet epoch)"]  # fmt: skip
    assert table[2] == ["mirrored, 2 logical CPU devices", "failed: python -m trainer.task exited with code 1: boom"] + ["n/a"] * 4
    assert "right before and right after the trainer run" in text


def test_end_to_end_stage_pools_the_bare_workers_timed_around_each_trainer_run(tmp_path, monkeypatch):
    calls, rates = [], iter([[20.0, 21.0, 22.0], [18.0, 19.0, 23.0], [10.0, 10.5, 11.0], [9.0, 9.5, 12.0]])

    def build_shards(image_source, out_dir, tiny, log):
        os.makedirs(out_dir)
        with open(os.path.join(out_dir, "metadata.json"), "w", encoding="utf-8") as f:
            f.write('{"num_classes": 7}')
        return out_dir, "made-up shards"

    def bare_step(settings, strategy):
        calls.append(("bare", strategy))
        return common.summarize(next(rates)), "bare command " + strategy

    def run_trainer(data_dir, model_dir, strategy, replicas, settings):
        calls.append(("trainer", strategy))
        assert settings["num_classes"] == 7 and replicas == (2 if strategy == "mirrored" else 1)
        return {"trainer": _stats(19.0), "epoch_overhead_s": _stats(2.0), "command": "trainer " + strategy}

    monkeypatch.setattr(distribute, "build_shards", build_shards)
    monkeypatch.setattr(distribute, "bare_step", bare_step)
    monkeypatch.setattr(distribute, "run_trainer", run_trainer)
    stage = distribute.run_end_to_end(False, 3, str(tmp_path), None, log=lambda _: None)
    assert calls == [("bare", "default"), ("trainer", "default"), ("bare", "default"),
                     ("bare", "mirrored"), ("trainer", "mirrored"), ("bare", "mirrored")]  # fmt: skip
    default, mirrored = stage["runs"]
    # Pooled over both workers: six values, median 20.5 (not either worker's own median, 21.0 or 19.0).
    assert default["bare"] == common.summarize([20.0, 21.0, 22.0, 18.0, 19.0, 23.0])
    assert default["bare"]["median"] == 20.5 and default["bare_before"]["median"] == 21.0
    assert default["bare_after"]["median"] == 19.0 and default["bare_command"] == "bare command default"
    assert mirrored["bare"] == common.summarize([10.0, 10.5, 11.0, 9.0, 9.5, 12.0])


def test_tiny_end_to_end_stage_times_the_bare_step_right_around_each_trainer_run(tmp_path):
    """The real stage: shards from the preprocessing job, trainer.task under both strategies, bare workers."""
    output = tmp_path / "BENCHMARKS.md"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--tiny", "--repeats", "2", "--stages", "end_to_end", "--output", str(output)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Each trainer run sits between its two bare-step workers, with nothing else in between.
    steps = [line.split("] ", 1)[1] for line in proc.stdout.splitlines() if "] end_to_end: " in line]
    for strategy in ("default", "mirrored"):
        i = steps.index("end_to_end: trainer.task --strategy %s" % strategy)
        assert steps[i - 1 : i + 2] == ["end_to_end: bare step before the trainer, %s" % strategy, steps[i],
                                        "end_to_end: bare step after the trainer, %s" % strategy], steps  # fmt: skip
    text = output.read_text()
    table = next(t for t in _tables(text) if t[0][:3] == ["strategy", "trainer images/s", "bare step images/s"])
    assert [row[0] for row in table[1:]] == ["default", "mirrored, 2 logical CPU devices"]
    bare_cell = re.compile(r"^(\d+\.\d) \((\d+\.\d)-(\d+\.\d)\); before (\d+\.\d), after (\d+\.\d)$")
    targets = {row[0]: row[1] for row in next(t for t in _tables(text) if t[0][:2] == ["target", "measured"])[1:]}
    for row in table[1:]:
        assert STATS_CELL.match(row[1]), row
        median, low, high, before, after = map(float, bare_cell.match(row[2]).groups())
        assert low <= min(before, after) <= median <= max(before, after) <= high, row
        ratio = float(row[3].split(" ")[0])
        assert abs(ratio - float(row[1].split(" ")[0]) / median) < 0.01, row
        assert row[3].endswith("(met)" if ratio >= 0.9 else "(missed)")
        assert targets["trainer.task >= 0.9 of the bare step, " + row[0].split(",")[0]] == "%.2f" % ratio
        assert "python -m trainer.task --data_dir SHARDS --model_dir RUN_DIR" in row[5] and "bare: `python -m benchmarks.distribute" in row[5]


# ---------------------------------------------------------------- flags


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--stages", "train,gpu"], "expected a comma-separated subset of"),
        (["--repeats", "0"], "argument --repeats: expected an int >= 1. Received: 0"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_flags_exit_2_with_one_line(argv, message, capsys):
    assert bench_main.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_missing_output_directory_is_a_usage_error(tmp_path, capsys):
    assert bench_main.main(["--tiny", "--output", str(tmp_path / "nope" / "B.md")]) == 2
    err = capsys.readouterr().err
    assert "the directory of --output does not exist" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "nope").exists()


# ---------------------------------------------------------------- the convolutions alone


@pytest.mark.parametrize("strides,padding", [(4, "valid"), (1, "same")])
def test_conv_op_functions_compute_the_step_gradients(strides, padding):
    import keras
    import numpy as np
    import tensorflow as tf

    layer = keras.layers.Conv2D(5, 3, strides=strides, padding=padding, activation="relu", bias_initializer="random_normal")
    x = tf.random.uniform((2, 13, 13, 4), seed=1)
    out = layer(x)
    dy = tf.random.normal(out.shape, seed=2)
    with tf.GradientTape() as tape:
        tape.watch(x)
        pre_activation = layer.convolution_op(x, layer.kernel) + layer.bias
    dx, dw, db = tape.gradient(pre_activation, [x, layer.kernel, layer.bias], output_gradients=dy)
    ops = training_step.conv_op_functions(layer, x, layer.kernel, layer.bias, dy)
    assert list(ops) == list(training_step.CONV_OPS)
    np.testing.assert_allclose(ops["forward"](), out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ops["input gradient"](), dx, rtol=1e-5, atol=1e-6)
    kernel_gradient, bias_gradient = ops["filter gradient"]()
    np.testing.assert_allclose(kernel_gradient, dw, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bias_gradient, db, rtol=1e-5, atol=1e-5)


def test_conv_op_times_cover_every_op_of_the_step():
    model = training_step.paper_alexnet(10, 67)
    times = training_step.keras_conv_op_times(model, 2, warmup=0, repeats=2)
    ops = [(t["layer"], t["op"]) for t in times]
    # conv1 has no input gradient: the step needs none for the image.
    assert ops == [("conv1", "forward"), ("conv1", "filter gradient")] + [
        (layer, op) for layer in ("conv2", "conv3", "conv4", "conv5") for op in training_step.CONV_OPS
    ]
    assert all(t["ms"]["n"] == 2 and t["ms"]["min"] > 0 for t in times)


def _conv_stage(step_rate=10.0, gemm=400.0):
    """A train stage with batch 32, a Keras step of `step_rate` images/s, a GEMM ceiling of
    `gemm` GFLOP/s and convolution ops of 10 ms (forwards), 20 ms (input gradients), 30 ms (filter gradients)."""
    entries = [{"layer": layer, "op": op, "ms": common.summarize([{"forward": 10.0, "input gradient": 20.0, "filter gradient": 30.0}[op]])}
               for layer in ("conv1", "conv2", "conv3", "conv4", "conv5") for op in training_step.CONV_OPS
               if not (layer == "conv1" and op == "input gradient")]  # fmt: skip
    keras_run = {"framework": "keras", "version": "TF x", "label": "Keras (default)", "command": "k", "onednn": True,
                 "batches": {"32": common.summarize([step_rate])}, "conv_ops": {"32": entries},
                 "matmul": {"numpy": common.summarize([gemm])}}  # fmt: skip
    torch_run = {"framework": "torch", "label": "PyTorch (default)", "command": "t", "unavailable": "no torch"}
    settings = dict(training_step.stage_settings(False, 1), batch_sizes=[32])
    return {"settings": settings, "flops": training_step.training_flops_per_image(), "layers": training_step.alexnet_layer_macs(),
            "keras": keras_run, "torch": torch_run, "variants": []}  # fmt: skip


def test_conv_summary_sums_the_ops_against_the_step_and_the_ceiling():
    stage = _conv_stage()
    c = training_step.conv_summary(stage, 32)
    assert c["ms"] == {"forward": 50.0, "input gradient": 80.0, "filter gradient": 150.0} and c["total_ms"] == 280.0
    assert c["images_per_s"] == pytest.approx(32 / 0.28)
    assert c["share_of_step"] == pytest.approx(0.28 / 3.2)  # the step: 32 images at 10 images/s
    # The FLOPs of the ops timed: each op 2 x its layer's MACs x the batch; conv1 has two ops, the others three.
    macs = {name: m for name, _, m in training_step.alexnet_layer_macs()}
    flops = 2 * 32 * (2 * macs["conv1"] + 3 * sum(macs["conv%d" % i] for i in range(2, 6)))
    assert c["gflops"] == pytest.approx(flops / 1e9 / 0.28)
    assert c["share_of_ceiling"] == pytest.approx(flops / 1e9 / 0.28 / 400.0)
    text = training_step.render(stage)
    assert "| 32 | 50 | 80 | 150 | 280 | 9%% | 114.3 | %.0f GFLOP/s (%.0f%%) |" % (c["gflops"], 100 * c["share_of_ceiling"]) in text
    conv2 = 2 * macs["conv2"] * 32 / 1e9 / 0.01  # GFLOP/s of conv2's 10 ms forward
    assert "| conv2 | 10 ms, %.0f GFLOP/s (%.0f%%) |" % (conv2, 100 * conv2 / 400.0) in text
    assert "| conv1 | 10 ms," in text and text.split("| conv1 |")[1].split("\n")[0].count("| - |") == 1
    assert "fused by oneDNN, as in the step" in text
    # Without op times (an older worker, a variant) there is no such table and no figure for it.
    del stage["keras"]["conv_ops"]
    assert training_step.conv_summary(stage, 32) is None
    assert "Convolutions alone" not in training_step.render(stage)


def test_pool_rounds_pools_the_conv_op_times():
    first, second = _conv_stage()["keras"], _conv_stage()["keras"]
    second["conv_ops"] = {"32": [dict(e, ms=common.summarize([2 * e["ms"]["median"]])) for e in second["conv_ops"]["32"]]}
    pooled = training_step.pool_rounds([first, second])
    assert pooled["conv_ops"]["32"][0]["layer"] == "conv1" and pooled["conv_ops"]["32"][0]["ms"]["values"] == [10.0, 20.0]
    assert pooled["conv_ops"]["32"][-1]["ms"]["median"] == 45.0


# ---------------------------------------------------------------- the command, tiny


def _tables(text):
    """Every markdown table in `text` as a list of rows of cells (header first, separator dropped)."""
    tables, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    parsed = []
    for lines in tables:
        rows = [[c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]] for line in lines]
        assert all(len(r) == len(rows[0]) for r in rows), lines  # well-formed: every row as wide as the header
        assert set(rows[1]) == {"---"}, lines
        parsed.append([rows[0]] + rows[2:])
    return parsed


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    """Runs `python -m benchmarks --tiny` once, with PyTorch hidden, as a user would."""
    tmp = tmp_path_factory.mktemp("bench")
    hidden = tmp / "hide_torch" / "torch"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text('raise ImportError("No module named \'torch\' (hidden by the test)")\n')
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=os.pathsep.join([str(tmp / "hide_torch"), str(REPO)]))
    # As a user's shell: TF_ENABLE_ONEDNN_OPTS unset (this process's import of `benchmarks` set it).
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)
    output = tmp / "BENCHMARKS.md"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--tiny", "--repeats", "2", "--output", str(output),
         "--stages", "preprocessing,input,train,distribute"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return proc, output


def test_tiny_run_writes_a_well_formed_report(tiny_report):
    proc, output = tiny_report
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = output.read_text()
    assert text.startswith("# Benchmarks\n") and "## Machine" in text and "--tiny run" in text
    tables = _tables(text)
    machine = {row[0]: row[1] for row in tables[0][1:]}
    assert machine["CPUs usable"] == str(len(os.sched_getaffinity(0)))
    assert machine["command"].startswith("`python -m benchmarks --tiny --repeats 2")
    # The project's oneDNN default reached the workers, whatever TensorFlow's own default on this CPU.
    assert re.match(r"^1 \(the project's default, trainer/__init__.py\); TensorFlow's own default on this CPU: (on|off)$",
                    machine["TF_ENABLE_ONEDNN_OPTS"]), machine["TF_ENABLE_ONEDNN_OPTS"]
    assert "(oneDNN on, threads" in text
    assert not list(output.parent.glob(".benchmarks-*")), "the temporary file must be renamed onto the output"

    train = next(t for t in tables if t[0][:3] == ["batch", "Keras images/s", "PyTorch images/s"])
    assert len(train) == 2 and train[1][0] == "4"
    assert STATS_CELL.match(train[1][1]), train[1]
    # PyTorch is hidden: the cell says so, and no ratio or GFLOP/s is made up for it.
    assert train[1][2] == training_step.TORCH_MISSING
    assert train[1][3] == "n/a" and train[1][6:] == ["n/a", "n/a"]
    assert re.match(r"^\d+\.\d$", train[1][4]) and re.match(r"^\d+%$", train[1][5])
    targets = {row[0]: row[1:] for row in next(t for t in tables if t[0][:2] == ["target", "measured"])[1:]}
    assert targets["Keras step >= 1.3x PyTorch, batch 4"] == [training_step.TORCH_MISSING, "not measured"]
    assert targets["Keras step >= 80% of the float32 GEMM ceiling, batch 4"][1] in ("met", "**missed**")
    assert re.match(r"^\d+% \(its convolutions, each op timed by itself: \d+%\)$",
                    targets["Keras step >= 80% of the float32 GEMM ceiling, batch 4"][0])
    convs = next(t for t in tables if t[0][:2] == ["batch", "forward ms"])
    assert len(convs) == 2 and convs[1][0] == "4" and all(re.match(r"^\d+(\.\d)?%?$", cell) for cell in convs[1][:-1])
    assert re.match(r"^\d+ GFLOP/s \(\d+%\)$", convs[1][-1])
    per_layer = next(t for t in tables if t[0] == ["layer"] + list(training_step.CONV_OPS))
    assert [row[0] for row in per_layer[1:]] == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    assert per_layer[1][2] == "-" and all(re.match(r"^\d+(\.\d)? ms, \d+ GFLOP/s \(\d+%\)$", c) for row in per_layer[2:] for c in row[1:])
    gemm = next(t for t in tables if t[0] == ["GEMM", "size", "GFLOP/s"])
    assert {row[0].split(" ")[0] for row in gemm[1:]} == {"tf.linalg.matmul", "numpy"}
    assert all(STATS_CELL.match(row[2]) for row in gemm[1:])

    dist = next(t for t in tables if t[0][:4] == ["devices", "precision", "XLA", "images/s"])
    assert [row[0] for row in dist[1:]] == ["1 CPU", "mirrored, 2 logical CPU devices"]
    assert all(STATS_CELL.match(row[3]) for row in dist[1:]), dist
    assert dist[1][4] == "1.00x" and "No GPU present" in text
    # The input stage ran first: each configuration's rate as a percentage of the trainer's input pipeline's.
    assert dist[0][5] == "% of the input pipeline's rate", dist[0]
    assert all(re.match(r"^(\d+|\d\.\d+|0\.0*[1-9]\d?)%$", row[5]) and row[5] != "0%" for row in dist[1:]), dist

    # The contributed stages (their own modules' run_benchmark) ran: a section each, a target row each.
    assert "### Preprocessing (Beam job vs bare Pillow loop)" in text
    assert "### Input pipeline (full augmentation vs decode-only)" in text
    assert "Beam job >= 0.8 of the bare Pillow loop, per core" in targets
    assert "input, full augmentation >= 0.8 of decode-only" in targets
    if "benchmarks.input_pipeline.run_benchmark` is not on main yet" not in text:
        pipelines = next(t for t in tables if t[0][:3] == ["pipeline", "images/s", "images/s per core"])
        assert [row[0] for row in pipelines[1:]] == [label for _, label in bench_main.INPUT_ROWS]
        assert all(re.match(r"^\d+ \(\d+-\d+\)$", cell) for row in pipelines[1:] for cell in row[1:]), pipelines
