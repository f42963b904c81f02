"""What real runs meet: SIGTERM (preemption), SIGKILL mid-epoch, and a NaN loss.

The signal tests run `python -m trainer.task` as a real child process and
signal it once its first step checkpoint is on disk.
"""
import json
import signal
import subprocess
import time

import numpy as np
import pytest
import tensorflow as tf

import cli
from tests.helpers.trainer_data import REPO, subprocess_env, task_command, write_dataset
from trainer import checkpoints as ckpt_lib
from trainer import task

EPOCHS, STEPS, CHECKPOINT_EVERY = 2, 6, 4


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("preempt_data")
    write_dataset(root, num_classes=3, train_per_class=8, val_per_class=2, size=72)
    return root


def _args(data, model_dir, *extra):
    return [
        "--data_dir", data, "--model_dir", model_dir, "--image_size", "67", "--batch_size", "8", "--epochs", str(EPOCHS),
        "--steps_per_epoch", str(STEPS), "--init", "he", "--checkpoint_every_steps", str(CHECKPOINT_EVERY),
        "--keep_checkpoints", "2",
        "--no_export", "--seed", "5", *extra,
    ]


def _start_and_wait_for_checkpoint(args, checkpoint_dir, after_step=0, timeout=240):
    """Starts the trainer and returns (process, step) once a checkpoint beyond after_step exists."""
    proc = subprocess.Popen(
        task_command(*args), cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + timeout
    while time.time() < deadline:
        latest = tf.train.latest_checkpoint(str(checkpoint_dir))
        if latest and ckpt_lib.step_of(latest) > after_step:
            return proc, ckpt_lib.step_of(latest)
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail("trainer exited (%s) before its checkpoint: %s %s" % (proc.returncode, out[-2000:], err[-2000:]))
        time.sleep(0.1)
    proc.kill()
    pytest.fail("no checkpoint after step %d within %ds" % (after_step, timeout))


def test_sigkill_mid_epoch_resumes_sigterm_saves_and_the_rerun_completes(data, tmp_path, capsys):
    model_dir = tmp_path / "run"
    ckpt_dir = model_dir / "checkpoints"
    total = EPOCHS * STEPS

    # 1. SIGKILL (no chance to save) right after the first step checkpoint, at step 4 of the 6-step epoch 1.
    proc, kill_step = _start_and_wait_for_checkpoint(_args(data, model_dir), ckpt_dir)
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert kill_step == CHECKPOINT_EVERY and tf.train.latest_checkpoint(str(ckpt_dir)).endswith("ckpt-%d" % kill_step)

    # 2. The same command resumes there, runs only the epoch's remaining steps, and
    #    on SIGTERM (what preemption sends) saves a checkpoint and exits 143.
    proc, seen = _start_and_wait_for_checkpoint(_args(data, model_dir), ckpt_dir, after_step=kill_step)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == cli.EXIT_PREEMPTED, err[-3000:]
    assert "at step %d (epoch 0 completed)" % kill_step in out
    assert "epoch 1/2: %d steps (resuming after step %d of this epoch)" % (STEPS, kill_step) in out
    term_step = ckpt_lib.step_of(tf.train.latest_checkpoint(str(ckpt_dir)))
    assert kill_step < seen <= term_step < total
    assert "SIGTERM received: saved checkpoint %s at step %d;" % (tf.train.latest_checkpoint(str(ckpt_dir)), term_step) in out

    # 3. Rerunning continues at the SIGTERM checkpoint (not at 0) and completes; here with a
    #    lower learning rate, which a resumed run accepts only with --allow_config_change.
    capsys.readouterr()
    assert task.main([str(a) for a in _args(data, model_dir, "--learning_rate", "0.005")]) == 2
    assert "learning_rate: saved 0.01, now 0.005" in capsys.readouterr().err
    assert task.main([str(a) for a in _args(data, model_dir, "--learning_rate", "0.005", "--allow_config_change")]) == 0
    out = capsys.readouterr().out
    assert "config changed on resume (allowed): learning_rate: saved 0.01, now 0.005" in out
    assert json.loads((model_dir / ("config-before-step-%d.json" % term_step)).read_text())["learning_rate"] == 0.01
    assert json.loads((model_dir / "config.json").read_text())["learning_rate"] == 0.005
    assert "at step %d (epoch %d completed)" % (term_step, term_step // STEPS) in out
    assert "epoch 1/2: %d steps\n" % STEPS not in out
    assert "trained 2 epochs (%d steps)" % total in out.strip().splitlines()[-1]
    assert ckpt_lib.step_of(tf.train.latest_checkpoint(str(ckpt_dir))) == total


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(data, tmp_path, capsys):
    model_dir = tmp_path / "nan"
    args = _args(data, model_dir, "--debug_nan_at_step", "3", "--epochs", "1", "--checkpoint_every_steps", "1")
    code = task.main([str(a) for a in args])
    assert code == cli.EXIT_DIVERGED
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "loss is nan at global step 4" in err
    # Steps 0..2 completed (checkpoints 1..3, the last 2 kept); the poisoned step 4 was never saved.
    latest = tf.train.latest_checkpoint(str(model_dir / "checkpoints"))
    assert latest.endswith("ckpt-3") and "last good checkpoint is %s" % latest in err
    reader = tf.train.load_checkpoint(latest)
    for name in reader.get_variable_to_shape_map():
        value = reader.get_tensor(name)
        if np.issubdtype(np.asarray(value).dtype, np.floating):
            assert np.all(np.isfinite(value)), name
