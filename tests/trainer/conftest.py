"""Data sets and the one training run that several trainer test modules share.

Session-scoped: each is built once per test session, however many modules use it.
Tests that change the run's model directory say so; the results the run ended
with are kept in the fixture (`results`), so no test depends on another's writes.
"""
import json

import pytest

from tests.helpers.trainer_data import run_args, write_dataset, write_labelled_shards
from trainer import task


@pytest.fixture(scope="session")
def data(tmp_path_factory):
    """Labelled shards (tests.helpers.trainer_data.write_labelled_shards): (directory, train images, validation images)."""
    return write_labelled_shards(str(tmp_path_factory.mktemp("shards")))


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """One finished `python -m trainer.task` run (in-process) with --ten_crop on a 3-class set."""
    root = tmp_path_factory.mktemp("trainer_run")
    data_dir = root / "data"
    written = write_dataset(data_dir, num_classes=3, train_per_class=8, val_per_class=4, size=72)
    model_dir = root / "run"
    assert task.main(run_args(data_dir, model_dir, "--ten_crop")) == 0
    results = json.loads((model_dir / "eval.json").read_text())
    return {"data": data_dir, "model_dir": model_dir, "jpegs": written["jpegs"], "root": root, "results": results}
