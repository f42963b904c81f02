"""The converted ImageNet-layout sets several test modules read (each built once per session)."""
import pytest

from tests.helpers import image_folders as fx


@pytest.fixture(scope="session")
def clean(tmp_path_factory):
    root = tmp_path_factory.mktemp("clean")
    data = fx.make_clean_set(root / "in")
    data["train_tar"], data["val_tar"] = fx.make_tars(data, root / "tars")
    data["out"] = root / "out"
    data["meta"] = fx.run_job(data["out"], *fx.imagenet_flags(data), "--train_shards", 3, "--val_shards", 2, "--image_size", 48)
    return data


@pytest.fixture(scope="session")
def messy(tmp_path_factory):
    root = tmp_path_factory.mktemp("messy")
    data = fx.make_messy_set(root / "in")
    data["out"] = root / "out"
    data["meta"] = fx.run_job(
        data["out"], *fx.imagenet_flags(data), "--train_shards", 3, "--val_shards", 2, "--image_size", 40,
        "--max_reject_fraction", 0.5,
    )
    return data
