"""trainer.run_lock: one writer per model directory.

The lock's own rules are tested on real files (local, and TensorFlow's ram://
filesystem for the create-then-read-back scheme gs:// uses); what a user meets is
tested with real trainer processes: a second run on a busy directory, a holder
killed with SIGKILL, a frozen holder whose lock goes stale, --eval_only beside a
holder, and two multi-worker processes of which only the chief locks.
"""
import dataclasses
import json
import os
import signal
import socket
import subprocess
import time

import numpy as np
import pytest
import tensorflow as tf

import cli
from tests.helpers.trainer_data import (
    REPO, free_port, program_lines, run_task, subprocess_env, task_command, write_dataset,
)
from trainer import checkpoints as ckpt_lib
from trainer import run_lock, task


def _record(host="elsewhere.example", pid=4242, age=0.0, stale=60.0, token="theirs"):
    now = time.time()
    return run_lock.Holder(host, pid, now - age - 10, now - age, stale, token)


def _plant(path, holder):
    if tf.io.gfile.exists(path):
        tf.io.gfile.remove(path)  # ram:// appends on "w"
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(dataclasses.asdict(holder)))


# ---------------------------------------------------------------- the lock's rules, in process


def test_a_second_local_lock_is_refused_naming_the_holder_until_released(tmp_path):
    first = run_lock.DirectoryLock(str(tmp_path), stale_seconds=60)
    second = run_lock.DirectoryLock(str(tmp_path), stale_seconds=60)
    first.acquire()
    on_disk = json.loads((tmp_path / run_lock.LOCK_FILE).read_text())
    assert (on_disk["host"], on_disk["pid"], on_disk["token"]) == (socket.gethostname(), first.record.pid, first.record.token)
    with pytest.raises(run_lock.LockBusy) as busy:
        second.acquire()
    message = str(busy.value)
    assert message.startswith("%s is in use by another run (host %s, process %d, started " % (
        tmp_path, socket.gethostname(), first.record.pid))
    assert "\n" not in message
    first.release()
    assert not (tmp_path / run_lock.LOCK_FILE).exists()
    second.acquire()
    assert json.loads((tmp_path / run_lock.LOCK_FILE).read_text())["token"] == second.record.token
    second.release()


def test_remote_scheme_the_earlier_of_two_simultaneous_writers_loses():
    """gs:// has no exclusive create: both write, both read back; only the last writer holds it."""
    directory = "ram://lock_race"
    a = run_lock.DirectoryLock(directory, stale_seconds=60, settle_seconds=0.0)
    b = run_lock.DirectoryLock(directory, stale_seconds=60, settle_seconds=0.0)
    assert not a.exclusive and not b.exclusive  # chosen for any path with a scheme
    tf.io.gfile.makedirs(directory)
    a._write_claim()
    b._write_claim()
    with pytest.raises(run_lock.LockBusy, match="process %d.*it took the lock at the same time" % b.record.pid):
        a._confirm()
    assert b._confirm()
    b.release()
    assert not tf.io.gfile.exists(a.path)


def test_remote_scheme_refuses_a_fresh_lock_and_takes_over_a_stale_one():
    directory = "ram://lock_stale"
    tf.io.gfile.makedirs(directory)
    path = directory + "/" + run_lock.LOCK_FILE
    warnings = []
    lock = run_lock.DirectoryLock(directory, stale_seconds=60, settle_seconds=0.01, log=warnings.append)
    _plant(path, _record(age=5, stale=30))  # another host's, refreshed 5 s ago: live
    with pytest.raises(run_lock.LockBusy, match="host elsewhere.example, process 4242.*refreshed 5 s ago"):
        lock.acquire()
    _plant(path, _record(age=45, stale=30))  # not refreshed within its 30 s: a lost machine
    lock.acquire()
    assert len(warnings) == 1 and "host elsewhere.example, process 4242" in warnings[0]
    assert "not refreshed for 45 s, more than its interval of 30 s" in warnings[0]
    with tf.io.gfile.GFile(path) as f:
        assert json.loads(f.read())["token"] == lock.record.token
    lock.release()


def test_the_holder_refreshes_and_learns_when_its_lock_was_taken(tmp_path):
    lost = []
    lock = run_lock.RunLock([str(tmp_path)], stale_seconds=0.5, on_lost=lambda d, who: lost.append((d, who)))
    lock.acquire()
    path = tmp_path / run_lock.LOCK_FILE
    first = json.loads(path.read_text())
    time.sleep(0.4)  # refreshes every 0.1 s
    assert json.loads(path.read_text())["refreshed"] > first["refreshed"]
    _plant(str(path), _record())
    deadline = time.time() + 5
    while not lost and time.time() < deadline:
        time.sleep(0.05)
    assert lost and lost[0][0] == str(tmp_path)
    assert lost[0][1].startswith("another run (host elsewhere.example, process 4242, started ")
    lock.release()  # not its lock any more: left in place
    assert json.loads(path.read_text())["token"] == "theirs"


def test_a_lock_whose_process_id_now_names_another_process_is_dead(tmp_path):
    """The same host, a live process id, but another start time: the id was reused."""
    holder = dataclasses.replace(_record(host=socket.gethostname(), pid=1), process_start="1")
    assert run_lock.dead_reason(holder, time.time()) == "its process 1 on this host is gone"
    live = dataclasses.replace(holder, process_start=run_lock._process_start(1))
    assert run_lock.dead_reason(live, time.time()) is None
    # This very process id in an earlier life (a restarted container): dead; this process itself: live.
    me = dataclasses.replace(holder, pid=os.getpid(), process_start="1")
    assert run_lock.dead_reason(me, time.time()) == "its process %d on this host is gone" % os.getpid()
    me = dataclasses.replace(me, process_start=run_lock._process_start(os.getpid()))
    assert run_lock.dead_reason(me, time.time()) is None


# ---------------------------------------------------------------- real trainer processes


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("lock_data")
    write_dataset(root, num_classes=3, train_per_class=8, val_per_class=4, size=72)
    return root


def _args(data, model_dir, *extra, epochs=2, steps=8):
    return [
        "--data_dir", data, "--model_dir", model_dir, "--image_size", "67", "--batch_size", "8",
        "--epochs", str(epochs), "--steps_per_epoch", str(steps), "--init", "he", "--checkpoint_every_steps", "2",
        "--keep_checkpoints", "3", "--no_export", "--seed", "3", *extra,
    ]  # fmt: skip


def _start(args, env=None):
    return subprocess.Popen(
        task_command(*args), cwd=REPO, env=env or subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for(condition, proc, what, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail("trainer exited (%s) before %s: %s %s" % (proc.returncode, what, out[-2000:], err[-2000:]))
        time.sleep(0.05)
    proc.kill()
    pytest.fail("no %s within %d s" % (what, timeout))


def _lock_of(model_dir):
    try:
        return json.loads((model_dir / run_lock.LOCK_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return None


def _checkpoint_values(directory):
    """{checkpoint name: {variable: value}} of every checkpoint in `directory`."""
    out = {}
    for index in sorted(directory.glob("*.index")):
        reader = tf.train.load_checkpoint(str(index.with_suffix("")))
        out[index.stem] = {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}
    return out


def _same_values(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].keys() == b[name].keys(), name
        for var in a[name]:
            assert np.asarray(a[name][var]).tobytes() == np.asarray(b[name][var]).tobytes(), (name, var)


def test_a_second_trainer_on_a_busy_model_dir_exits_2_and_changes_nothing(data, tmp_path):
    """Run A with a second process B started on its directory mid-run, against run R alone:
    --deterministic, so A's checkpoints, weights and results must equal R's byte for byte."""
    alone, busy = tmp_path / "alone", tmp_path / "busy"
    reference = _start(_args(data, alone, "--deterministic", "--dump_weights", tmp_path / "alone.npz"))
    first = _start(_args(data, busy, "--deterministic", "--dump_weights", tmp_path / "busy.npz"))
    _wait_for(lambda: _lock_of(busy) is not None, first, "the writer lock")
    second = run_task(*_args(data, busy, "--deterministic", "--dump_weights", tmp_path / "second.npz"))
    assert first.poll() is None, "the first run ended before the second checked the lock: the test proves nothing"
    assert second.returncode == cli.EXIT_USAGE, second.stderr[-3000:]
    lines = program_lines(second.stderr)
    assert len(lines) == 1 and "Traceback" not in second.stderr
    assert lines[0].startswith(
        "python -m trainer.task: error: %s is in use by another run (host %s, process %d, started "
        % (busy, socket.gethostname(), first.pid)
    )
    assert "epoch" not in second.stdout and not (tmp_path / "second.npz").exists()
    for proc in (first, reference):
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
    assert _lock_of(busy) is None  # released at the end
    for sub in ("checkpoints", "best"):
        _same_values(_checkpoint_values(alone / sub), _checkpoint_values(busy / sub))
    assert sorted(p.name for p in (busy / "checkpoints").glob("*.index")) == ["ckpt-12.index", "ckpt-14.index",
                                                                                "ckpt-16.index"]
    a, b = np.load(tmp_path / "alone.npz"), np.load(tmp_path / "busy.npz")
    assert a.files == b.files and all(a[k].tobytes() == b[k].tobytes() for k in a.files)
    results = [json.loads((d / "eval.json").read_text()) for d in (alone, busy)]
    for r in results:
        r.pop("checkpoint")
    assert results[0] == results[1]
    configs = [json.loads((d / "config.json").read_text()) for d in (alone, busy)]
    for c in configs:
        c.pop("model_dir"), c.pop("dump_weights")
    assert configs[0] == configs[1] and configs[0]["deterministic"] is True


def test_a_lock_left_by_a_sigkilled_run_does_not_block_the_next(data, tmp_path):
    model_dir = tmp_path / "run"
    proc = _start(_args(data, model_dir, epochs=3, steps=2))
    _wait_for(lambda: tf.train.latest_checkpoint(str(model_dir / "checkpoints")), proc, "a checkpoint")
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert _lock_of(model_dir)["pid"] == proc.pid  # left behind: nobody released it
    rerun = run_task(*_args(data, model_dir, epochs=3, steps=2))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "warning: taking over the writer lock %s of host %s, process %d, started " % (
        model_dir / run_lock.LOCK_FILE, socket.gethostname(), proc.pid) in rerun.stdout
    assert "its process %d on this host is gone" % proc.pid in rerun.stdout
    assert "resumed from" in rerun.stdout and _lock_of(model_dir) is None
    assert ckpt_lib.step_of(tf.train.latest_checkpoint(str(model_dir / "checkpoints"))) == 6


def test_a_frozen_holder_is_taken_over_after_its_interval_and_eval_only_takes_no_lock(data, tmp_path):
    model_dir = tmp_path / "run"
    holder = _start(_args(data, model_dir, "--lock_stale_seconds", "3", epochs=3, steps=4))
    _wait_for(lambda: tf.train.latest_checkpoint(str(model_dir / "checkpoints")), holder, "a checkpoint")
    holder.send_signal(signal.SIGSTOP)  # frozen: alive, but no longer refreshing its lock
    try:
        lock_text = (model_dir / run_lock.LOCK_FILE).read_text()
        # A reader beside the holder: --eval_only neither waits for nor touches the lock.
        evaluation = run_task(*_args(data, model_dir, "--eval_only", epochs=3, steps=4))
        assert evaluation.returncode == 0, evaluation.stderr[-3000:]
        assert (model_dir / "eval.json").is_file() and (model_dir / run_lock.LOCK_FILE).read_text() == lock_text
        time.sleep(max(0.0, json.loads(lock_text)["refreshed"] + 3.5 - time.time()))
        # The next training run (the same command, to 1 epoch) takes the stale lock over.
        takeover = run_task(*_args(data, model_dir, epochs=1, steps=4))
        assert takeover.returncode == 0, takeover.stderr[-3000:]
        assert "warning: taking over the writer lock %s of host %s, process %d" % (
            model_dir / run_lock.LOCK_FILE, socket.gethostname(), holder.pid) in takeover.stdout
        assert "more than its interval of 3 s" in takeover.stdout
    finally:
        holder.send_signal(signal.SIGCONT)
    # Woken, the old holder finds at its next refresh that its lock is gone and stops.
    out, err = holder.communicate(timeout=120)
    assert holder.returncode == cli.EXIT_USAGE, err[-3000:]
    assert program_lines(err)[-1] == (
        "python -m trainer.task: error: another run (which has since removed it) took over the writer lock of %s, "
        "which this run had not refreshed within its interval; stopping now so that only one run writes there." % model_dir
    )


def test_only_the_chief_of_two_workers_holds_the_lock(data, tmp_path):
    model_dir = tmp_path / "run"
    cluster = {"worker": ["127.0.0.1:%d" % free_port() for _ in range(2)]}
    procs = []
    try:
        for index in range(2):
            env = subprocess_env(TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
            procs.append(_start(_args(data, model_dir, "--strategy", "multi_worker_mirrored", "--val_steps", "1",
                                      epochs=1, steps=4), env=env))
        _wait_for(lambda: _lock_of(model_dir) is not None, procs[0], "the writer lock")
        seen = _lock_of(model_dir)
        results = [p.communicate(timeout=600) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in results]
    assert seen["pid"] == procs[0].pid and seen["host"] == socket.gethostname()
    assert _lock_of(model_dir) is None


def test_lock_options_reach_the_config():
    config, _ = task.parse_config(["--data_dir", "d", "--lock_stale_seconds", "2.5"], {})
    assert config.lock_stale_seconds == 2.5
    assert task.parse_config(["--data_dir", "d"], {})[0].lock_stale_seconds == run_lock.DEFAULT_STALE_SECONDS
    assert task.main(["--data_dir", "d", "--lock_stale_seconds", "0"]) == cli.EXIT_USAGE


def test_a_trainer_on_a_remote_model_dir_uses_the_read_back_lock(data, capsys):
    """ram:// stands in for gs://: any path with a scheme goes through tf.io.gfile without exclusive create."""
    model_dir = "ram://runs/locked"
    tf.io.gfile.makedirs(model_dir)
    path = model_dir + "/" + run_lock.LOCK_FILE
    _plant(path, _record(age=1, stale=30))
    assert task.main([str(a) for a in _args(data, model_dir, epochs=1, steps=2)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("python -m trainer.task: error: %s is in use by another run (host elsewhere.example, "
                          "process 4242, started " % model_dir) and err.count("\n") == 1
    assert tf.io.gfile.listdir(model_dir) == [run_lock.LOCK_FILE]  # nothing written beside it
    _plant(path, _record(age=31, stale=30))
    assert task.main([str(a) for a in _args(data, model_dir, epochs=1, steps=2)]) == 0
    out = capsys.readouterr().out
    assert "warning: taking over the writer lock %s of host elsewhere.example, process 4242" % path in out
    assert not tf.io.gfile.exists(path) and tf.io.gfile.exists(model_dir + "/eval.json")
