"""preprocessing.stats: exact RGB moments, their CombineFn, and the PCA."""
import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that

from preprocessing import stats
from tests.helpers import image_folders as fx


def _numpy_reference(arrays):
    x = np.concatenate([a.reshape(-1, 3) for a in arrays]).astype(np.float64) / 255.0
    return x.mean(axis=0), np.cov(x, rowvar=False, bias=True)


def test_rgb_combinefn_in_a_pipeline_equals_numpy():
    rng = np.random.default_rng(3)
    arrays = [rng.integers(0, 256, (int(rng.integers(5, 40)), int(rng.integers(5, 40)), 3), dtype=np.uint8) for _ in range(23)]
    # Correlated channels, like photographs.
    arrays = [np.clip(a.astype(int) // 2 + a[..., :1].astype(int) // 2, 0, 255).astype(np.uint8) for a in arrays]
    mean, cov = _numpy_reference(arrays)

    def check(outputs):
        (moments,) = outputs
        rgb = stats.rgb_statistics(moments)
        np.testing.assert_allclose(rgb["mean"], mean, rtol=1e-12)
        np.testing.assert_allclose(rgb["covariance"], cov, rtol=1e-10)
        values = np.linalg.eigvalsh(cov)[::-1]
        np.testing.assert_allclose(rgb["eigenvalues"], values, rtol=1e-9)
        vectors = np.asarray(rgb["eigenvectors"])
        np.testing.assert_allclose(vectors @ vectors.T, np.eye(3), atol=1e-12)
        for value, vector in zip(rgb["eigenvalues"], vectors):
            np.testing.assert_allclose(cov @ vector, value * vector, atol=1e-12)

    with test_pipeline.TestPipeline(runner="FnApiRunner") as p:
        result = (
            p
            | beam.Create(arrays, reshuffle=True)
            | beam.Map(stats.pixel_moments)
            | beam.CombineGlobally(stats.RgbMomentsCombineFn())
        )
        assert_that(result, check)


def test_stride_takes_a_regular_grid_of_pixels():
    a = np.random.default_rng(5).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    count, sums, gram = stats.pixel_moments(a, stride=2)
    x = a[::2, ::2].reshape(-1, 3).astype(np.int64)
    assert count == 4 * 3 and (sums == x.sum(axis=0)).all() and (gram == x.T @ x).all()
    assert stats.sampling(1).startswith("every pixel of every training image")
    assert stats.sampling(4).startswith("every 4th row and column (1/16 of the pixels, a regular grid)")


@pytest.mark.parametrize("stride", [1, 2, 3, 4])
@pytest.mark.parametrize("shape", [(256, 256), (41, 37), (3, 300)])
def test_sampled_moments_are_exact_integers_equal_to_numpy(stride, shape):
    rng = np.random.default_rng(stride)
    for pixels in (rng.integers(0, 256, shape + (3,), dtype=np.uint8), np.full(shape + (3,), 255, np.uint8)):
        count, sums, gram = stats.pixel_moments(pixels, stride)
        x = pixels[::stride, ::stride].reshape(-1, 3).astype(np.int64)  # the same sampled pixels, in exact integers
        assert count == x.shape[0] == -(-shape[0] // stride) * -(-shape[1] // stride)
        assert sums.dtype == gram.dtype == np.int64
        np.testing.assert_array_equal(sums, x.sum(axis=0))
        np.testing.assert_array_equal(gram, x.T @ x)
    # A non-contiguous view (a crop) gives the moments of exactly its pixels.
    big = rng.integers(0, 256, (60, 50, 3), dtype=np.uint8)
    crop = big[5:45, 3:40]
    x = crop[::stride, ::stride].reshape(-1, 3).astype(np.int64)
    np.testing.assert_array_equal(stats.pixel_moments(crop, stride)[2], x.T @ x)


def test_merge_order_does_not_change_the_result():
    rng = np.random.default_rng(4)
    moments = [stats.pixel_moments(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)) for _ in range(10)]
    fn = stats.RgbMomentsCombineFn()
    a = fn.merge_accumulators([fn.add_input(fn.create_accumulator(), m) for m in moments])
    b = fn.merge_accumulators([
        fn.merge_accumulators([fn.add_input(fn.create_accumulator(), m) for m in moments[5:]]),
        fn.merge_accumulators([fn.add_input(fn.create_accumulator(), m) for m in moments[:5]]),
    ])
    assert stats.rgb_statistics(a) == stats.rgb_statistics(b)
    assert stats.rgb_statistics(fn.create_accumulator()) is None


def test_eigenvectors_point_like_the_published_imagenet_ones():
    # A covariance built from the published PCA must give it back.
    values = np.array([0.2175, 0.0188, 0.0045])
    vectors = np.array(fx.schema.IMAGENET_EIGENVECTORS)
    q, _ = np.linalg.qr(vectors.T)  # the published vectors are orthonormal up to rounding
    q *= np.sign(np.sum(q * vectors.T, axis=0))
    cov = q @ np.diag(values) @ q.T
    n = 10**6
    mean = np.array([0.5, 0.4, 0.3])
    second = cov + np.outer(mean, mean)
    moments = (n, np.rint(mean * 255 * n).astype(np.int64), np.rint(second * 255 * 255 * n).astype(np.int64))
    rgb = stats.rgb_statistics(moments)
    np.testing.assert_allclose(rgb["eigenvalues"], values, rtol=1e-4)
    np.testing.assert_allclose(rgb["eigenvectors"], vectors, atol=2e-3)
