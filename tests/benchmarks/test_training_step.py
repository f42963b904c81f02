"""Tests of benchmarks/training_step.py: the FLOP count, the workers' rounds pooled, the stage's tables.

The worker processes are replaced by made-up results; the workers themselves are
tested in test_keras_worker.py and test_torch_worker.py.
"""
import pytest

from benchmarks import common, training_step
from benchmarks.keras_worker import CONV_OPS
from model import build_alexnet


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
    model = build_alexnet(1000, image_size=image_size, two_tower=two_tower)
    ours = {name: macs for name, _, macs in training_step.layer_macs(image_size, 1000, two_tower)}
    assert ours == _keras_macs(model)
    shapes = {name: shape for name, shape, _ in training_step.layer_macs(image_size, 1000, two_tower)}
    assert shapes["conv5"] == tuple(model.get_layer("conv5").output.shape[1:])


def test_training_flops_of_the_paper_network():
    # 227x227, 1000 classes: conv1 55*55*96*363, conv2 27*27*256*2400, conv3 13*13*384*2304,
    # conv4 13*13*384*3456, conv5 13*13*256*3456, fc6 9216*4096, fc7 4096*4096, fc8 4096*1000.
    macs = 105_415_200 + 447_897_600 + 149_520_384 + 224_280_576 + 149_520_384 + 37_748_736 + 16_777_216 + 4_096_000
    flops = training_step.training_flops_per_image(227, 1000)
    assert flops["forward_macs"] == macs == 1_135_256_096
    assert flops["estimate"] == 6 * macs
    assert flops["exact"] == 2 * (3 * macs - 105_415_200)
    # The network's own minimum input (pool5 at least 1x1), from model.build_alexnet.
    with pytest.raises(ValueError, match="int >= 67 .*Received: image_size=63"):
        training_step.layer_macs(63)


def test_pool_rounds_pools_timed_runs_and_keeps_the_fastest_gemm():
    def worker(rates, gemm):
        return {"framework": "keras", "batches": {"32": common.summarize(rates)},
                "matmul": {"numpy": common.summarize([gemm])}}  # fmt: skip

    pooled = training_step.pool_rounds([worker([20.0, 21.0, 19.0], 180.0), worker([24.0, 25.0, 26.0], 200.0)])
    assert pooled["batches"]["32"]["values"] == [20.0, 21.0, 19.0, 24.0, 25.0, 26.0]
    batch = pooled["batches"]["32"]
    assert (batch["median"], batch["min"], batch["max"]) == (22.5, 19.0, 26.0)
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
        framework = {"benchmarks.keras_worker": "keras", "benchmarks.torch_worker": "torch"}[module]
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


def _conv_stage(step_rate=10.0, gemm=400.0):
    """A train stage with batch 32, a Keras step of `step_rate` images/s, a GEMM ceiling of
    `gemm` GFLOP/s and convolution ops of 10 ms (forwards), 20 ms (input gradients), 30 ms (filter gradients)."""
    ms = {"forward": 10.0, "input gradient": 20.0, "filter gradient": 30.0}
    entries = [{"layer": layer, "op": op, "ms": common.summarize([ms[op]])}
               for layer in ("conv1", "conv2", "conv3", "conv4", "conv5") for op in CONV_OPS
               if not (layer == "conv1" and op == "input gradient")]  # fmt: skip
    keras_run = {"framework": "keras", "version": "TF x", "label": "Keras (default)", "command": "k", "onednn": True,
                 "batches": {"32": common.summarize([step_rate])}, "conv_ops": {"32": entries},
                 "matmul": {"numpy": common.summarize([gemm])}}  # fmt: skip
    torch_run = {"framework": "torch", "label": "PyTorch (default)", "command": "t", "unavailable": "no torch"}
    settings = dict(training_step.stage_settings(False, 1), batch_sizes=[32])
    return {"settings": settings, "flops": training_step.training_flops_per_image(), "layers": training_step.layer_macs(),
            "keras": keras_run, "torch": torch_run, "variants": []}  # fmt: skip


def test_conv_summary_sums_the_ops_against_the_step_and_the_ceiling():
    stage = _conv_stage()
    c = training_step.conv_summary(stage, 32)
    assert c["ms"] == {"forward": 50.0, "input gradient": 80.0, "filter gradient": 150.0} and c["total_ms"] == 280.0
    assert c["images_per_s"] == pytest.approx(32 / 0.28)
    assert c["share_of_step"] == pytest.approx(0.28 / 3.2)  # the step: 32 images at 10 images/s
    # The FLOPs of the ops timed: each op 2 x its layer's MACs x the batch; conv1 has two ops, the others three.
    macs = {name: m for name, _, m in training_step.layer_macs()}
    flops = 2 * 32 * (2 * macs["conv1"] + 3 * sum(macs["conv%d" % i] for i in range(2, 6)))
    assert c["gflops"] == pytest.approx(flops / 1e9 / 0.28)
    assert c["share_of_ceiling"] == pytest.approx(flops / 1e9 / 0.28 / 400.0)
    text = training_step.render(stage)
    row = "| 32 | 50 | 80 | 150 | 280 | 9%% | 114.3 | %.0f GFLOP/s (%.0f%%) |" % (c["gflops"], 100 * c["share_of_ceiling"])
    assert row in text
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
