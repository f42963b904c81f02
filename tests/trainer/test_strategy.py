"""trainer.strategy: the strategies one CPU can build, and XLA refused over logical CPU devices."""
import types

import pytest
import tensorflow as tf

from trainer import strategy as strategy_lib

LOCAL = "/job:localhost/replica:0/task:0/device:"


def test_strategy_auto_and_default_on_one_cpu():
    s = strategy_lib.make_strategy("auto", None)
    assert s.num_replicas_in_sync == 1 and strategy_lib.is_chief(s)
    assert strategy_lib.write_dir("/x/checkpoints", s) == "/x/checkpoints"
    assert isinstance(strategy_lib.make_strategy("one_device", None), tf.distribute.OneDeviceStrategy)
    with pytest.raises(strategy_lib.StrategyError, match="needs TF_CONFIG"):
        strategy_lib.make_strategy("multi_worker_mirrored", None)


def test_xla_is_refused_only_over_several_logical_cpu_devices():
    def devices(*names):  # a strategy as check_xla sees it: its worker devices
        return types.SimpleNamespace(extended=types.SimpleNamespace(worker_devices=names))

    refused = r"^--xla cannot run the step mirrored over 2 logical CPU devices \(--cpu_replicas 2\)"
    with pytest.raises(strategy_lib.StrategyError, match=refused):
        strategy_lib.check_xla(devices(LOCAL + "CPU:0", LOCAL + "CPU:1"))
    strategy_lib.check_xla(devices(LOCAL + "GPU:0", LOCAL + "GPU:1"))
    # The default strategy lists no devices; its XLA step trains (tests/trainer/test_step.py).
    strategy_lib.check_xla(tf.distribute.get_strategy())
    strategy_lib.check_xla(tf.distribute.OneDeviceStrategy("/cpu:0"))
