"""trainer.loop: the progress lines off a terminal and the SIGTERM flag (fit itself runs in test_run and test_preemption)."""
import io
import os
import signal

from trainer import loop


def test_progress_prints_every_n_steps_and_the_last_off_a_terminal():
    stream = io.StringIO()
    progress = loop.Progress(epoch=1, epochs=3, steps=5, every=2, done=1, stream=stream)
    logged = 1
    for done in range(2, 6):
        logged = progress.update(done, {"loss": 1.5, "lr": 0.01}, logged)
    lines = stream.getvalue().splitlines()
    assert lines == [
        "epoch 2/3: 5 steps (resuming after step 1 of this epoch)",
        "epoch 2/3 step 3/5 loss=1.5 lr=0.01",
        "epoch 2/3 step 5/5 loss=1.5 lr=0.01",
    ]
    assert logged == 5


def test_sigterm_sets_the_flag_and_the_previous_handler_comes_back():
    before = signal.getsignal(signal.SIGTERM)
    with loop.SigtermFlag() as flag:
        assert not flag.received
        os.kill(os.getpid(), signal.SIGTERM)
        assert flag.received
    assert signal.getsignal(signal.SIGTERM) == before
