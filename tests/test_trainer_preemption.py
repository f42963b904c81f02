"""What real runs meet: SIGTERM (preemption), SIGKILL mid-epoch, and a NaN loss.

The signal tests run `python -m trainer.task` as a real child process and
signal it once its first step checkpoint is on disk.
"""
import signal
import subprocess
import time

import numpy as np
import pytest
import tensorflow as tf

from test_trainer_support import REPO, run_task, subprocess_env, task_command, write_dataset
from trainer import checkpoints as ckpt_lib
from trainer import task

EPOCHS, STEPS = 2, 6


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("preempt_data")
    write_dataset(root, num_classes=3, train_per_class=8, val_per_class=2, size=72)
    return root


def _args(data, model_dir, *extra):
    return [
        "--data_dir", data, "--model_dir", model_dir, "--image_size", "67", "--batch_size", "8", "--epochs", str(EPOCHS),
        "--steps_per_epoch", str(STEPS), "--init", "he", "--checkpoint_every_steps", "1", "--keep_checkpoints", "2",
        "--no_export", "--seed", "5", *extra,
    ]


def _start_and_wait_for_checkpoint(args, checkpoint_dir, after_step=0, timeout=240):
    """Starts the trainer and returns (process, step) once a checkpoint beyond after_step exists."""
    proc = subprocess.Popen(task_command(*args), cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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


def test_sigterm_saves_then_sigkill_mid_epoch_resumes_and_completes(data, tmp_path):
    model_dir = tmp_path / "run"
    ckpt_dir = model_dir / "checkpoints"
    total = EPOCHS * STEPS

    # 1. SIGTERM (what preemption sends): the run saves a checkpoint at its current step and exits 143.
    proc, seen = _start_and_wait_for_checkpoint(_args(data, model_dir), ckpt_dir)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == task.EXIT_PREEMPTED, err[-3000:]
    assert "SIGTERM received: saved checkpoint" in out
    term_step = ckpt_lib.step_of(tf.train.latest_checkpoint(str(ckpt_dir)))
    assert seen <= term_step < total
    assert "at step %d;" % term_step in out

    # 2. Rerun, and SIGKILL it (no chance to save) once it has checkpointed beyond that step.
    proc, kill_step = _start_and_wait_for_checkpoint(_args(data, model_dir), ckpt_dir, after_step=term_step)
    proc.kill()
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    resume_step = ckpt_lib.step_of(tf.train.latest_checkpoint(str(ckpt_dir)))
    assert term_step < resume_step < total

    # 3. Rerun the same command: it continues at the saved step, not at 0, and completes.
    result = run_task(*_args(data, model_dir), timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "at step %d (epoch %d completed)" % (resume_step, resume_step // STEPS) in result.stdout
    if resume_step % STEPS:
        assert "(resuming after step %d of this epoch)" % (resume_step % STEPS) in result.stdout
    # Only the remaining steps ran: progress lines never restart the epoch at step 1.
    assert "epoch 1/2 step 1/6" not in result.stdout
    assert "trained 2 epochs (%d steps)" % total in result.stdout.strip().splitlines()[-1]
    assert ckpt_lib.step_of(tf.train.latest_checkpoint(str(ckpt_dir))) == total


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(data, tmp_path, capsys):
    model_dir = tmp_path / "nan"
    code = task.main([str(a) for a in _args(data, model_dir, "--debug_nan_at_step", "3", "--epochs", "1")])
    assert code == task.EXIT_DIVERGED
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
