"""Tests of benchmarks/distribute.py: the configurations and the stage's table."""
from benchmarks import distribute


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


def test_distribute_table_gives_each_rate_as_a_percentage_of_the_input_pipeline(tables):
    text = distribute.render(_distribute_stage(), input_rate=4000.0)
    (table,) = tables(text)
    assert table[0] == ["devices", "precision", "XLA", "images/s", "vs first row", "% of the input pipeline's rate", "command"]
    rows = {(row[0], row[1]): row[3:6] for row in table[1:]}
    assert rows[("1 CPU", "float32")] == ["20.0 (19.0-21.0)", "1.00x", "0.5%"]
    assert rows[("mirrored, 2 logical CPU devices", "float32")][1:] == ["0.06x", "0.031%"]  # small, not rounded to 0
    assert rows[("1 GPU", "mixed_bfloat16")][1:] == ["150.00x", "75%"]  # 3,000 of the pipeline's 4,000 images/s
    assert rows[("mirrored, 2 GPUs", "mixed_float16")] == ["failed: worker exited with code 1", "n/a", "n/a"]
    assert "over the 4000 images/s that the trainer's input pipeline" in text
    assert distribute.GPU_ANCHORS in text and "No GPU present" not in text


def test_distribute_table_without_an_input_rate_has_no_percentage_column(tables):
    stage = dict(_distribute_stage(), gpus=0)
    text = distribute.render(stage, input_rate=None)
    (table,) = tables(text)
    assert "% of the input pipeline's rate" not in table[0] and len(table[0]) == 6
    assert all(len(row) == 6 for row in table) and table[4][3:5] == ["failed: worker exited with code 1", "n/a"]
    assert "No input-pipeline rate in this run" in text and "No GPU present" in text
    assert distribute.GPU_ANCHORS not in text


def test_distribute_table_names_the_known_mirrored_xla_failure(tables):
    error = ("python -m benchmarks.distribute --worker --strategy mirrored --xla exited with code 1: tensorflow.python."
             "framework.errors_impl.InvalidArgumentError: Trying to access resource conv1/kernel/replica_1/3 located in "
             "device /job:localhost/replica:0/task:0/device:CPU:1 from device "
             "/job:localhost/replica:0/task:0/device:CPU:0")  # fmt: skip
    stage = dict(_distribute_stage(), gpus=0)
    stage["runs"][1] = dict(stage["runs"][1], error=error)
    del stage["runs"][1]["images_per_s"]
    stage["runs"][1]["config"] = dict(stage["runs"][1]["config"], xla=True)
    (table,) = tables(distribute.render(stage))
    assert table[2][3] == "failed: %s (the known failure of XLA mirrored over logical CPU devices, keras-team/keras#19005: " \
        "trainer.task refuses --xla with --cpu_replicas > 1 before it starts)" % error
    # Another failure, or the same error without XLA, gets no such note.
    assert table[4][3] == "failed: worker exited with code 1"
    assert distribute.known_failure(dict(stage["runs"][1]["config"], xla=False), error) == ""
    assert distribute.known_failure(stage["runs"][1]["config"], "worker exited with code 1") == ""


def test_percent_keeps_two_significant_digits_below_ten():
    assert [distribute.percent(f) for f in (0.00031, 0.005, 0.0996, 0.725, 1.45)] == ["0.031%", "0.5%", "10%", "72%", "145%"]


def test_worker_flag_mistakes_are_one_line(capsys):
    assert distribute.main(["--worker", "--strategy", "one", "--replicas", "2"]) == 2
    assert capsys.readouterr().err.strip() == (
        "python -m benchmarks.distribute: error: expected replicas=1 with --strategy one. Received: replicas=2")
