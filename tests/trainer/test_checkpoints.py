"""trainer.checkpoints: a manager round trip of the training state, and the model directory's config.json."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainer import checkpoints as ckpt_lib
from trainer import config as config_lib


def _state(seed):
    dense = keras.layers.Dense(2, kernel_initializer=keras.initializers.RandomNormal(seed=seed))
    model = keras.Sequential([keras.Input((3,)), dense])
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    optimizer.build(model.trainable_variables)
    state = ckpt_lib.TrainingState()
    return model, optimizer, state, ckpt_lib.make_checkpoint(model, optimizer, state)


def test_manager_round_trip_restores_weights_slots_and_state(tmp_path):
    model, optimizer, state, checkpoint = _state(seed=1)
    optimizer.apply_gradients(zip([tf.ones_like(v) for v in model.trainable_variables], model.trainable_variables))
    state.step.assign(7)
    state.epoch.assign(2)
    state.lr_drops.assign(1)
    state.best_top1.assign(0.625)
    state.bad_epochs.assign(3)
    last, best = ckpt_lib.make_managers(checkpoint, str(tmp_path / "checkpoints"), str(tmp_path / "best"), keep=2)
    for step in (3, 5, 7):
        path = last.save(checkpoint_number=step)
    assert path.endswith("ckpt-7") and best.save(checkpoint_number=7).endswith("best-7")
    assert [p.rsplit("-", 1)[1] for p in last.checkpoints] == ["5", "7"]  # the last `keep`
    assert ckpt_lib.step_of(path) == 7

    fresh_model, fresh_optimizer, fresh_state, fresh = _state(seed=2)
    assert not np.allclose(fresh_model.get_weights()[0], model.get_weights()[0])
    assert ckpt_lib.restore(fresh, path) == path
    for a, b in zip(fresh_model.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(fresh_optimizer.variables, optimizer.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    saved = (int(fresh_state.step.numpy()), int(fresh_state.epoch.numpy()), int(fresh_state.lr_drops.numpy()))
    assert saved == (7, 2, 1)
    assert float(fresh_state.best_top1.numpy()) == 0.625 and int(fresh_state.bad_epochs.numpy()) == 3


def test_restoring_into_another_model_fails(tmp_path):
    _, _, _, checkpoint = _state(seed=1)
    path = checkpoint.save(str(tmp_path / "ckpt"))
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4)])
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    optimizer.build(other.trainable_variables)
    mismatched = ckpt_lib.make_checkpoint(other, optimizer, ckpt_lib.TrainingState())
    with pytest.raises((ValueError, AssertionError, tf.errors.OpError)):
        ckpt_lib.restore(mismatched, path)


def test_config_json_is_written_read_back_and_archived(tmp_path):
    model_dir = str(tmp_path / "run")
    assert ckpt_lib.read_saved_config(model_dir) is None
    config = config_lib.TrainConfig(data_dir="d", model_dir=model_dir, learning_rate=0.02)
    ckpt_lib.write_config(model_dir, config)
    assert config_lib.from_dict(ckpt_lib.read_saved_config(model_dir)) == config
    archived = ckpt_lib.archive_config(model_dir, 12)
    assert archived.endswith("config-before-step-12.json")
    assert json.loads((tmp_path / "run" / "config-before-step-12.json").read_text())["learning_rate"] == 0.02
