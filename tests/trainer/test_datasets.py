"""trainer.datasets.make_dataset on shards the tests write themselves.

Fixture shards come from tests.helpers.trainer_data.write_labelled_shards (the
`data` fixture): every training example has its own label, so a label
identifies the example, and random pixels encoded without chroma subsampling
let a decoded crop be matched exactly against numpy slices of the whole image.
"""
import functools
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from preprocessing import schema
from tests.helpers.trainer_data import (
    CROP,
    EIGENVALUES,
    EIGENVECTORS,
    REPO,
    RGB_MEAN,
    STORED,
    center,
    collect,
    write_dataset,
    write_shards,
)
from tests.helpers.geometry_reference import assert_close, slow_ten_views, slow_view
from trainer import augment, data_info, datasets, geometry


def test_written_dataset_is_read_by_the_input_pipeline(tmp_path):
    """The helper's shards and metadata.json parse through the real input pipeline with exact counts."""
    write_dataset(tmp_path, num_classes=3, train_per_class=4, val_per_class=3, size=72)
    info = data_info.read_data_info(str(tmp_path))
    assert info.num_classes == 3 and info.counts == {"train": 12, "validation": 9}
    labels = []
    for images, lab in datasets.make_dataset(str(tmp_path), "validation", 4, training=False, image_size=67, info=info):
        assert images.shape[1:] == (67, 67, 3)
        labels.extend(lab.numpy().tolist())
    assert sorted(labels) == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_training_batches_shape_and_determinism(data):
    directory, _, _ = data
    make = lambda seed: datasets.make_dataset(  # noqa: E731
        directory, "train", 8, training=True, image_size=CROP, seed=seed, deterministic=True
    )
    images, labels = collect(make(5).take(6))  # 48 examples: two epochs of 24
    assert all(x.shape == (8, CROP, CROP, 3) and x.dtype == np.float32 for x in images)
    assert all(y.shape == (8,) and y.dtype == np.int32 for y in labels)
    # Shuffle before repeat: each epoch holds every example exactly once.
    assert sorted(np.concatenate(labels[:3])) == list(range(24))
    assert sorted(np.concatenate(labels[3:])) == list(range(24))
    again_images, again_labels = collect(make(5).take(6))
    np.testing.assert_array_equal(np.concatenate(labels), np.concatenate(again_labels))
    np.testing.assert_array_equal(np.stack(images), np.stack(again_images))
    _, other_labels = collect(make(6).take(3))
    assert not np.array_equal(np.concatenate(labels[:3]), np.concatenate(other_labels))


def test_training_drops_remainder(data):
    directory, _, _ = data
    ds = datasets.make_dataset(directory, "train", 10, training=True, image_size=CROP, repeat=1, seed=1)
    _, labels = collect(ds)
    assert [len(y) for y in labels] == [10, 10]  # 24 examples, batch 10: static shapes only


@pytest.mark.parametrize(
    "switches", [{}, {"flip": False, "pca_noise": False, "mean_subtract": False}, {"pca_stddev": 0.3}]
)
def test_finish_on_device_gives_the_host_batches(data, switches):
    # The trainer's default path: uint8 crops and each batch's draws from
    # tf.data, finish_crops applied in the training step. Same seed, same batches.
    directory, _, _ = data
    common = dict(training=True, image_size=CROP, seed=3, deterministic=True, **switches)
    host = list(datasets.make_dataset(directory, "train", 8, **common).take(4))
    device = list(datasets.make_dataset(directory, "train", 8, finish_on_device=True, **common).take(4))
    finish = tf.function(datasets.finish_crops, jit_compile=True)  # as inside an XLA-compiled step
    for (x, y), (crops, labels, flips, offsets) in zip(host, device):
        assert crops.dtype == tf.uint8 and crops.shape == (8, CROP, CROP, 3)
        assert flips.dtype == tf.bool and flips.shape == (8,) and offsets.shape == (8, 3)
        for fn in (datasets.finish_crops, finish):
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


@pytest.mark.parametrize("ten_crop", [False, True])
def test_evaluation_finished_on_device_gives_the_host_batches(data, ten_crop):
    """Evaluation's uint8 crops with their draws (no flips, minus the mean) finish into the float batches."""
    directory, _, _ = data
    common = dict(training=False, image_size=CROP, ten_crop=ten_crop, deterministic=True)
    host = list(datasets.make_dataset(directory, "validation", 4, **common))
    device = list(datasets.make_dataset(directory, "validation", 4, finish_on_device=True, **common))
    assert len(host) == len(device) == 3  # 4 + 4 + 3 of the 11 validation examples
    views = (10,) if ten_crop else ()
    for (images, labels), (crops, crop_labels, flips, offsets) in zip(host, device):
        n = labels.shape[0]
        assert crops.dtype == tf.uint8 and crops.shape == (n, *views, CROP, CROP, 3)
        assert flips.shape == (n, *views) and not flips.numpy().any()
        np.testing.assert_allclose(offsets.numpy(), np.broadcast_to(-np.float32(RGB_MEAN), (n, *views, 3)), rtol=1e-6)
        np.testing.assert_array_equal(crop_labels.numpy(), labels.numpy())
        finished, _ = datasets.finish_crops(crops, crop_labels, flips, offsets)
        np.testing.assert_allclose(finished.numpy(), images.numpy(), atol=1e-6)


def test_evaluation_sees_every_example_once_with_centre_crops(data):
    directory, _, val = data
    ds = datasets.make_dataset(directory, "validation", 4, training=False, image_size=CROP)
    images, labels = collect(ds)
    assert [len(y) for y in labels] == [4, 4, 3]  # the remainder is kept
    flat_labels = np.concatenate(labels)
    assert sorted(flat_labels) == list(range(11))
    for image, label in zip(np.concatenate(images), flat_labels):
        expected = center(val[label]) - np.float32(RGB_MEAN)
        np.testing.assert_allclose(image, expected, atol=1e-6)


def test_ten_crop_evaluation(data):
    directory, _, val = data
    ds = datasets.make_dataset(
        directory, "validation", 5, training=False, image_size=CROP, ten_crop=True, mean_subtract=False
    )
    images, labels = collect(ds)
    assert [x.shape for x in images] == [(5, 10, CROP, CROP, 3), (5, 10, CROP, CROP, 3), (1, 10, CROP, CROP, 3)]
    for views, label in zip(np.concatenate(images), np.concatenate(labels)):
        expected = augment.ten_crop_views(val[label], CROP).numpy() / np.float32(255.0)
        np.testing.assert_allclose(views, expected, atol=1e-6)
    with pytest.raises(ValueError, match="ten_crop is an evaluation mode"):
        datasets.make_dataset(directory, "train", 4, training=True, ten_crop=True)


def test_decode_and_center_crop_matches_evaluation(data):
    directory, _, val = data
    shard = os.path.join(directory, schema.shard_name("validation", 0, 2))
    record = next(iter(tf.data.TFRecordDataset(shard)))
    encoded = tf.io.parse_single_example(record, schema.FEATURE_SPEC)[schema.ENCODED]
    got = datasets.decode_and_center_crop(encoded, CROP, RGB_MEAN, stored_size=min(STORED)).numpy()
    assert got.shape == (CROP, CROP, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, center(val[0]) - np.float32(RGB_MEAN), atol=1e-6)
    # As a serving signature would call it: inside a tf.function on a string tensor.
    serve = tf.function(lambda b: datasets.decode_and_center_crop(b, CROP, None, stored_size=min(STORED)))
    np.testing.assert_allclose(serve(encoded).numpy(), center(val[0]), atol=1e-6)


def _train_images(directory, **switches):
    ds = datasets.make_dataset(
        directory, "train", 24, training=True, image_size=CROP, seed=3, repeat=1, **switches
    )
    images, labels = collect(ds)
    return images[0], labels[0]


def test_all_augmentation_off_gives_centre_crops(data):
    directory, train, _ = data
    images, labels = _train_images(
        directory, random_crop=False, flip=False, pca_noise=False, mean_subtract=False
    )
    for image, label in zip(images, labels):
        np.testing.assert_allclose(image, center(train[label]), atol=1e-6)


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
        centre = center(train[label])
        if np.allclose(image, centre[:, ::-1], atol=1e-6):
            flipped += 1
        else:
            np.testing.assert_allclose(image, centre, atol=1e-6)
    assert 4 <= flipped <= 20


def test_pca_noise_and_mean_are_one_rgb_offset_per_image(data):
    directory, train, _ = data
    images, labels = _train_images(directory, random_crop=False, flip=False)
    offsets = []
    for image, label in zip(images, labels):
        delta = image - center(train[label])
        np.testing.assert_allclose(delta, np.broadcast_to(delta[0, 0], delta.shape), atol=1e-5)
        offsets.append(delta[0, 0] + np.float32(RGB_MEAN))  # the PCA part
    offsets = np.array(offsets)
    assert np.all(offsets.std(axis=0) > 0)  # a different draw for every image
    # Every offset lies in the span of the eigenvectors scaled by the eigenvalues.
    coeffs = offsets @ np.linalg.inv(np.array(EIGENVALUES)[:, None] * np.array(EIGENVECTORS))
    assert np.all(np.abs(coeffs) < 0.6)  # a_i ~ N(0, 0.1): 6 sigma
    only_mean, mean_labels = _train_images(directory, random_crop=False, flip=False, pca_noise=False)
    for image, label in zip(only_mean, mean_labels):
        np.testing.assert_allclose(image, center(train[label]) - np.float32(RGB_MEAN), atol=1e-6)


def test_small_stored_images_are_views_of_the_papers_rescaled_square(tmp_path):
    """Images smaller than the crop's reference square (no stored size known) are
    sampled as if rescaled to it: the same centre view the slow way gives."""
    rng = np.random.default_rng(1)
    train = write_shards(str(tmp_path), "train", [range(4)], (40, 50), rng)
    info = data_info.read_data_info(str(tmp_path), num_classes=4)
    ds = datasets.make_dataset(
        str(tmp_path), "train", 4, training=False, image_size=CROP, info=info, mean_subtract=False
    )
    images, labels = collect(ds)
    reference = geometry.reference_size(CROP)
    for image, label in zip(images[0], labels[0]):
        offset = geometry.centre_offset(reference, CROP)
        assert_close(np.round(image * 255.0), slow_view(train[label], CROP, reference, *offset))
    train_ds = datasets.make_dataset(str(tmp_path), "train", 2, training=True, image_size=CROP, info=info)
    assert next(iter(train_ds))[0].shape == (2, CROP, CROP, 3)


def test_original_size_images_get_the_papers_geometry_in_every_mode(tmp_path):
    """TensorFlow's own shards keep each image at its original size (no metadata.json):
    training crops, centre crops and the 10 views are all views of the image rescaled to
    the reference square, equal to decode-rescale-crop of the whole image."""
    rng = np.random.default_rng(4)
    val = write_shards(str(tmp_path), "validation", [range(3)], (120, 90), rng)
    info = data_info.read_data_info(str(tmp_path), num_classes=3)
    reference = geometry.reference_size(CROP)
    centre = geometry.centre_offset(reference, CROP)
    make = functools.partial(datasets.make_dataset, str(tmp_path), "validation", 3, image_size=CROP, info=info,
                             mean_subtract=False)
    images, labels = collect(make(training=False))
    for image, label in zip(images[0], labels[0]):
        assert_close(np.round(image * 255.0), slow_view(val[label], CROP, reference, *centre))
    views, labels = collect(make(training=False, ten_crop=True))
    for image, label in zip(views[0], labels[0]):
        assert_close(np.round(image * 255.0), slow_ten_views(val[label], CROP, reference))
    # Random crops (no flips, no colour noise): each is the slow way's view at some offset.
    crops, labels = collect(make(training=True, flip=False, pca_noise=False, seed=5, repeat=1))
    span = range(reference - CROP + 1)
    for image, label in zip(crops[0], labels[0]):
        pixels = np.round(image * 255.0)
        errors = [np.abs(pixels - slow_view(val[label], CROP, reference, y, x)).max() for y in span for x in span]
        assert min(errors) <= 1.0, min(errors)


def test_tensorflow_imagenet_shards_with_label_offset(tmp_path):
    rng = np.random.default_rng(2)
    # Stored labels 1..6 (0 would be background); no metadata.json.
    val = write_shards(str(tmp_path), "validation", [range(6)], STORED, rng, label_base=1)
    info = data_info.read_data_info(str(tmp_path), label_offset=1, num_classes=6)
    ds = datasets.make_dataset(str(tmp_path), "validation", 6, training=False, image_size=CROP, info=info)
    images, labels = collect(ds)
    assert sorted(labels[0]) == list(range(6))
    # Stored label k + 1 becomes k; without metadata the published ImageNet mean is subtracted.
    for image, label in zip(images[0], labels[0]):
        reference = geometry.reference_size(CROP)
        expected = slow_view(val[label], CROP, reference, *geometry.centre_offset(reference, CROP))
        assert_close(np.round((image + np.float32(schema.IMAGENET_RGB_MEAN)) * 255.0), expected)
    # Forgetting the offset puts label 6 outside 6 classes: an error naming the record.
    wrong = data_info.read_data_info(str(tmp_path), num_classes=6)
    message = r"Label 6 \(stored 6 minus label_offset 0\) is outside \[0, 6\).*validation-00000-of-00001"
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        collect(
            datasets.make_dataset(str(tmp_path), "validation", 6, training=False, image_size=CROP, info=wrong)
        )


_MIRRORED = """
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from trainer import datasets
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
make = lambda ctx: datasets.make_dataset(
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
    assert sorted(label for s in out["steps"] for r in s["labels"] for label in r) == list(range(24))
