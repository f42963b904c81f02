"""trainer.progress: time left, the input-wait share, the stall check and the progress output, alone and in real runs.

The end-to-end tests run `python -m trainer.task` on the tiny coloured-squares set
(tests.helpers.trainer_data.write_dataset) three times: a normal run that learns,
the same with its input pipeline slowed on purpose (--debug_input_sleep_ms), and
one on labels shuffled against the images, which cannot learn.
"""
import io
import math
import re
import time

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers.trainer_data import run_task, write_dataset
from trainer import config as config_lib
from trainer import datasets
from trainer import progress
from trainer import step as step_lib


def _call(steps, seconds, wait=0.0, warmup=False, call_seconds=None):
    return progress.Call(steps, seconds, seconds if call_seconds is None else call_seconds, wait, warmup=warmup)


# --------------------------------------------------------------------------- pure parts


def test_durations_read_as_seconds_minutes_and_hours():
    assert progress.format_duration(None) == "?"
    assert progress.format_duration(-1) == "0.0s"
    assert progress.format_duration(12.34) == "12.3s"
    assert progress.format_duration(59.94) == "59.9s"
    assert progress.format_duration(61) == "1:01"
    assert progress.format_duration(3599.4) == "59:59"
    assert progress.format_duration(3723) == "1:02:03"
    assert progress.format_duration(90061) == "25:01:01"
    assert progress.format_share(0.1234) == "12.3%" and progress.format_share(None) == "?"


def test_time_left_is_the_moving_average_of_recent_steps_times_the_steps_left():
    times = progress.TimeLeft(steps_per_epoch=10, epochs=3, window=4)
    assert times.left(1) == (None, None)
    times.add(_call(1, 30.0, warmup=True))  # tracing: alone, it is all there is
    assert times.seconds_per_step() == 30.0
    for _ in range(2):
        times.add(_call(1, 2.0))
    assert times.seconds_per_step() == 2.0  # the warm-up call is left out once others exist
    epoch_left, run_left = times.left(3)
    assert epoch_left == pytest.approx(7 * 2.0) and run_left == pytest.approx(27 * 2.0)
    # The window keeps the last calls that cover at least 4 steps: (2 steps of 1 s) + (2 of 1.5 s).
    times.add(_call(2, 2.0))
    times.add(_call(2, 3.0))
    assert times.seconds_per_step() == pytest.approx(5.0 / 4)
    # At an epoch's last step its end is still to come; once an end is timed, every end to come costs that.
    times.epoch_ended(4.0)
    assert times.left(10) == (pytest.approx(0.0), pytest.approx(20 * 1.25 + 3 * 4.0))
    assert times.left(11) == (pytest.approx(9 * 1.25), pytest.approx(19 * 1.25 + 2 * 4.0))
    assert times.left(30) == (pytest.approx(0.0), pytest.approx(4.0))


def test_input_wait_share_per_epoch_and_run_and_one_warning_above_the_threshold():
    waits = progress.InputWait(threshold=0.25, min_steps=4)
    waits.add(_call(1, 10.0, wait=9.0, warmup=True))  # filling the pipeline: not the steady state
    assert waits.epoch_share() == pytest.approx(0.9)  # the epoch's only call so far
    assert waits.run_share() is None and waits.check() is None
    waits.add(_call(2, 2.0, wait=0.2))
    assert waits.epoch_share() == pytest.approx(0.1) and waits.check() is None  # under min_steps measured
    waits.add(_call(2, 2.0, wait=0.2))
    assert waits.check() is None  # 4 steps at 10%: not input-bound
    waits.start_epoch()
    assert waits.epoch_share() is None
    waits.add(_call(4, 4.0, wait=3.0))
    assert waits.epoch_share() == pytest.approx(0.75)
    assert waits.run_share() == pytest.approx(3.4 / 8.0)
    found = waits.check()
    assert found == (pytest.approx(3.4 / 8.0), 8)
    waits.add(_call(4, 4.0, wait=4.0))
    assert waits.check() is None  # once


def test_the_input_bound_message_is_one_line_naming_the_remedies():
    text = progress.input_bound_message(0.625, 40)
    assert "\n" not in text and text.startswith("warning: the input pipeline is the bottleneck")
    assert "62.5% of the time over 40 steps" in text and "above 25.0%" in text
    assert "more hosts" in text and "fewer shards per host" in text and "faster storage" in text
    assert "--augment_on_host" not in text  # already off: nothing to turn off
    assert "drop --augment_on_host" in progress.input_bound_message(0.625, 40, augment_on_host=True)


def test_stall_check_warns_once_when_the_mean_loss_sits_at_ln_classes():
    chance = math.log(10)
    stall = progress.StallCheck(num_classes=10, after_steps=4, window=3)
    assert stall.add(3, 3, 3 * 8 * chance, 24) is None  # before step 4: no check
    assert stall.add(4, 1, 8 * chance, 8) == (pytest.approx(chance), 4)  # the last calls covering >= 3 steps
    assert stall.add(5, 1, 8 * chance, 8) is None  # once


def test_stall_check_leaves_a_learning_run_alone_and_can_be_off():
    chance = math.log(10)
    stall = progress.StallCheck(num_classes=10, after_steps=2, window=2)
    low = chance * (1 - progress.STALL_MARGIN) - 0.01
    assert stall.add(2, 2, 16 * low, 16) is None and stall.add(3, 1, 8 * low, 8) is None
    # Above ln(C) (worse than a uniform guess) has not started to learn either.
    assert stall.add(4, 1, 8 * (chance + 1.0), 8) == (pytest.approx((low + chance + 1.0) / 2), 2)
    off = progress.StallCheck(num_classes=10, after_steps=0)
    assert off.add(100, 1, 8 * chance, 8) is None
    # A window longer than the steps before the check shrinks to them: a resumed or short run is checked too.
    short = progress.StallCheck(num_classes=3, after_steps=2, window=20)
    assert short.add(2, 2, 16 * math.log(3), 16) == (pytest.approx(math.log(3)), 2)


def test_the_stall_message_is_one_line_naming_causes_and_switches():
    text = progress.stall_message(6.9, 20, 1000, 1000, "paper", 0.01, 0.0)
    assert "\n" not in text and text.startswith("warning: training has not started to learn")
    assert "6.9000 over the last 20 steps at step 1000" in text and "ln(1000) = 6.9078" in text
    for switch in ("--init, now paper", "--learning_rate, peak now 0.01", "--warmup_epochs, now 0", "labels"):
        assert switch in text


def test_progress_prints_every_n_steps_and_the_last_off_a_terminal():
    stream = io.StringIO()
    shown = progress.Progress(epoch=1, epochs=3, steps=5, every=2, done=1, stream=stream)
    logged = 1
    for done in range(2, 6):
        status = {"elapsed": 60.0 + done, "epoch_left": 5.0 - done, "run_left": 100.0 - done, "input_wait": 0.05}
        logged = shown.update(done, {"loss": 1.5, "lr": 0.01}, logged, status)
    assert stream.getvalue().splitlines() == [
        "epoch 2/3: 5 steps (resuming after step 1 of this epoch)",
        "epoch 2/3 step 3/5 loss=1.5 lr=0.01 input_wait=5.0% elapsed=1:03 epoch_left=2.0s run_left=1:37",
        "epoch 2/3 step 5/5 loss=1.5 lr=0.01 input_wait=5.0% elapsed=1:05 epoch_left=0.0s run_left=1:35",
    ]
    assert logged == 5


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_on_a_terminal_is_a_bar_redrawn_in_place():
    stream = _Terminal()
    shown = progress.Progress(epoch=0, epochs=1, steps=4, every=100, stream=stream)
    status = {"elapsed": 3.0, "epoch_left": 9.0, "run_left": 9.0, "input_wait": 0.5}
    assert shown.update(1, {"loss": 2.0}, 0, status) == 1  # every call, whatever --log_every_steps says
    shown.break_line()  # a warning comes: the half-drawn bar's line ends first
    shown.update(2, {"loss": 1.0}, 1, dict(status, elapsed=4.0, epoch_left=1.0, run_left=1.0))
    shown.update(4, {"loss": 1.0}, 2, dict(status, elapsed=6.0, epoch_left=0.0, run_left=0.0))
    first, second = (
        "1/4 ━━━━━───────────────" " 3.0s, 9.0s left (run 9.0s) - loss: 2.0000 - input wait: 50.0%",
        "2/4 ━━━━━━━━━━──────────" " 4.0s, 1.0s left (run 1.0s) - loss: 1.0000 - input wait: 50.0%",
    )
    last = "4/4 ━━━━━━━━━━━━━━━━━━━━ 6.0s (run 0.0s left) - loss: 1.0000 - input wait: 50.0%"
    assert stream.getvalue() == "epoch 1/1: 4 steps\n\r%s\n\r%s\r%s%s\n" % (first, second, last, " " * (len(second) - len(last)))


def test_the_step_function_measures_the_wait_for_each_batch():
    config = config_lib.TrainConfig(data_dir="unused", image_size=67, init="he", dropout_rate=0.0, seed=3)
    trainer = step_lib.Trainer(config, tf.distribute.get_strategy(), num_classes=3, global_batch_size=8)
    rng = np.random.default_rng(0)
    images, labels = rng.normal(size=(16, 67, 67, 3)).astype("float32"), (np.arange(16) % 3).astype("int32")

    def measured(sleep):
        def dataset_fn(ctx):
            ds = tf.data.Dataset.from_tensor_slices((images, labels)).batch(8).repeat().prefetch(2)
            return datasets.delay_batches(ds, sleep) if sleep else ds

        iterator = iter(trainer.strategy.distribute_datasets_from_function(dataset_fn))
        trainer.train_steps(iterator, 1)  # tracing
        start = time.perf_counter()
        sums = trainer.train_steps(iterator, 3)
        return sums["input_wait_seconds"], time.perf_counter() - start

    fast_wait, fast_call = measured(0.0)
    slow_wait, slow_call = measured(0.4)
    assert 0.0 <= fast_wait < progress.INPUT_BOUND_SHARE * fast_call
    # Each of the 3 steps sleeps 0.4 s for its batch; nothing else is counted as waiting.
    assert 3 * 0.4 <= slow_wait < slow_call


# --------------------------------------------------------------------------- real runs


def _flags(data, model_dir, *extra):
    return [
        "--data_dir", str(data), "--model_dir", str(model_dir), "--image_size", "67", "--batch_size", "8",
        "--init", "he", "--learning_rate", "0.01", "--seed", "7", "--no_export", *extra,
    ]  # fmt: skip


_LINE = re.compile(r"^epoch (\d+)/(\d+) step (\d+)/(\d+) .*input_wait=([0-9.]+)% elapsed=(\S+) epoch_left=(\S+) run_left=(\S+)$")
_EPOCH_LINE = re.compile(r"^epoch (\d+)/\d+ step (\d+): .*\| input wait ([0-9.]+)% \| [0-9.]+ images/s$")


def _seconds(text):
    """format_duration's text back to seconds."""
    if text.endswith("s"):
        return float(text[:-1])
    parts = [int(p) for p in text.split(":")]
    return float(sum(p * 60**i for i, p in enumerate(reversed(parts))))


def _progress_lines(out):
    rows = []
    for line in out.splitlines():
        m = _LINE.match(line)
        if m:
            epoch, _, done, _, wait, elapsed, epoch_left, run_left = m.groups()
            rows.append({"epoch": int(epoch), "done": int(done), "wait": float(wait) / 100, "elapsed": _seconds(elapsed),
                         "epoch_left": _seconds(epoch_left), "run_left": _seconds(run_left)})  # fmt: skip
    return rows


def _epoch_shares(out):
    return {int(m.group(2)): float(m.group(3)) / 100 for m in map(_EPOCH_LINE.match, out.splitlines()) if m}


def _scalars(log_dir, tag):
    """{step: value} of a scalar tag read back from the event files under log_dir."""
    values = {}
    for path in sorted(tf.io.gfile.glob(str(log_dir / "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == tag:
                    values[event.step] = float(tf.make_ndarray(value.tensor))
    return values


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The three runs: normal (3 epochs of 6 steps), slowed input, shuffled labels; each {out, model_dir}."""
    root = tmp_path_factory.mktemp("watch")
    write_dataset(root / "data", num_classes=3, train_per_class=8, val_per_class=4, size=72)
    write_dataset(root / "shuffled", num_classes=3, train_per_class=8, val_per_class=4, size=72, shuffle_labels=True)
    plans = {
        "normal": ("data", "--epochs", "3", "--steps_per_epoch", "6", "--log_every_steps", "3", "--stall_steps", "12"),
        "slowed": ("data", "--epochs", "1", "--steps_per_epoch", "8", "--log_every_steps", "4", "--stall_steps", "0",
                   "--debug_input_sleep_ms", "600"),
        "shuffled": ("shuffled", "--epochs", "1", "--steps_per_epoch", "12", "--log_every_steps", "4", "--stall_steps", "12"),
    }  # fmt: skip
    out = {}
    for name, (data, *extra) in plans.items():
        proc = run_task(*_flags(root / data, root / name, *extra))
        assert proc.returncode == 0, proc.stderr[-3000:]
        out[name] = {"out": proc.stdout, "model_dir": root / name}
    return out


def _warnings(out, start):
    return [line for line in out.splitlines() if line.startswith(start)]


def test_progress_lines_carry_an_eta_that_falls_as_the_run_advances(runs):
    out = runs["normal"]["out"]
    rows = _progress_lines(out)
    assert [(r["epoch"], r["done"]) for r in rows] == [(e, d) for e in (1, 2, 3) for d in (3, 6)]
    assert "\r" not in out and "━" not in out  # not a terminal: plain lines, no bar
    for epoch in (1, 2, 3):
        mine = [r for r in rows if r["epoch"] == epoch]
        assert mine[0]["epoch_left"] > 0 and mine[-1]["epoch_left"] == 0.0
    # Once an epoch's end (validation, summaries, checkpoint) has been timed, the run's
    # estimate counts it for every end to come, and from then on falls line after line
    # (the first epoch's lines leave the ends out: none has been timed yet).
    timed = [r["run_left"] for r in rows if r["epoch"] >= 2]
    assert all(a > b for a, b in zip(timed, timed[1:])), timed
    assert all(a["elapsed"] < b["elapsed"] for a, b in zip(rows, rows[1:]))
    # The final line states the total time, which is at least the elapsed time of the last step line.
    final = out.strip().splitlines()[-1]
    m = re.search(r"; total time (\S+)$", final)
    assert final.startswith("trainer.task: trained 3 epochs (18 steps)") and m, final
    assert _seconds(m.group(1)) >= rows[-1]["elapsed"]


def test_the_input_wait_share_is_in_the_lines_and_tensorboard_and_a_normal_run_does_not_warn(runs):
    out, model_dir = runs["normal"]["out"], runs["normal"]["model_dir"]
    shares = _epoch_shares(out)
    assert sorted(shares) == [6, 12, 18]
    logged = _scalars(model_dir / "logs" / "train", "input_wait_fraction")
    assert sorted(logged) == [6, 12, 18]
    for step, share in shares.items():
        assert logged[step] == pytest.approx(share, abs=0.0005)  # the line rounds to 0.1%
        assert 0.0 <= share < progress.INPUT_BOUND_SHARE
    batch = _scalars(model_dir / "logs" / "train", "batch/input_wait_fraction")
    assert sorted(batch) == [3, 6, 9, 12, 15, 18]
    rows = {(r["epoch"] - 1) * 6 + r["done"]: r["wait"] for r in _progress_lines(out)}
    assert all(batch[s] == pytest.approx(rows[s], abs=0.0005) for s in rows)
    assert rows[18] == pytest.approx(shares[18], abs=0.0005)  # the epoch's last line and its epoch line agree
    assert not _warnings(out, "warning: the input pipeline is the bottleneck")


def test_an_input_pipeline_slowed_on_purpose_warns_once(runs):
    out, model_dir = runs["slowed"]["out"], runs["slowed"]["model_dir"]
    (warning,) = _warnings(out, "warning: the input pipeline is the bottleneck")
    share = float(re.search(r"waited for the next batch ([0-9.]+)% of the time", warning).group(1)) / 100
    assert share > progress.INPUT_BOUND_SHARE
    assert "more hosts" in warning and "faster storage" in warning
    (epoch_share,) = _epoch_shares(out).values()
    assert epoch_share > progress.INPUT_BOUND_SHARE
    assert _scalars(model_dir / "logs" / "train", "input_wait_fraction") == {8: pytest.approx(epoch_share, abs=0.0005)}
    assert epoch_share > max(_epoch_shares(runs["normal"]["out"]).values())


def test_a_run_that_cannot_learn_warns_once_and_a_learning_run_does_not(runs):
    out = runs["shuffled"]["out"]
    (warning,) = _warnings(out, "warning: training has not started to learn")
    loss = float(re.search(r"the training loss, ([0-9.]+) over the last 12 steps at step 12", warning).group(1))
    assert loss > math.log(3) * (1 - progress.STALL_MARGIN)
    for switch in ("--init, now he", "--learning_rate, peak now 0.01", "--warmup_epochs, now 0"):
        assert switch in warning
    assert not _warnings(out, "warning: the input pipeline is the bottleneck")
    assert not _warnings(runs["normal"]["out"], "warning: training has not started to learn")  # checked from step 12
