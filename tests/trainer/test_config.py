"""trainer.config: the paper's defaults, frozen, and what a resumed run may change."""
import dataclasses
import json

import pytest

from trainer import config as config_lib
from trainer import task


def test_defaults_are_the_papers_recipe():
    config, tf_config = task.parse_config(["--data_dir", "d"], {})
    assert tf_config is None
    optimisation = (config.batch_size, config.epochs, config.learning_rate, config.momentum, config.weight_decay)
    assert optimisation == (128, 90, 0.01, 0.9, 5e-4)
    recipe = (config.image_size, config.init, config.lr_schedule, config.max_lr_drops, config.dropout_rate)
    assert recipe == (227, "paper", "plateau", 3, 0.5)
    assert config.lrn and config.overlapping_pool and config.pca_noise and not config.two_tower
    assert config.warmup_epochs == 0.0 and config_lib.effective_learning_rate(config) == 0.01
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.batch_size = 3


def test_config_differences_ignore_directories_and_epochs():
    a = config_lib.TrainConfig(data_dir="d", model_dir="m1", epochs=3)
    saved = json.loads(config_lib.to_json(a))
    assert config_lib.config_differences(saved, dataclasses.replace(a, model_dir="m2", epochs=9, eval_only=True)) == []
    assert config_lib.config_differences(saved, dataclasses.replace(a, learning_rate=0.1)) == [("learning_rate", 0.01, 0.1)]
    assert config_lib.from_dict(saved) == a


def test_a_field_missing_from_an_older_config_json_counts_as_its_default():
    a = config_lib.TrainConfig(data_dir="d")
    older = {k: v for k, v in json.loads(config_lib.to_json(a)).items() if k != "deterministic"}
    assert config_lib.config_differences(older, a) == []
    assert config_lib.config_differences(older, dataclasses.replace(a, deterministic=True)) == [
        ("deterministic", False, True)
    ]
