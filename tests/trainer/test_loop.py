"""trainer.loop: the SIGTERM flag (fit itself runs in test_run, test_preemption and test_progress)."""
import os
import signal

from trainer import loop


def test_sigterm_sets_the_flag_and_the_previous_handler_comes_back():
    before = signal.getsignal(signal.SIGTERM)
    with loop.SigtermFlag() as flag:
        assert not flag.received
        os.kill(os.getpid(), signal.SIGTERM)
        assert flag.received
    assert signal.getsignal(signal.SIGTERM) == before
