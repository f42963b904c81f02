"""trainer.input_pipeline and trainer.visualize on shards the tests write themselves.

Fixture shards are written with the project's schema (make_example,
serialize_example, TFRecordWriter). Every training example has its own label
(num_classes = number of examples), so a label identifies the example: tests
count examples exactly and check which replica or worker saw which. Images are
random pixels encoded without chroma subsampling, so a decoded crop can be
matched exactly against numpy slices of the whole image.
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from preprocessing import schema
from trainer import augment, input_pipeline, visualize

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "imagenet-sample"
TRAIN_SHARDS, PER_SHARD = 4, 6  # 24 training examples, labels 0..23
VAL_COUNTS = (6, 5)  # 11 validation examples over 2 shards
STORED = (72, 80)  # stored image size (h, w); crops are 67
CROP = 67
RGB_MEAN = (0.5, 0.4, 0.3)
EIGENVALUES = (0.2, 0.02, 0.004)
EIGENVECTORS = ((-0.6, -0.6, -0.53), (0.7, 0.0, -0.71), (0.4, -0.8, 0.44))


def _encode(pixels):
    return tf.io.encode_jpeg(pixels, quality=95, chroma_downsampling=False).numpy()


def _write_shards(directory, split, labels_per_shard, size, rng, label_base=0):
    """Writes shards; returns {label: decoded full image} (labels unique per split)."""
    images = {}
    for index, labels in enumerate(labels_per_shard):
        path = os.path.join(directory, schema.shard_name(split, index, len(labels_per_shard)))
        with tf.io.TFRecordWriter(path) as writer:
            for label in labels:
                encoded = _encode(rng.integers(0, 256, size + (3,), dtype=np.uint8))
                example = schema.make_example(
                    encoded, label + label_base, size[0], size[1], filename="img_%s_%d.JPEG" % (split, label)
                )
                writer.write(schema.serialize_example(example))
                images[label] = tf.io.decode_jpeg(encoded, channels=3).numpy()
    return images


def _write_metadata(directory, num_classes, counts, image_size=None):
    meta = {
        "format_version": schema.METADATA_FORMAT_VERSION,
        "num_classes": num_classes,
        "label_offset": 0,
        "synsets": ["n%08d" % i for i in range(num_classes)],
        "class_names": ["class %d" % i for i in range(num_classes)],
        "image_size": image_size,
        "counts": counts,
        "rejected": {k: 0 for k in counts},
        "shards": {},
        "rgb": {
            "pixel_scale": "[0, 1]",
            "mean": list(RGB_MEAN),
            "std": [0.2, 0.2, 0.2],
            "covariance": [[0.0] * 3] * 3,
            "eigenvalues": list(EIGENVALUES),
            "eigenvectors": [list(r) for r in EIGENVECTORS],
            "pixels": 1,
            "sampling": "test",
        },
        "options": {},
    }
    with open(os.path.join(directory, schema.METADATA_FILE), "w") as f:
        json.dump(meta, f)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Our shards with metadata.json: 4 train shards (labels 6i..6i+5), 2 validation shards."""
    directory = str(tmp_path_factory.mktemp("shards"))
    rng = np.random.default_rng(0)
    n = TRAIN_SHARDS * PER_SHARD
    train = _write_shards(
        directory, "train", [range(i * PER_SHARD, (i + 1) * PER_SHARD) for i in range(TRAIN_SHARDS)], STORED, rng
    )
    val = _write_shards(directory, "validation", [range(0, 6), range(6, 11)], STORED, rng)
    # image_size: every stored image is at least 72 on a side, so the pipeline
    # takes its fast path (no per-image upscaling branch).
    _write_metadata(directory, n, {"train": n, "validation": sum(VAL_COUNTS)}, image_size=min(STORED))
    return directory, train, val


def _collect(ds):
    images, labels = [], []
    for x, y in ds:
        images.append(x.numpy())
        labels.append(y.numpy())
    return images, labels


def _center(full):
    y, x = (full.shape[0] - CROP) // 2, (full.shape[1] - CROP) // 2
    return full[y : y + CROP, x : x + CROP].astype(np.float32) / 255.0


# --- DataInfo ---------------------------------------------------------------------------


def test_read_data_info_from_metadata(data):
    directory, _, _ = data
    info = input_pipeline.read_data_info(directory)
    assert info.num_classes == 24 and info.label_offset == 0
    assert info.synsets[3] == "n00000003" and info.class_names[23] == "class 23"
    assert info.rgb_mean == RGB_MEAN and info.eigenvalues == EIGENVALUES and info.eigenvectors == EIGENVECTORS
    assert info.counts == {"train": 24, "validation": 11} and info.image_size == 72
    with pytest.raises(ValueError, match="says num_classes=24. Received: num_classes=1000"):
        input_pipeline.read_data_info(directory, num_classes=1000)
    with pytest.raises(ValueError, match="says label_offset=0. Received: label_offset=1"):
        input_pipeline.read_data_info(directory, label_offset=1)


def test_read_data_info_without_metadata(tmp_path):
    with pytest.raises(ValueError, match="number of classes must be given"):
        input_pipeline.read_data_info(str(tmp_path))
    info = input_pipeline.read_data_info(str(tmp_path), label_offset=1, num_classes=1000)
    assert info.num_classes == 1000 and info.label_offset == 1
    assert info.rgb_mean == schema.IMAGENET_RGB_MEAN and info.eigenvalues == schema.IMAGENET_EIGENVALUES
    assert info.eigenvectors == schema.IMAGENET_EIGENVECTORS
    assert info.counts == {"train": None, "validation": None} and len(info.class_names) == 1000


def test_read_data_info_of_a_set_without_training_images_uses_imagenet_rgb(tmp_path, caplog):
    # build_tfrecords without --train_dir writes "rgb": null.
    _write_metadata(str(tmp_path), 4, {"train": 0, "validation": 8})
    path = tmp_path / schema.METADATA_FILE
    meta = json.loads(path.read_text())
    meta["rgb"] = None
    path.write_text(json.dumps(meta))
    with caplog.at_level("WARNING", logger=input_pipeline.__name__):
        info = input_pipeline.read_data_info(str(tmp_path))
    assert info.num_classes == 4 and info.counts == {"train": 0, "validation": 8}
    assert info.rgb_mean == schema.IMAGENET_RGB_MEAN and info.eigenvalues == schema.IMAGENET_EIGENVALUES
    assert info.eigenvectors == schema.IMAGENET_EIGENVECTORS
    assert any("no RGB statistics" in r.getMessage() and "ImageNet" in r.getMessage() for r in caplog.records)


# --- training and evaluation batches -------------------------------------------------------


def test_training_batches_shape_and_determinism(data):
    directory, _, _ = data
    make = lambda seed: input_pipeline.make_dataset(  # noqa: E731
        directory, "train", 8, training=True, image_size=CROP, seed=seed, deterministic=True
    )
    images, labels = _collect(make(5).take(6))  # 48 examples: two epochs of 24
    assert all(x.shape == (8, CROP, CROP, 3) and x.dtype == np.float32 for x in images)
    assert all(y.shape == (8,) and y.dtype == np.int32 for y in labels)
    # Shuffle before repeat: each epoch holds every example exactly once.
    assert sorted(np.concatenate(labels[:3])) == list(range(24))
    assert sorted(np.concatenate(labels[3:])) == list(range(24))
    again_images, again_labels = _collect(make(5).take(6))
    np.testing.assert_array_equal(np.concatenate(labels), np.concatenate(again_labels))
    np.testing.assert_array_equal(np.stack(images), np.stack(again_images))
    _, other_labels = _collect(make(6).take(3))
    assert not np.array_equal(np.concatenate(labels[:3]), np.concatenate(other_labels))


def test_training_drops_remainder(data):
    directory, _, _ = data
    ds = input_pipeline.make_dataset(directory, "train", 10, training=True, image_size=CROP, repeat=1, seed=1)
    _, labels = _collect(ds)
    assert [len(y) for y in labels] == [10, 10]  # 24 examples, batch 10: static shapes only


@pytest.mark.parametrize(
    "switches", [{}, {"flip": False, "pca_noise": False, "mean_subtract": False}, {"pca_stddev": 0.3}]
)
def test_finish_on_device_gives_the_host_batches(data, switches):
    # The trainer's default path: uint8 crops and each batch's draws from
    # tf.data, finish_crops applied in the training step. Same seed, same batches.
    directory, _, _ = data
    common = dict(training=True, image_size=CROP, seed=3, deterministic=True, **switches)
    host = list(input_pipeline.make_dataset(directory, "train", 8, **common).take(4))
    device = list(input_pipeline.make_dataset(directory, "train", 8, finish_on_device=True, **common).take(4))
    finish = tf.function(input_pipeline.finish_crops, jit_compile=True)  # as inside an XLA-compiled step
    for (x, y), (crops, labels, flips, offsets) in zip(host, device):
        assert crops.dtype == tf.uint8 and crops.shape == (8, CROP, CROP, 3)
        assert flips.dtype == tf.bool and flips.shape == (8,) and offsets.shape == (8, 3)
        for fn in (input_pipeline.finish_crops, finish):
            finished, same_labels = fn(crops, labels, flips, offsets)
            np.testing.assert_array_equal(same_labels.numpy(), y.numpy())
            np.testing.assert_allclose(finished.numpy(), x.numpy(), rtol=0, atol=1e-6)
        # numpy reference: mirror where flipped, scale, add the offset.
        c = crops.numpy()
        expected = np.where(flips.numpy()[:, None, None, None], c[:, :, ::-1], c) / 255.0 + offsets.numpy()[:, None, None]
        np.testing.assert_allclose(x.numpy(), expected, rtol=0, atol=1e-5)
        if not switches.get("flip", True):
            assert not flips.numpy().any()
        if switches:
            assert switches.get("mean_subtract", True) or not offsets.numpy().any()
    all_flips = np.concatenate([d[2].numpy() for d in device])
    assert switches or 0 < all_flips.sum() < len(all_flips)  # some mirrored, some not


def test_finish_on_device_is_a_training_mode(data):
    directory, _, _ = data
    with pytest.raises(ValueError, match="finish_on_device is a training mode"):
        input_pipeline.make_dataset(directory, "validation", 8, training=False, image_size=CROP, finish_on_device=True)


def test_evaluation_sees_every_example_once_with_centre_crops(data):
    directory, _, val = data
    ds = input_pipeline.make_dataset(directory, "validation", 4, training=False, image_size=CROP)
    images, labels = _collect(ds)
    assert [len(y) for y in labels] == [4, 4, 3]  # the remainder is kept
    flat_labels = np.concatenate(labels)
    assert sorted(flat_labels) == list(range(11))
    for image, label in zip(np.concatenate(images), flat_labels):
        expected = _center(val[label]) - np.float32(RGB_MEAN)
        np.testing.assert_allclose(image, expected, atol=1e-6)


def test_ten_crop_evaluation(data):
    directory, _, val = data
    ds = input_pipeline.make_dataset(
        directory, "validation", 5, training=False, image_size=CROP, ten_crop=True, mean_subtract=False
    )
    images, labels = _collect(ds)
    assert [x.shape for x in images] == [(5, 10, CROP, CROP, 3), (5, 10, CROP, CROP, 3), (1, 10, CROP, CROP, 3)]
    for views, label in zip(np.concatenate(images), np.concatenate(labels)):
        expected = input_pipeline.ten_crop_views(val[label], CROP).numpy() / np.float32(255.0)
        np.testing.assert_allclose(views, expected, atol=1e-6)
    with pytest.raises(ValueError, match="ten_crop is an evaluation mode"):
        input_pipeline.make_dataset(directory, "train", 4, training=True, ten_crop=True)


def test_decode_and_center_crop_matches_evaluation(data):
    directory, _, val = data
    shard = os.path.join(directory, schema.shard_name("validation", 0, 2))
    record = next(iter(tf.data.TFRecordDataset(shard)))
    encoded = tf.io.parse_single_example(record, schema.FEATURE_SPEC)[schema.ENCODED]
    got = input_pipeline.decode_and_center_crop(encoded, CROP, RGB_MEAN).numpy()
    assert got.shape == (CROP, CROP, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, _center(val[0]) - np.float32(RGB_MEAN), atol=1e-6)
    # As a serving signature would call it: inside a tf.function on a string tensor.
    serve = tf.function(lambda b: input_pipeline.decode_and_center_crop(b, CROP, None))
    np.testing.assert_allclose(serve(encoded).numpy(), _center(val[0]), atol=1e-6)


# --- augmentation switches (the paper's ablations) ------------------------------------------


def _train_images(directory, **switches):
    ds = input_pipeline.make_dataset(
        directory, "train", 24, training=True, image_size=CROP, seed=3, repeat=1, **switches
    )
    images, labels = _collect(ds)
    return images[0], labels[0]


def test_all_augmentation_off_gives_centre_crops(data):
    directory, train, _ = data
    images, labels = _train_images(
        directory, random_crop=False, flip=False, pca_noise=False, mean_subtract=False
    )
    for image, label in zip(images, labels):
        np.testing.assert_allclose(image, _center(train[label]), atol=1e-6)


def test_random_crops_are_windows_of_the_stored_image(data):
    directory, train, _ = data
    images, labels = _train_images(directory, flip=False, pca_noise=False, mean_subtract=False)
    offsets = set()
    for image, label in zip(images, labels):
        full = train[label].astype(np.float32) / 255.0
        matches = [
            (y, x)
            for y in range(STORED[0] - CROP + 1)
            for x in range(STORED[1] - CROP + 1)
            if np.allclose(full[y : y + CROP, x : x + CROP], image, atol=1e-6)
        ]
        assert len(matches) == 1
        offsets.add(matches[0])
    assert len(offsets) >= 8  # 24 crops over 6x14 positions: they really move


def test_flips_mirror_about_half(data):
    directory, train, _ = data
    images, labels = _train_images(directory, random_crop=False, pca_noise=False, mean_subtract=False)
    flipped = 0
    for image, label in zip(images, labels):
        center = _center(train[label])
        if np.allclose(image, center[:, ::-1], atol=1e-6):
            flipped += 1
        else:
            np.testing.assert_allclose(image, center, atol=1e-6)
    assert 4 <= flipped <= 20


def test_pca_noise_and_mean_are_one_rgb_offset_per_image(data):
    directory, train, _ = data
    images, labels = _train_images(directory, random_crop=False, flip=False)
    offsets = []
    for image, label in zip(images, labels):
        delta = image - _center(train[label])
        np.testing.assert_allclose(delta, np.broadcast_to(delta[0, 0], delta.shape), atol=1e-5)
        offsets.append(delta[0, 0] + np.float32(RGB_MEAN))  # the PCA part
    offsets = np.array(offsets)
    assert np.all(offsets.std(axis=0) > 0)  # a different draw for every image
    # Every offset lies in the span of the eigenvectors scaled by the eigenvalues.
    coeffs = offsets @ np.linalg.inv(np.array(EIGENVALUES)[:, None] * np.array(EIGENVECTORS))
    assert np.all(np.abs(coeffs) < 0.6)  # a_i ~ N(0, 0.1): 6 sigma
    only_mean, mean_labels = _train_images(directory, random_crop=False, flip=False, pca_noise=False)
    for image, label in zip(only_mean, mean_labels):
        np.testing.assert_allclose(image, _center(train[label]) - np.float32(RGB_MEAN), atol=1e-6)


def test_small_stored_images_are_resized_up(tmp_path):
    rng = np.random.default_rng(1)
    train = _write_shards(str(tmp_path), "train", [range(4)], (40, 50), rng)
    info = input_pipeline.read_data_info(str(tmp_path), num_classes=4)
    ds = input_pipeline.make_dataset(
        str(tmp_path), "train", 4, training=False, image_size=CROP, info=info, mean_subtract=False
    )
    images, labels = _collect(ds)
    for image, label in zip(images[0], labels[0]):
        whole = augment.resize_to_at_least(train[label], CROP).numpy()
        assert whole.shape == (67, 84, 3)
        np.testing.assert_allclose(image, whole[:, 8:75] / np.float32(255.0), atol=1e-6)
    train_ds = input_pipeline.make_dataset(str(tmp_path), "train", 2, training=True, image_size=CROP, info=info)
    assert next(iter(train_ds))[0].shape == (2, CROP, CROP, 3)


# --- TensorFlow's own ImageNet shards -------------------------------------------------------


def test_tensorflow_imagenet_shards_with_label_offset(tmp_path):
    rng = np.random.default_rng(2)
    # Stored labels 1..6 (0 would be background); no metadata.json.
    val = _write_shards(str(tmp_path), "validation", [range(6)], STORED, rng, label_base=1)
    info = input_pipeline.read_data_info(str(tmp_path), label_offset=1, num_classes=6)
    ds = input_pipeline.make_dataset(str(tmp_path), "validation", 6, training=False, image_size=CROP, info=info)
    images, labels = _collect(ds)
    assert sorted(labels[0]) == list(range(6))
    # Stored label k + 1 becomes k; without metadata the published ImageNet mean is subtracted.
    for image, label in zip(images[0], labels[0]):
        np.testing.assert_allclose(image, _center(val[label]) - np.float32(schema.IMAGENET_RGB_MEAN), atol=1e-6)
    # Forgetting the offset puts label 6 outside 6 classes: an error naming the record.
    wrong = input_pipeline.read_data_info(str(tmp_path), num_classes=6)
    message = r"Label 6 \(stored 6 minus label_offset 0\) is outside \[0, 6\).*validation-00000-of-00001"
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        _collect(
            input_pipeline.make_dataset(str(tmp_path), "validation", 6, training=False, image_size=CROP, info=wrong)
        )


# --- corrupt input --------------------------------------------------------------------------


def _record_ends(path):
    """Byte offsets where each record of a TFRecord file ends (walks the framing)."""
    data = Path(path).read_bytes()
    ends, pos = [], 0
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 8], "little")
        pos += 16 + length
        ends.append(pos)
    return ends


def _corrupt_copy(data, tmp_path, how):
    directory, _, _ = data
    target = tmp_path / "shards"
    target.mkdir()
    for name in os.listdir(directory):
        (target / name).write_bytes(Path(directory, name).read_bytes())
    victim = target / schema.shard_name("validation", 1, 2)
    raw = bytearray(victim.read_bytes())
    ends = _record_ends(victim)
    if how == "truncate":  # cut in the middle of the 3rd record: 2 good records remain
        raw = raw[: ends[1] + 40]
    elif how == "crc":  # flip a byte inside the 4th record's data: its CRC fails
        raw[ends[2] + 100] ^= 0xFF
    victim.write_bytes(bytes(raw))
    return str(target), str(victim), ends


@pytest.mark.parametrize("how,good", [("truncate", 2), ("crc", 3)])
def test_corrupt_shard_is_an_error_naming_the_file(data, tmp_path, how, good):
    directory, victim, ends = _corrupt_copy(data, tmp_path, how)
    ds = input_pipeline.make_dataset(directory, "validation", 4, training=False, image_size=CROP)
    pattern = "Corrupt or truncated TFRecord shard .*%s.*stopped at byte %d of .* after %d good records" % (
        os.path.basename(victim), ends[good - 1], good)
    with pytest.raises(tf.errors.InvalidArgumentError, match=pattern):
        _collect(ds)


@pytest.mark.parametrize("how,good", [("truncate", 2), ("crc", 3)])
def test_corrupt_shard_skip_is_counted_and_logged(data, tmp_path, caplog, how, good):
    directory, victim, _ = _corrupt_copy(data, tmp_path, how)
    skipped = input_pipeline.SkippedRecords()
    ds = input_pipeline.make_dataset(
        directory, "validation", 4, training=False, image_size=CROP, skip_corrupt=skipped
    )
    _, labels = _collect(ds)
    # Shard 0 holds labels 0..5 whole; shard 1 (labels 6..10) only its first good records.
    assert sorted(np.concatenate(labels)) == list(range(6 + good))
    assert (skipped.shards, skipped.records) == (1, 0)
    assert os.path.basename(victim) in skipped.events[0]
    assert any(os.path.basename(victim) in r.getMessage() for r in caplog.records)


def _write_with_bad_jpeg(directory, damage=lambda e: e[: len(e) // 2]):
    rng = np.random.default_rng(3)
    path = os.path.join(directory, schema.shard_name("validation", 0, 1))
    with tf.io.TFRecordWriter(path) as writer:
        for label in range(5):
            encoded = _encode(rng.integers(0, 256, STORED + (3,), dtype=np.uint8))
            if label == 2:
                encoded = damage(encoded)  # default: a truncated JPEG inside an intact record
            example = schema.make_example(encoded, label, STORED[0], STORED[1], filename="photo_%d.JPEG" % label)
            writer.write(schema.serialize_example(example))
    return path


def test_corrupt_jpeg_is_an_error_or_a_counted_skip(tmp_path):
    _write_with_bad_jpeg(str(tmp_path))
    info = input_pipeline.read_data_info(str(tmp_path), num_classes=5)
    make = lambda skip: input_pipeline.make_dataset(  # noqa: E731
        str(tmp_path), "validation", 2, training=False, image_size=CROP, info=info, skip_corrupt=skip
    )
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"Corrupt JPEG \(truncated or not a JPEG\) in record 2 \(photo_2.JPEG\) of .*validation-00000-of-00001",
    ):
        _collect(make(False))
    skipped = input_pipeline.SkippedRecords()
    _, labels = _collect(make(skipped))
    assert sorted(np.concatenate(labels)) == [0, 1, 3, 4]
    assert (skipped.shards, skipped.records) == (0, 1) and "photo_2.JPEG" in skipped.events[0]


def test_jpeg_with_damaged_header_fails_or_is_skipped(tmp_path):
    # Starts and ends like a JPEG, so it passes the completeness check, but its
    # header is zeroed: decoding fails. Without skipping that is TensorFlow's own
    # error (it names no file); with skipping, tf.data drops and logs it, uncounted.
    _write_with_bad_jpeg(str(tmp_path), damage=lambda e: e[:3] + bytes(200) + e[203:])
    info = input_pipeline.read_data_info(str(tmp_path), num_classes=5)
    make = lambda skip: input_pipeline.make_dataset(  # noqa: E731
        str(tmp_path), "validation", 2, training=False, image_size=CROP, info=info, skip_corrupt=skip
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match="Invalid JPEG data"):
        _collect(make(False))
    skipped = input_pipeline.SkippedRecords()
    _, labels = _collect(make(skipped))
    assert sorted(np.concatenate(labels)) == [0, 1, 3, 4]
    assert (skipped.shards, skipped.records) == (0, 0)


# --- distribution ---------------------------------------------------------------------------


def test_multi_worker_input_sharding_reads_disjoint_files(data):
    directory, _, _ = data
    seen = []
    for worker in range(2):
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=worker, num_replicas_in_sync=2
        )
        files = input_pipeline.shard_files(input_pipeline.list_shards(directory, "train"), context)
        assert [os.path.basename(f) for f in files] == [
            schema.shard_name("train", i, TRAIN_SHARDS) for i in range(worker, TRAIN_SHARDS, 2)
        ]
        ds = input_pipeline.make_dataset(
            directory, "train", 8, training=True, image_size=CROP, input_context=context, repeat=1, seed=0
        )
        images, labels = _collect(ds)
        assert all(len(y) == 4 for y in labels)  # global batch 8 over 2 replicas
        labels = set(np.concatenate(labels).tolist())
        # Worker w reads shards w and w + 2, i.e. labels 6i..6i+5 of those shards only.
        assert labels == {l for i in range(worker, TRAIN_SHARDS, 2) for l in range(i * 6, i * 6 + 6)}
        seen.append(labels)
    assert not seen[0] & seen[1] and len(seen[0] | seen[1]) == 24


def test_more_pipelines_than_files_is_an_error(data):
    directory, _, _ = data
    context = tf.distribute.InputContext(num_input_pipelines=8, input_pipeline_id=0, num_replicas_in_sync=8)
    with pytest.raises(ValueError, match="expected at least 8 shards for 8 input pipelines. Received: 4 shards"):
        input_pipeline.make_dataset(directory, "train", 8, training=True, input_context=context)


_MIRRORED = """
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from trainer import input_pipeline
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
make = lambda ctx: input_pipeline.make_dataset(
    sys.argv[1], "train", 8, training=True, image_size=67, input_context=ctx, seed=1)
ds = strategy.distribute_datasets_from_function(make)
steps = []
for step, (images, labels) in zip(range(3), ds):
    steps.append({"image_shapes": [list(x.shape) for x in strategy.experimental_local_results(images)],
                  "labels": [y.numpy().tolist() for y in strategy.experimental_local_results(labels)],
                  "devices": [y.device for y in strategy.experimental_local_results(labels)]})
print(json.dumps({"replicas": strategy.num_replicas_in_sync, "steps": steps}))
"""


def test_mirrored_strategy_replicas_share_the_global_batch(data):
    directory, _, _ = data
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_MIRRORED), directory],
        capture_output=True, text=True, cwd=str(REPO), env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2
    for step in out["steps"]:
        assert step["image_shapes"] == [[4, 67, 67, 3], [4, 67, 67, 3]]  # 8 global = 4 + 4
        assert "CPU:0" in step["devices"][0] and "CPU:1" in step["devices"][1]
        assert not set(step["labels"][0]) & set(step["labels"][1])  # different examples
    # The first 3 steps take 24 examples: exactly one epoch, each example once.
    assert sorted(l for s in out["steps"] for r in s["labels"] for l in r) == list(range(24))


# --- visualisation --------------------------------------------------------------------------


def test_visualize_writes_png_and_tensorboard_image(data, tmp_path, capsys):
    directory, _, _ = data
    png, logdir = tmp_path / "grid.png", tmp_path / "logs"
    code = visualize.main(
        ["--data_dir", directory, "--output_png", str(png), "--logdir", str(logdir),
         "--num_images", "6", "--image_size", "67"]
    )
    assert code == 0
    assert "Wrote a grid of 6 augmented 67x67 examples" in capsys.readouterr().out
    grid = tf.io.decode_png(png.read_bytes()).numpy()
    # 3 columns x 2 rows of 67 px with 2 px borders.
    assert grid.shape == (2 * 69 + 2, 3 * 69 + 2, 3)
    assert grid[0].min() == 255 and grid[2:69, 2:69].std() > 10  # white border, a real image inside
    events = list(logdir.glob("events.out.tfevents.*"))
    assert len(events) == 1
    tags = []
    for record in tf.data.TFRecordDataset(str(events[0])):
        event = tf.compat.v1.Event.FromString(record.numpy())
        for value in event.summary.value:
            tags.append(value.tag)
            decoded = tf.io.decode_png(tf.make_ndarray(value.tensor)[2]).numpy()
            np.testing.assert_array_equal(decoded, grid)
    assert tags == ["augmented_examples"]


def test_visualize_same_seed_gives_the_same_grid(data):
    directory, _, _ = data
    # A batch of every training example, from all 4 shards read in parallel:
    # without deterministic=True the interleave hands them over in the order
    # they finish, so the grid differs from run to run.
    grids = [visualize.augmented_grid(directory, num_images=24, image_size=CROP, seed=7) for _ in range(4)]
    for grid, labels in grids[1:]:
        np.testing.assert_array_equal(labels, grids[0][1])
        np.testing.assert_array_equal(grid, grids[0][0])
    other, _ = visualize.augmented_grid(directory, num_images=24, image_size=CROP, seed=8)
    assert not np.array_equal(other, grids[0][0])


def test_visualize_user_error_exits_2(tmp_path, capsys):
    code = visualize.main(
        ["--data_dir", str(tmp_path), "--output_png", str(tmp_path / "g.png"), "--num_classes", "3"]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No TFRecord shards match" in err and "Traceback" not in err


def test_make_grid_undoes_mean():
    images = np.zeros((2, 3, 4, 3), np.float32) - np.float32(RGB_MEAN)
    grid = visualize.make_grid(images, RGB_MEAN, columns=2, border=1)
    assert grid.shape == (5, 11, 3)
    np.testing.assert_array_equal(grid[1:4, 1:5], 0)
    np.testing.assert_array_equal(grid[0], 255)


@pytest.mark.skipif(not SAMPLE.exists(), reason="shared ImageNet sample not present")
def test_real_imagenet_jpegs_decode_and_pass_the_completeness_check():
    files = sorted((SAMPLE / "val").glob("*.JPEG"))[:20]
    for f in files:
        encoded = f.read_bytes()
        assert bool(augment.jpeg_is_complete(encoded)), f.name
        assert augment.decode_center_crop(encoded, CROP).shape == (CROP, CROP, 3)
