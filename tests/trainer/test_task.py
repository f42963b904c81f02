"""trainer.task: flags and environment -> the frozen config, cluster specs, and one-line user errors.

In-process and fast, except one `python -m trainer.task` probe; no model is built here.
"""
import json
import subprocess
import sys

import pytest

import cli
from tests.helpers.trainer_data import REPO
from trainer import config as config_lib
from trainer import strategy as strategy_lib
from trainer import task


def test_model_switch_flags_reach_the_config():
    config, _ = task.parse_config(
        [
            "--data_dir", "d", "--no_lrn", "--no_overlap", "--no_pca_noise", "--two_tower", "--activation", "tanh",
            "--init", "he", "--dropout_rate", "0", "--xla", "--mixed_precision", "bfloat16",
        ],
        {},
    )
    assert (config.lrn, config.overlapping_pool, config.pca_noise, config.two_tower) == (False, False, False, True)
    switches = (config.activation, config.init, config.dropout_rate, config.xla, config.mixed_precision)
    assert switches == ("tanh", "he", 0.0, True, "bfloat16")


def test_large_batch_scales_the_rate_and_warms_up():
    config, _ = task.parse_config(["--data_dir", "d", "--batch_size", "512"], {})
    assert config.warmup_epochs == 5.0
    assert config_lib.effective_learning_rate(config) == pytest.approx(0.04)
    explicit, _ = task.parse_config(["--data_dir", "d", "--batch_size", "512", "--warmup_epochs", "1", "--no_scale_lr"], {})
    assert explicit.warmup_epochs == 1.0 and config_lib.effective_learning_rate(explicit) == 0.01


def test_environment_gives_directory_defaults_and_flags_win():
    env = {"AIP_MODEL_DIR": "gs://b/model", "AIP_CHECKPOINT_DIR": "gs://b/ckpt", "AIP_TENSORBOARD_LOG_DIR": "gs://b/tb"}
    config, _ = task.parse_config(["--data_dir", "d"], env)
    assert (config.model_dir, config.resolved_checkpoint_dir, config.resolved_log_dir) == ("gs://b/model", "gs://b/ckpt", "gs://b/tb")
    config, _ = task.parse_config(["--data_dir", "d", "--model_dir", "m"], {})
    assert (config.resolved_checkpoint_dir, config.resolved_log_dir) == ("m/checkpoints", "m/logs")


def test_demo_preset_and_explicit_flags():
    config, _ = task.parse_config(["--demo"], {})
    preset = (config.data_dir, config.model_dir, config.init, config.image_size, config.batch_size)
    assert preset == ("demo_data", "runs/demo", "he", 127, 64)
    config, _ = task.parse_config(["--demo", "--epochs", "1", "--batch_size", "16"], {})
    assert (config.epochs, config.batch_size, config.init) == (1, 16, "he")


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--data_dir", "d", "--batch_szie", "3"], "unrecognized arguments: --batch_szie"),
        (["--data_dir", "d", "--strategy", "horovod"], "invalid choice: 'horovod'"),
        (["--data_dir", "d", "--image_size", "63"], "expected --image_size >= 67"),
        (["--data_dir", "d", "--batch_size", "0"], "expected --batch_size >= 1. Received: 0"),
        (["--data_dir", "d", "--profile_steps", "5"], "--profile_steps"),
        ([], "--data_dir is required"),
        (["--data_dir", "d", "--checkpoint", "x"], "without --eval_only"),
        (["--data_dir", "d", "--num_classes", "-1"], "expected --num_classes >= 1 (or 0: from metadata.json). Received: -1"),
        (["--data_dir", "d", "--label_offset", "-2"], "expected --label_offset >= 0 (or -1: from metadata.json). Received: -2"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(argv, fragment, capsys):
    assert task.main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_command_line_user_error_exits_2_without_traceback():
    command = [sys.executable, "-m", "trainer.task", "--data_dir", "d", "--epochs", "0"]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == "python -m trainer.task: error: expected --epochs >= 1. Received: 0"
    assert "Traceback" not in proc.stderr


def test_bad_tf_config_is_a_user_error(capsys):
    with pytest.raises(cli.UsageError, match="TF_CONFIG is not valid JSON"):
        task.parse_config(["--data_dir", "d"], {"TF_CONFIG": "{nope"})


def test_vertex_cluster_spec_becomes_tf_config():
    spec = {
        "cluster": {
            "workerpool0": ["cmle-training-workerpool0-ab-0:2222"],
            "workerpool1": ["w-0:2222", "w-1:2222"],
            "workerpool3": ["e-0:2222"],
        },
        "environment": "cloud",
        "task": {"type": "workerpool1", "index": 1, "trial": ""},
        "job": "{}",
    }
    _, tf_config = task.parse_config(["--data_dir", "d"], {"CLUSTER_SPEC": json.dumps(spec)})
    assert tf_config == {
        "cluster": {"chief": ["cmle-training-workerpool0-ab-0:2222"], "worker": ["w-0:2222", "w-1:2222"]},
        "task": {"type": "worker", "index": 1},
        "environment": "cloud",
    }
    # TF_CONFIG, when Vertex sets both, wins over CLUSTER_SPEC.
    tf_cfg = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}
    _, got = task.parse_config(["--data_dir", "d"], {"CLUSTER_SPEC": json.dumps(spec), "TF_CONFIG": json.dumps(tf_cfg)})
    assert got == tf_cfg
    with pytest.raises(strategy_lib.StrategyError, match="unknown worker pool"):
        strategy_lib.tf_config_from_cluster_spec({"cluster": {"pool9": []}, "task": {"type": "pool9", "index": 0}})


def test_help_returns_0_and_lists_the_flags(capsys):
    assert task.main(["--help"]) == 0
    out = capsys.readouterr().out
    flags = ("--data_dir", "--strategy", "--cpu_replicas", "--mixed_precision", "--eval_only", "--demo", "--debug_nan_at_step")
    for flag in flags:
        assert flag in out


def _readme_recipe(name):
    """The README's table of a recipe: {flag without dashes: value text}."""
    readme = (REPO / "README.md").read_text()
    table = readme.split("<!-- recipe: %s -->" % name)[1].split("<!-- end recipe -->")[0]
    rows = [line.split("|")[1:3] for line in table.strip().splitlines()[2:]]
    return {flag.strip().strip("`").lstrip("-"): value.strip() for flag, value in rows}


def test_readme_lists_the_tiny_imagenet_recipe_exactly():
    from trainer import recipes

    def text(value):
        return "on" if value is True else "%g" % value if isinstance(value, (int, float)) else value

    assert _readme_recipe("tiny_imagenet") == {k: text(v) for k, v in recipes.TINY_IMAGENET.items()}


def test_recipe_values_reach_the_config_and_typed_flags_win():
    from trainer import recipes

    config, _ = task.parse_config(["--recipe", "tiny_imagenet", "--data_dir", "d", "--learning_rate", "0.03"], {})
    assert config.recipe == "tiny_imagenet" and config.learning_rate == 0.03
    for key, value in recipes.TINY_IMAGENET.items():
        if key != "learning_rate":
            assert getattr(config, key) == value, key
    assert config.warmup_epochs == 0  # batch 128: no warm-up
    with pytest.raises(cli.UsageError, match="--demo trains the 'demo' recipe"):
        task.parse_config(["--demo", "--recipe", "tiny_imagenet"], {})
    demo, _ = task.parse_config(["--demo", "--recipe", "demo"], {})
    assert (demo.image_size, demo.batch_size, demo.data_dir) == (127, 64, task.DEMO_DATA_DIR)
