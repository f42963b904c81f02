"""Flags -> frozen config, environment defaults, cluster specs and learning-rate schedules.

In-process and fast, except the few `python -c` / `python -m trainer.task` probes; no model is built here.
"""
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trainer import config as config_lib
from trainer import schedules
from trainer import strategy as strategy_lib
from trainer import task


def test_defaults_are_the_papers_recipe():
    config, tf_config = task.parse_config(["--data_dir", "d"], {})
    assert tf_config is None
    assert (config.batch_size, config.epochs, config.learning_rate, config.momentum, config.weight_decay) == (128, 90, 0.01, 0.9, 5e-4)
    assert (config.image_size, config.init, config.lr_schedule, config.max_lr_drops, config.dropout_rate) == (227, "paper", "plateau", 3, 0.5)
    assert config.lrn and config.overlapping_pool and config.pca_noise and not config.two_tower
    assert config.warmup_epochs == 0.0 and config_lib.effective_learning_rate(config) == 0.01
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.batch_size = 3


def test_model_switch_flags_reach_the_config():
    config, _ = task.parse_config(
        ["--data_dir", "d", "--no_lrn", "--no_overlap", "--no_pca_noise", "--two_tower", "--activation", "tanh", "--init", "he", "--dropout_rate", "0", "--xla", "--mixed_precision", "bfloat16"],
        {},
    )
    assert (config.lrn, config.overlapping_pool, config.pca_noise, config.two_tower) == (False, False, False, True)
    assert (config.activation, config.init, config.dropout_rate, config.xla, config.mixed_precision) == ("tanh", "he", 0.0, True, "bfloat16")


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
    assert (config.data_dir, config.model_dir, config.init, config.image_size, config.batch_size) == ("demo_data", "runs/demo", "he", 127, 64)
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
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-m", "trainer.task", "--data_dir", "d", "--epochs", "0"], cwd=repo, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == "python -m trainer.task: error: expected --epochs >= 1. Received: 0"
    assert "Traceback" not in proc.stderr


def test_bad_tf_config_is_a_user_error(capsys):
    with pytest.raises(task.UsageError, match="TF_CONFIG is not valid JSON"):
        task.parse_config(["--data_dir", "d"], {"TF_CONFIG": "{nope"})


def test_vertex_cluster_spec_becomes_tf_config():
    spec = {
        "cluster": {"workerpool0": ["cmle-training-workerpool0-ab-0:2222"], "workerpool1": ["w-0:2222", "w-1:2222"], "workerpool3": ["e-0:2222"]},
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


def test_config_differences_ignore_directories_and_epochs():
    a = config_lib.TrainConfig(data_dir="d", model_dir="m1", epochs=3)
    saved = json.loads(config_lib.to_json(a))
    assert config_lib.config_differences(saved, dataclasses.replace(a, model_dir="m2", epochs=9, eval_only=True)) == []
    assert config_lib.config_differences(saved, dataclasses.replace(a, learning_rate=0.1)) == [("learning_rate", 0.01, 0.1)]
    assert config_lib.from_dict(saved) == a


def test_plateau_divides_by_ten_after_patience_at_most_three_times():
    state = schedules.PlateauState()
    history = []
    for top1 in [0.1, 0.2, 0.2, 0.19, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]:
        state, dropped = schedules.plateau_update(state, top1, patience=2, max_drops=3)
        history.append(dropped)
    # Drops after two epochs without a new best: epochs 4, 7, 9; none after the third.
    assert [i + 1 for i, d in enumerate(history) if d] == [4, 7, 9]
    assert state.drops == 3 and state.best_top1 == 0.3
    assert schedules.learning_rate_at(0, 100, 0.01, 0, state.drops) == pytest.approx(1e-5)


def test_step_schedule_and_warmup():
    assert [schedules.step_drops(e, 30, 3) for e in (0, 29, 30, 60, 89, 120)] == [0, 0, 1, 2, 2, 3]
    # Warm-up over 2 epochs of 10 steps: linear from lr/20 up to lr, then flat.
    lrs = [schedules.learning_rate_at(s, 10, 0.04, 2, 0) for s in (0, 9, 19, 20, 50)]
    assert lrs == pytest.approx([0.002, 0.02, 0.04, 0.04, 0.04])


def test_strategy_auto_and_default_on_one_cpu():
    import tensorflow as tf

    s = strategy_lib.make_strategy("auto", None)
    assert s.num_replicas_in_sync == 1 and strategy_lib.is_chief(s)
    assert strategy_lib.write_dir("/x/checkpoints", s) == "/x/checkpoints"
    assert isinstance(strategy_lib.make_strategy("one_device", None), tf.distribute.OneDeviceStrategy)
    with pytest.raises(strategy_lib.StrategyError, match="needs TF_CONFIG"):
        strategy_lib.make_strategy("multi_worker_mirrored", None)


def test_xla_is_refused_only_over_several_logical_cpu_devices():
    import types

    import tensorflow as tf

    def devices(*names):  # a strategy as check_xla sees it: its worker devices
        return types.SimpleNamespace(extended=types.SimpleNamespace(worker_devices=names))

    with pytest.raises(strategy_lib.StrategyError, match=r"^--xla cannot run the step mirrored over 2 logical CPU devices \(--cpu_replicas 2\)"):
        strategy_lib.check_xla(devices("/job:localhost/replica:0/task:0/device:CPU:0", "/job:localhost/replica:0/task:0/device:CPU:1"))
    strategy_lib.check_xla(devices("/job:localhost/replica:0/task:0/device:GPU:0", "/job:localhost/replica:0/task:0/device:GPU:1"))
    # The default strategy lists no devices; its XLA step trains (tests/test_trainer_loop.py).
    strategy_lib.check_xla(tf.distribute.get_strategy())
    strategy_lib.check_xla(tf.distribute.OneDeviceStrategy("/cpu:0"))


def test_histogram_buckets_match_a_hand_count():
    import numpy as np

    from trainer import summaries

    t = summaries.histogram_tensor(np.array([[0.0, 1.0, 1.0, 2.0], [3.0, 3.0, 3.0, 4.0]]), buckets=4)
    np.testing.assert_array_equal(t, [[0, 1, 1], [1, 2, 2], [2, 3, 1], [3, 4, 4]])


def test_help_returns_0_and_lists_the_flags(capsys):
    assert task.main(["--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--data_dir", "--strategy", "--cpu_replicas", "--mixed_precision", "--eval_only", "--demo", "--debug_nan_at_step"):
        assert flag in out


ONEDNN_PROBE = (
    "import trainer.task; from tensorflow.python.util import _pywrap_util_port as p; "
    "import os; print('ONEDNN', bool(p.IsMklEnabled()), os.environ.get('TF_ENABLE_ONEDNN_OPTS'))"
)


def _python_output(code, onednn_setting):
    """The words `python -c code` prints, with TF_ENABLE_ONEDNN_OPTS unset or set to `onednn_setting`."""
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if onednn_setting is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = onednn_setting
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


@pytest.mark.parametrize("setting,enabled", [(None, True), ("0", False), ("1", True)])
def test_trainer_turns_on_onednn_unless_the_environment_chose(setting, enabled):
    # TensorFlow's own default leaves oneDNN off on AVX2-only CPUs; the trainer's entry point
    # turns it on before TensorFlow starts, and an explicit setting wins.
    # The variable too: on CPUs where TensorFlow's own default is on, only it shows the default was given.
    assert _python_output(ONEDNN_PROBE, setting)[-3:] == ["ONEDNN", str(enabled), setting or "1"]


def test_no_onednn_default_once_tensorflow_has_started():
    # Too late for this process; setting it would only mislead its children and reports.
    code = "import tensorflow, trainer, os; print('VAR', os.environ.get('TF_ENABLE_ONEDNN_OPTS'))"
    assert _python_output(code, None)[-2:] == ["VAR", "None"]
