"""The paper's crop geometry (trainer/geometry.py) against the slow way.

The slow way (tests/helpers/geometry_reference.py) rescales the whole image; the
fast way decodes only a window and samples it; the two must agree to within one
level of rounding on every pixel, for images larger and smaller than the square,
landscape and portrait, and for random, centre and 10-view offsets.
"""
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tests.helpers.geometry_reference import assert_close, slow_view
from trainer import geometry


def _jpeg(height, width, seed):
    """A textured JPEG: smooth colour fields plus pixel noise, so a view shifted by one
    pixel differs from the right one by far more than rounding."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (height // 8 + 2, width // 8 + 2, 3)).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(base).resize((width, height), Image.BICUBIC)).astype(int)
    pixels = np.clip(smooth + rng.integers(-20, 21, smooth.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


# (height, width, crop): TensorFlow's ImageNet shards keep originals (often
# 500x375 or 333x500); Tiny ImageNet is 64x64, smaller than any crop's square.
SHAPES = [(375, 500, 227), (500, 333, 227), (257, 380, 99), (64, 64, 127), (64, 64, 67), (300, 300, 227)]


@pytest.mark.parametrize("height,width,crop", SHAPES)
def test_ten_views_equal_decode_rescale_crop(height, width, crop):
    encoded = _jpeg(height, width, seed=height + width)
    reference = geometry.reference_size(crop)
    offsets = geometry.corner_offsets(reference, crop)
    views = geometry.decode_views(tf.constant(encoded), crop, reference, offsets).numpy()
    assert views.shape == (5, crop, crop, 3)
    for view, (y, x) in zip(views, offsets):
        assert_close(view, slow_view(encoded, crop, reference, y, x))


@pytest.mark.parametrize("height,width,crop", SHAPES)
def test_random_views_equal_decode_rescale_crop(height, width, crop):
    encoded = _jpeg(height, width, seed=crop)
    reference = geometry.reference_size(crop)
    for i in range(3):
        y, x = (int(v) for v in geometry.random_offset(reference, crop, tf.constant([7, i], tf.int64)))
        assert 0 <= y <= reference - crop and 0 <= x <= reference - crop
        (view,) = geometry.decode_views(tf.constant(encoded), crop, reference, [(y, x)]).numpy()
        assert_close(view, slow_view(encoded, crop, reference, y, x))


def test_a_view_shifted_by_one_pixel_is_far_from_the_right_one():
    """The closeness above means something: a one-pixel error in the geometry fails it."""
    encoded = _jpeg(375, 500, seed=1)
    (view,) = geometry.decode_views(tf.constant(encoded), 227, 256, [(10, 10)]).numpy()
    shifted = slow_view(encoded, 227, 256, 10, 11)
    assert np.abs(view.astype(int) - shifted.astype(int)).max() > 20


def test_views_inside_a_graph_equal_eager():
    encoded = _jpeg(375, 500, seed=2)
    fn = tf.function(lambda e, y, x: geometry.decode_views(e, 227, 256, [(y, x)]))
    eager = geometry.decode_views(tf.constant(encoded), 227, 256, [(13, 20)]).numpy()
    graph = fn(tf.constant(encoded), tf.constant(13), tf.constant(20)).numpy()
    np.testing.assert_array_equal(eager, graph)


def test_reference_size_keeps_the_papers_ratio_or_a_larger_stored_square():
    assert geometry.reference_size(227) == 256
    assert geometry.reference_size(127) == 143
    assert geometry.reference_size(67) == 76
    assert geometry.reference_size(127, stored=144) == 144  # the demo's stored squares: plain crops
    assert geometry.reference_size(127, stored=64) == 143  # Tiny ImageNet kept at 64: rescaled views
    assert geometry.reference_size(227, stored=256) == 256


def test_rescaled_shape_puts_the_shorter_side_at_the_reference():
    assert [int(v) for v in geometry.rescaled_shape(375, 500, 256)] == [256, 341]
    assert [int(v) for v in geometry.rescaled_shape(500, 333, 256)] == [384, 256]
    assert [int(v) for v in geometry.rescaled_shape(64, 64, 143)] == [143, 143]


def test_corner_offsets_are_the_papers_five_views():
    assert geometry.corner_offsets(256, 227) == [(0, 0), (0, 29), (29, 0), (29, 29), (14, 14)]


def test_a_crop_larger_than_the_square_is_refused():
    with pytest.raises(ValueError, match="crop <= reference"):
        geometry.decode_views(tf.constant(_jpeg(64, 64, 0)), 150, 143, [(0, 0)])
