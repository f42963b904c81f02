"""trainer.data_info: DataInfo from metadata.json, from flags without it, and the format-version check."""
import json

import pytest

from preprocessing import schema
from tests.helpers.trainer_data import EIGENVALUES, EIGENVECTORS, RGB_MEAN, STORED, write_metadata
from trainer import data_info


def test_read_data_info_from_metadata(data):
    directory, _, _ = data
    info = data_info.read_data_info(directory)
    assert info.num_classes == 24 and info.label_offset == 0
    assert info.synsets[3] == "n00000003" and info.class_names[23] == "class 23"
    assert info.rgb_mean == RGB_MEAN and info.eigenvalues == EIGENVALUES and info.eigenvectors == EIGENVECTORS
    assert info.counts == {"train": 24, "validation": 11} and info.image_size == min(STORED)
    with pytest.raises(ValueError, match="says num_classes=24. Received: num_classes=1000"):
        data_info.read_data_info(directory, num_classes=1000)
    with pytest.raises(ValueError, match="says label_offset=0. Received: label_offset=1"):
        data_info.read_data_info(directory, label_offset=1)


def test_read_data_info_without_metadata(tmp_path):
    with pytest.raises(ValueError, match="number of classes must be given"):
        data_info.read_data_info(str(tmp_path))
    info = data_info.read_data_info(str(tmp_path), label_offset=1, num_classes=1000)
    assert info.num_classes == 1000 and info.label_offset == 1
    assert info.rgb_mean == schema.IMAGENET_RGB_MEAN and info.eigenvalues == schema.IMAGENET_EIGENVALUES
    assert info.eigenvectors == schema.IMAGENET_EIGENVECTORS
    assert info.counts == {"train": None, "validation": None} and len(info.class_names) == 1000


def test_read_data_info_of_a_set_without_training_images_uses_imagenet_rgb(tmp_path, caplog):
    # build_tfrecords without --train_dir writes "rgb": null.
    write_metadata(str(tmp_path), 4, {"train": 0, "validation": 8})
    path = tmp_path / schema.METADATA_FILE
    meta = json.loads(path.read_text())
    meta["rgb"] = None
    path.write_text(json.dumps(meta))
    with caplog.at_level("WARNING", logger=data_info.__name__):
        info = data_info.read_data_info(str(tmp_path))
    assert info.num_classes == 4 and info.counts == {"train": 0, "validation": 8}
    assert info.rgb_mean == schema.IMAGENET_RGB_MEAN and info.eigenvalues == schema.IMAGENET_EIGENVALUES
    assert info.eigenvectors == schema.IMAGENET_EIGENVECTORS
    assert any("no RGB statistics" in r.getMessage() and "ImageNet" in r.getMessage() for r in caplog.records)


def test_metadata_of_another_format_version_is_refused(tmp_path):
    write_metadata(str(tmp_path), 4, {"train": 8, "validation": 4})
    path = tmp_path / schema.METADATA_FILE
    assert data_info.read_metadata(str(tmp_path))["num_classes"] == 4
    meta = json.loads(path.read_text())
    meta["format_version"] = schema.METADATA_FORMAT_VERSION + 1
    path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="has format_version %d; this code reads version %d" % (
            schema.METADATA_FORMAT_VERSION + 1, schema.METADATA_FORMAT_VERSION)):
        data_info.read_data_info(str(tmp_path))
    assert data_info.read_metadata(str(tmp_path / "elsewhere")) is None
