"""trainer.augment: every transform eagerly and inside Dataset.map, against numpy.

Fixture JPEGs are encoded without chroma subsampling, so decoding a crop
window gives exactly the pixels of a full decode sliced with numpy (with 4:2:0
chroma the fused decode differs from the sliced one along the window's edges;
`test_fused_crop_with_chroma_subsampling` pins how much).
"""
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from trainer import augment

# A few real ImageNet validation JPEGs, when the machine has the sample beside the repository.
SAMPLE = Path(__file__).resolve().parents[3] / "shared" / "data" / "imagenet-sample"
RNG = np.random.default_rng(1234)
SEED = tf.constant([7, 11], tf.int64)
EIGENVALUES = (0.2175, 0.0188, 0.0045)
EIGENVECTORS = np.array(
    [[-0.5675, -0.5808, -0.5836], [0.7192, -0.0045, -0.6948], [0.4009, -0.8140, 0.4203]], np.float64
)


def _jpeg(height, width, chroma_downsampling=False):
    pixels = RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)
    encoded = tf.io.encode_jpeg(pixels, quality=95, chroma_downsampling=chroma_downsampling).numpy()
    return encoded, tf.io.decode_jpeg(encoded, channels=3).numpy()


def _in_map(fn, *args):
    """Runs fn(*args) as a Dataset.map function (graph mode) and returns its numpy value."""
    ds = tf.data.Dataset.from_tensors(tuple(args)).map(fn)
    return tf.nest.map_structure(lambda t: t.numpy(), next(iter(ds)))


def _find_window(full, crop):
    """All (y, x) where crop equals full[y:y+h, x:x+w] exactly."""
    h, w = crop.shape[:2]
    return [
        (y, x)
        for y in range(full.shape[0] - h + 1)
        for x in range(full.shape[1] - w + 1)
        if np.array_equal(full[y : y + h, x : x + w], crop)
    ]


def test_jpeg_is_complete_eager_and_in_map():
    encoded, _ = _jpeg(40, 48)
    cases = {
        encoded: True,
        encoded + b"camera trailer" * 10: True,  # bytes after EOI are tolerated
        encoded[:-2]: False,  # EOI missing
        encoded[: len(encoded) // 2]: False,  # truncated: TF would decode it with grey rows
        b"\x89PNG\r\n\x1a\n" + encoded[8:]: False,  # not a JPEG
        b"": False,
        b"\xff": False,
    }
    for data, expected in cases.items():
        assert bool(augment.jpeg_is_complete(data)) is expected, data[:12]
        assert bool(_in_map(augment.jpeg_is_complete, tf.constant(data))) is expected


@pytest.mark.parametrize("mode", ["eager", "map"])
def test_random_crop_is_an_in_bounds_window_of_the_image(mode):
    encoded, full = _jpeg(72, 80)
    seeds = tf.stack([tf.fill([12], tf.constant(3, tf.int64)), tf.range(12, dtype=tf.int64)], axis=1)
    if mode == "eager":
        crops = [augment.decode_random_crop(encoded, 67, seed).numpy() for seed in seeds]
    else:
        ds = tf.data.Dataset.from_tensor_slices(seeds).map(lambda s: augment.decode_random_crop(encoded, 67, s))
        crops = [c.numpy() for c in ds]
    windows = set()
    for crop in crops:
        assert crop.shape == (67, 67, 3) and crop.dtype == np.uint8
        found = _find_window(full, crop)
        assert len(found) == 1, found  # exactly one in-bounds window of the full decode
        windows.add(found[0])
    assert len(windows) >= 6  # 6x14 possible windows, 12 draws: the position really varies
    # Without the upscaling branch (images known to be large enough): same crops.
    fast = augment.decode_random_crop(encoded, 67, seeds[0], upscale=False).numpy()
    np.testing.assert_array_equal(fast, crops[0])
    again = augment.decode_random_crop(encoded, 67, tf.constant([3, 0], tf.int64)).numpy()
    first = augment.decode_random_crop(encoded, 67, tf.constant([3, 0], tf.int64)).numpy()
    np.testing.assert_array_equal(again, first)  # stateless: same seed, same crop


def test_random_crop_window_covers_every_offset():
    seen_y, seen_x = set(), set()
    for i in range(400):
        y, x, h, w = augment.random_crop_window(70, 69, 67, tf.constant([5, i], tf.int64)).numpy()
        assert (h, w) == (67, 67) and 0 <= y <= 3 and 0 <= x <= 2
        seen_y.add(int(y))
        seen_x.add(int(x))
    assert seen_y == {0, 1, 2, 3} and seen_x == {0, 1, 2}


@pytest.mark.parametrize("mode", ["eager", "map"])
def test_center_crop_matches_numpy(mode):
    encoded, full = _jpeg(72, 81)
    if mode == "eager":
        crop = augment.decode_center_crop(encoded, 67).numpy()
        np.testing.assert_array_equal(augment.decode_center_crop(encoded, 67, upscale=False).numpy(), crop)
    else:
        crop = _in_map(lambda e: augment.decode_center_crop(e, 67), tf.constant(encoded))
    np.testing.assert_array_equal(crop, full[2:69, 7:74])


def test_fused_crop_with_chroma_subsampling():
    # Typical JPEGs (4:2:0) decode slightly differently along the crop's edges
    # when only the window is decoded; the interior is identical.
    encoded, full = _jpeg(72, 80, chroma_downsampling=True)
    crop = augment.decode_center_crop(encoded, 64).numpy().astype(int)
    ref = full[4:68, 8:72].astype(int)
    np.testing.assert_array_equal(crop[2:-2, 2:-2], ref[2:-2, 2:-2])
    assert (crop != ref).mean() < 0.05


@pytest.mark.parametrize("mode", ["eager", "map"])
def test_small_stored_image_is_resized_up(mode):
    encoded, full = _jpeg(40, 50)
    if mode == "eager":
        center = augment.decode_center_crop(encoded, 67).numpy()
        rand = augment.decode_random_crop(encoded, 67, SEED).numpy()
        whole = augment.decode_full(encoded, 67).numpy()
    else:
        center = _in_map(lambda e: augment.decode_center_crop(e, 67), tf.constant(encoded))
        rand = _in_map(lambda e: augment.decode_random_crop(e, 67, SEED), tf.constant(encoded))
        whole = _in_map(lambda e: augment.decode_full(e, 67), tf.constant(encoded))
    # Shorter side 40 -> 67, so 50 -> ceil(50 * 67 / 40) = 84, aspect kept.
    assert whole.shape == (67, 84, 3) and whole.dtype == np.uint8
    ref = tf.image.resize(full, [67, 84]).numpy()
    np.testing.assert_array_equal(whole, np.clip(np.round(ref), 0, 255).astype(np.uint8))
    assert center.shape == rand.shape == (67, 67, 3)
    np.testing.assert_array_equal(center, whole[:, 8:75])
    assert len(_find_window(whole, rand)) == 1


def test_resize_leaves_large_images_alone():
    image = RNG.integers(0, 256, (70, 90, 3), dtype=np.uint8)
    np.testing.assert_array_equal(augment.resize_to_at_least(image, 67).numpy(), image)


@pytest.mark.parametrize("mode", ["eager", "map"])
def test_ten_crop_views_geometry(mode):
    image = RNG.integers(0, 256, (72, 80, 3), dtype=np.uint8)
    s = 67
    if mode == "eager":
        views = augment.ten_crop_views(image, s).numpy()
    else:
        views = _in_map(lambda im: augment.ten_crop_views(im, s), tf.constant(image))
    assert views.shape == (10, s, s, 3) and views.dtype == np.uint8
    five = [image[:s, :s], image[:s, -s:], image[-s:, :s], image[-s:, -s:], image[2 : 2 + s, 6 : 6 + s]]
    expected = np.stack(five + [v[:, ::-1] for v in five])
    np.testing.assert_array_equal(views, expected)


def test_ten_crop_views_rejects_small_image():
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least image_size"):
        augment.ten_crop_views(np.zeros((60, 80, 3), np.uint8), 67)


@pytest.mark.parametrize("mode", ["eager", "map"])
def test_random_flip_per_image(mode):
    batch = RNG.integers(0, 256, (64, 5, 6, 3), dtype=np.uint8)
    if mode == "eager":
        out = augment.random_flip(batch, SEED).numpy()
    else:
        out = _in_map(lambda b: augment.random_flip(b, SEED), tf.constant(batch))
    flipped = [bool(np.array_equal(o, b[:, ::-1])) for o, b in zip(out, batch)]
    kept = [bool(np.array_equal(o, b)) for o, b in zip(out, batch)]
    assert all(f != k for f, k in zip(flipped, kept))  # each image: exactly mirrored or untouched
    assert 16 <= sum(flipped) <= 48  # about half (binomial(64, 1/2): 4 sigma)
    single = augment.random_flip(batch[0], SEED).numpy()
    assert np.array_equal(single, batch[0]) or np.array_equal(single, batch[0][:, ::-1])


def test_pca_offsets_match_numpy():
    alphas = RNG.normal(0, 0.1, (5, 3))
    got = augment.pca_offsets(alphas, EIGENVALUES, EIGENVECTORS).numpy()
    # [p1 p2 p3][a1 l1, a2 l2, a3 l3]^T with p_i the columns of P = eigenvectors^T.
    expected = np.stack([EIGENVECTORS.T @ (a * np.array(EIGENVALUES)) for a in alphas])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("mode", ["eager", "map"])
def test_pca_noise_statistics(mode):
    n = 40_000
    zeros = np.zeros((n, 1, 2, 3), np.float32)
    if mode == "eager":
        out = augment.pca_noise(zeros, SEED, EIGENVALUES, EIGENVECTORS, 0.1).numpy()
    else:
        out = _in_map(lambda z: augment.pca_noise(z, SEED, EIGENVALUES, EIGENVECTORS, 0.1), tf.constant(zeros))
    # One draw per image: every pixel of an image gets the same offset.
    np.testing.assert_array_equal(out[:, 0, 0], out[:, 0, 1])
    offsets = out[:, 0, 0].astype(np.float64)
    expected_cov = EIGENVECTORS.T @ np.diag(0.01 * np.square(EIGENVALUES)) @ EIGENVECTORS
    sd = np.sqrt(np.diag(expected_cov))
    # Mean zero within 4 standard errors per channel.
    assert np.all(np.abs(offsets.mean(axis=0)) < 4 * sd / np.sqrt(n)), offsets.mean(axis=0)
    cov = np.cov(offsets, rowvar=False)
    # Standard error of a sample covariance entry: sqrt((s_ii s_jj + s_ij^2) / n).
    se = np.sqrt((np.outer(sd**2, sd**2) + expected_cov**2) / n)
    assert np.all(np.abs(cov - expected_cov) < 4 * se), (cov, expected_cov)
    # Same seed, same noise; another seed, other noise.
    again = augment.pca_noise(zeros[:10], SEED, EIGENVALUES, EIGENVECTORS, 0.1).numpy()
    other = augment.pca_noise(zeros[:10], SEED + 1, EIGENVALUES, EIGENVECTORS, 0.1).numpy()
    np.testing.assert_array_equal(again, augment.pca_noise(zeros[:10], SEED, EIGENVALUES, EIGENVECTORS, 0.1))
    assert not np.allclose(again, other)


def test_to_float_and_subtract_mean():
    pixels = np.array([[[0, 128, 255]]], np.uint8)
    np.testing.assert_allclose(augment.to_float(pixels).numpy(), [[[0.0, 128 / 255, 1.0]]], rtol=1e-6)
    mean = (0.5, 0.25, 0.125)
    got = _in_map(lambda p: augment.subtract_mean(augment.to_float(p), mean), tf.constant(pixels))
    np.testing.assert_allclose(got, [[[-0.5, 128 / 255 - 0.25, 0.875]]], rtol=1e-6)


@pytest.mark.parametrize("mode,jit", [("eager", True), ("map", True), ("map", False)])
def test_finish_batch_is_flip_then_scale_noise_and_mean(mode, jit):
    images = RNG.integers(0, 256, (8, 4, 5, 3), dtype=np.uint8)
    labels = np.arange(8, dtype=np.int32)
    mean = (0.4, 0.45, 0.5)
    kwargs = dict(
        flip=True, pca=True, eigenvalues=EIGENVALUES, eigenvectors=EIGENVECTORS, pca_stddev=0.1, rgb_mean=mean,
        jit_compile=jit,
    )
    fn = lambda im, lb: augment.finish_batch(im, lb, SEED, **kwargs)  # noqa: E731
    out, out_labels = fn(images, labels) if mode == "eager" else _in_map(fn, tf.constant(images), tf.constant(labels))
    seeds = tf.random.experimental.stateless_split(SEED, 2)
    ref = augment.random_flip(images, seeds[0])
    ref = augment.pca_noise(augment.to_float(ref), seeds[1], EIGENVALUES, EIGENVECTORS, 0.1)
    ref = augment.subtract_mean(ref, mean).numpy()
    np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(out_labels), labels)
    plain, _ = augment.finish_batch(
        images, labels, SEED, flip=False, pca=False, eigenvalues=EIGENVALUES, eigenvectors=EIGENVECTORS,
        pca_stddev=0.1, rgb_mean=None,
    )
    np.testing.assert_allclose(plain.numpy(), images / 255.0, rtol=1e-6)


def test_bad_image_size_is_a_clear_error():
    with pytest.raises(ValueError, match="image_size to be a positive int. Received: image_size=0"):
        augment.decode_center_crop(b"", 0)


def test_jpeg_is_complete_on_a_chunk():
    encoded, _ = _jpeg(40, 48)
    chunk = tf.constant([encoded, encoded[:-30], b"", encoded + b"\0" * 5000])
    np.testing.assert_array_equal(augment.jpeg_is_complete(chunk).numpy(), [True, False, False, False])


@pytest.mark.skipif(not SAMPLE.exists(), reason="shared ImageNet sample not present")
def test_real_imagenet_jpegs_decode_and_pass_the_completeness_check():
    files = sorted((SAMPLE / "val").glob("*.JPEG"))[:20]
    for f in files:
        encoded = f.read_bytes()
        assert bool(augment.jpeg_is_complete(encoded)), f.name
        assert augment.decode_center_crop(encoded, 67).shape == (67, 67, 3)
