"""What the trainer knows about a data set, and the trainer's one reader of metadata.json.

The shards are those of `preprocessing.build_tfrecords` (feature keys from
`preprocessing.schema`) or TensorFlow's own ImageNet shards (same keys, 1-based
labels with 0 = background): `read_data_info` takes the class count, label
offset, RGB mean and PCA from `metadata.json`, or from its arguments and the
published ImageNet constants when there is none. `read_metadata` is where the
file is read and its format version checked; nothing else in the trainer opens it.
"""
import dataclasses
import logging
import os

from preprocessing import schema

_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DataInfo:
    """What the trainer needs to know about a data set.

    Attributes:
      num_classes: number of classes the model predicts.
      label_offset: subtracted from stored labels (1 for TensorFlow's ImageNet shards).
      synsets: WordNet IDs in label order (empty when unknown).
      class_names: human-readable names in label order (index strings when unknown).
      rgb_mean: mean R, G, B of the training set, pixels in [0, 1].
      eigenvalues: the 3 eigenvalues of the RGB covariance, descending ([0, 1] scale).
      eigenvectors: 3x3; row i is the unit eigenvector of eigenvalues[i].
      counts: split -> number of examples, or None when unknown.
      image_size: side of the stored square images, or None (original sizes kept or unknown).
    """

    num_classes: int
    label_offset: int
    synsets: tuple
    class_names: tuple
    rgb_mean: tuple
    eigenvalues: tuple
    eigenvectors: tuple
    counts: dict
    image_size: object = None


def require_positive_int(name, value):
    """ValueError naming `name` unless `value` is an int >= 1 (a bool is not)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("expected %s to be a positive int. Received: %s=%r" % (name, name, value))


def read_metadata(data_dir):
    """The parsed metadata.json of `data_dir`, or None when there is none.

    Raises:
      ValueError: the file is of another format version than this code reads.
    """
    return schema.load_metadata(data_dir)


def read_data_info(data_dir, label_offset=None, num_classes=None):
    """Reads what the trainer needs about the shards in `data_dir`.

    Args:
      data_dir: directory of the shards (local or gs://).
      label_offset: without metadata.json, subtracted from stored labels
        (TensorFlow's ImageNet shards: 1). With metadata.json it must be None
        or agree with the file.
      num_classes: required without metadata.json (TensorFlow's ImageNet
        shards: 1000, with label_offset 1); otherwise None or agreeing.

    Returns:
      A DataInfo. Its RGB mean and PCA come from metadata.json, or are the
      published ImageNet constants (preprocessing.schema) when there is no
      metadata.json or when it has none (`"rgb": null`, a set built without
      training images; logged as a warning).

    Raises:
      ValueError: a missing class count, or flags that contradict metadata.json.
    """
    meta = read_metadata(data_dir)
    if meta is None:
        return _info_without_metadata(data_dir, label_offset, num_classes)

    path = os.path.join(data_dir, schema.METADATA_FILE)
    meta_classes = int(meta["num_classes"])
    meta_offset = int(meta.get("label_offset", 0))
    if num_classes is not None and num_classes != meta_classes:
        raise ValueError("%s says num_classes=%d. Received: num_classes=%r" % (path, meta_classes, num_classes))
    if label_offset is not None and label_offset != meta_offset:
        raise ValueError("%s says label_offset=%d. Received: label_offset=%r" % (path, meta_offset, label_offset))
    rgb, factor = _rgb_statistics(meta, path)
    synsets = tuple(meta.get("synsets") or ())
    names = tuple(meta.get("class_names") or ()) or tuple(str(i) for i in range(meta_classes))
    for field, values in (("synsets", synsets), ("class_names", names)):
        if values and len(values) != meta_classes:
            raise ValueError(
                "%s: expected %d %s (num_classes). Received: %d" % (path, meta_classes, field, len(values))
            )
    counts = {split: None for split in schema.SPLITS}
    counts.update({k: (None if v is None else int(v)) for k, v in (meta.get("counts") or {}).items()})
    return DataInfo(
        num_classes=meta_classes,
        label_offset=meta_offset,
        synsets=synsets,
        class_names=names,
        rgb_mean=tuple(float(v) * factor for v in rgb["mean"]),
        # Eigenvalues of the covariance scale with factor^2, eigenvectors not at all.
        eigenvalues=tuple(float(v) * factor * factor for v in rgb["eigenvalues"]),
        eigenvectors=tuple(tuple(float(v) for v in row) for row in rgb["eigenvectors"]),
        counts=counts,
        image_size=meta.get("image_size"),
    )


def _info_without_metadata(data_dir, label_offset, num_classes):
    """TensorFlow's ImageNet shards (or any without metadata.json): the flags and the published constants."""
    if num_classes is None:
        raise ValueError(
            "%s has no %s, so the number of classes must be given (for TensorFlow's ImageNet "
            "shards: num_classes=1000 with label_offset=1). Received: num_classes=None"
            % (data_dir, schema.METADATA_FILE)
        )
    require_positive_int("num_classes", num_classes)
    label_offset = 0 if label_offset is None else label_offset
    if isinstance(label_offset, bool) or not isinstance(label_offset, int) or label_offset < 0:
        raise ValueError("expected label_offset to be an int >= 0. Received: label_offset=%r" % (label_offset,))
    return DataInfo(
        num_classes=num_classes,
        label_offset=label_offset,
        synsets=(),
        class_names=tuple(str(i) for i in range(num_classes)),
        rgb_mean=tuple(schema.IMAGENET_RGB_MEAN),
        eigenvalues=tuple(schema.IMAGENET_EIGENVALUES),
        eigenvectors=tuple(tuple(row) for row in schema.IMAGENET_EIGENVECTORS),
        counts={split: None for split in schema.SPLITS},
        image_size=None,
    )


def _rgb_statistics(meta, path):
    """(the `rgb` dict of metadata.json or the ImageNet constants, factor to the [0, 1] pixel scale)."""
    rgb = meta.get("rgb")
    if rgb is None:
        # A set built without training images (e.g. validation only, to
        # evaluate a model) has no RGB statistics of its own.
        _log.warning(
            "%s has no RGB statistics (\"rgb\": null: built without training images); using the published "
            "ImageNet RGB mean and PCA instead", path,
        )
        rgb = {
            "pixel_scale": "[0, 1]",
            "mean": schema.IMAGENET_RGB_MEAN,
            "eigenvalues": schema.IMAGENET_EIGENVALUES,
            "eigenvectors": schema.IMAGENET_EIGENVECTORS,
        }
    scale = str(rgb.get("pixel_scale", "[0, 1]")).replace(" ", "")
    if scale == "[0,1]":
        return rgb, 1.0
    if scale == "[0,255]":
        return rgb, 1.0 / 255.0
    raise ValueError("%s: expected rgb.pixel_scale '[0, 1]' or '[0, 255]'. Received: %r" % (path, scale))
