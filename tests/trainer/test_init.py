"""trainer/__init__.py: the oneDNN default, given before TensorFlow starts unless the environment chose."""
import os
import subprocess
import sys

import pytest

from tests.helpers.trainer_data import REPO


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
                          cwd=REPO)  # fmt: skip
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
