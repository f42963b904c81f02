"""The paper's crop geometry done the slow way, as section 2 of the paper describes it.

Decode the whole image, rescale it so its shorter side is the reference size
(bilinear, as `tf.image.resize` does), cut out the central square, then take the
view. The trainer's fast way (trainer/geometry.py) must agree with it to within
one level of rounding.
"""
import numpy as np
import tensorflow as tf

from trainer import geometry


def slow_view(image, crop, reference, y, x):
    """uint8 (crop, crop, 3) view at (y, x) of the reference square of `image` (JPEG bytes or uint8 pixels)."""
    if isinstance(image, (bytes, tf.Tensor)) and tf.convert_to_tensor(image).dtype == tf.string:
        image = tf.io.decode_jpeg(image, channels=3)
    image = tf.convert_to_tensor(image)
    new_h, new_w = geometry.rescaled_shape(tf.shape(image)[0], tf.shape(image)[1], reference)
    rescaled = tf.image.resize(tf.cast(image, tf.float32), [new_h, new_w], method="bilinear")
    top, left = (new_h - reference) // 2, (new_w - reference) // 2
    view = rescaled[top + y : top + y + crop, left + x : left + x + crop]
    return tf.cast(tf.clip_by_value(tf.round(view), 0.0, 255.0), tf.uint8).numpy()


def slow_ten_views(image, crop, reference):
    """The 10 views (corners, centre, then their mirrors) the slow way: uint8 (10, crop, crop, 3)."""
    five = np.stack([slow_view(image, crop, reference, y, x) for y, x in geometry.corner_offsets(reference, crop)])
    return np.concatenate([five, five[:, :, ::-1]])


def assert_close(fast, slow):
    """Equal but for rounding: no pixel more than one level off, and few off at all."""
    fast, slow = np.asarray(fast), np.asarray(slow)
    assert fast.shape == slow.shape, (fast.shape, slow.shape)
    diff = np.abs(fast.astype(float) - slow.astype(float))
    # Float rounding of the two interpolations may split a .5 the other way.
    assert diff.max() <= 1.0 + 1e-6, diff.max()
    assert (diff > 1e-6).mean() < 5e-3, (diff > 1e-6).mean()
