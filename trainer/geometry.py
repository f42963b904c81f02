"""The paper's crop geometry for images of any size, decoding only what a view needs.

Section 2 of the paper: "we down-sampled the images to a fixed resolution of
256 x 256 ... we first rescaled the image such that the shorter side was of
length 256, and then cropped out the central 256x256 patch". Training takes
random 227x227 crops of that square, testing its centre crop or its 10 views
(4 corners, centre, and their mirrors).

This module computes those views for a JPEG of any size without rescaling the
whole image: a view is a grid of `crop x crop` sample points of the rescaled
square, and each point maps back to a position in the original image. Only the
window of the original that holds those points is decoded
(`tf.image.decode_and_crop_jpeg`), then sampled bilinearly at exactly the
points where `tf.image.resize` of the whole image (bilinear, half-pixel
centres) would sample it. So a view equals decode, rescale, centre-crop, crop,
done the slow way, up to float rounding (tests/trainer/test_geometry.py).

The side of the rescaled square is the "reference size". The paper's is
256 for 227 crops; for other crop sizes this module keeps the paper's ratio
(`reference_size`). Images the Beam job stored as squares at least that large
are cropped as they are, with no resampling at all (trainer/augment.py's
plain crops).
"""
import tensorflow as tf

PAPER_REFERENCE = 256  # the side of the rescaled square (section 2)
PAPER_CROP = 227  # the side of the views taken from it (the paper's "224" does not fit its own layers)


def reference_size(crop, stored=None):
    """The side of the square that `crop`-sized views are taken from.

    Args:
      crop: int, the view side.
      stored: the side of the stored square images (metadata.json's
        image_size), or None when images keep their original sizes.

    Returns:
      int: the paper's ratio `crop * 256 / 227` rounded, or `stored` when the
      stored squares are larger (their views are then plain crops, as the
      Beam job already did the rescale).
    """
    paper = int(round(crop * PAPER_REFERENCE / PAPER_CROP))
    return max(int(stored), paper) if stored else paper


def rescaled_shape(height, width, reference):
    """The shape of an image rescaled so that its shorter side is `reference`.

    The longer side is rounded to the nearest pixel. Args are scalar int
    tensors (or ints); returns two int32 scalars (new_height, new_width).
    """
    height = tf.cast(height, tf.float32)
    width = tf.cast(width, tf.float32)
    scale = float(reference) / tf.minimum(height, width)
    new_h = tf.cast(tf.round(height * scale), tf.int32)
    new_w = tf.cast(tf.round(width * scale), tf.int32)
    return tf.maximum(new_h, reference), tf.maximum(new_w, reference)


def centre_offset(reference, crop):
    """(y, x) of the central view inside the reference square."""
    return ((reference - crop) // 2,) * 2


def corner_offsets(reference, crop):
    """The five views of the paper's 10-view test, as (y, x) inside the square:
    top-left, top-right, bottom-left, bottom-right, centre."""
    far = reference - crop
    return [(0, 0), (0, far), (far, 0), (far, far), centre_offset(reference, crop)]


def random_offset(reference, crop, seed):
    """A uniformly random (y, x) of a view inside the square (int32 scalars).

    Args:
      reference, crop: ints, the square's side and the view's.
      seed: int tensor of shape [2] (stateless randomness).
    """
    seeds = tf.random.experimental.stateless_split(seed, 2)
    y = tf.random.stateless_uniform([], seeds[0], minval=0, maxval=reference - crop + 1, dtype=tf.int32)
    x = tf.random.stateless_uniform([], seeds[1], minval=0, maxval=reference - crop + 1, dtype=tf.int32)
    return y, x


def _axis_samples(size, new_size, reference, crop, offset):
    """Where along one axis of the original image a view's samples fall.

    The view's first sample is row (or column) `start + offset` of the
    rescaled image, `start` the central square's first row there; resize
    with half-pixel centres samples output row r at (r + 0.5) * size /
    new_size - 0.5 of the input.

    Returns float32 (first sample, step between samples).
    """
    step = tf.cast(size, tf.float32) / tf.cast(new_size, tf.float32)
    start = (new_size - reference) // 2 + offset
    first = (tf.cast(start, tf.float32) + 0.5) * step - 0.5
    return first, step


# decode_and_crop_jpeg's first and last columns of a window differ from a full
# decode's pixels there (libjpeg's chroma upsampling lacks the neighbours outside
# the window), by tens of levels. A margin of two 8x8 blocks on each side keeps the
# pixels that are sampled equal to the full decode's.
_DECODE_MARGIN = 16


def _window(size, first, step, crop):
    """The rows [lo, hi) of the original that hold samples first .. first + (crop - 1) * step,
    widened by the decode margin and clipped to the image."""
    last = first + (crop - 1) * step
    lo = tf.clip_by_value(tf.cast(tf.floor(first), tf.int32) - _DECODE_MARGIN, 0, size - 1)
    hi = tf.clip_by_value(tf.cast(tf.math.ceil(last), tf.int32) + 1 + _DECODE_MARGIN, 1, size)
    return lo, hi


def _sample(window, lo_y, lo_x, boxes_in_original, crop):
    """Bilinear samples of a decoded window at the views' grids.

    `boxes_in_original` is (N, 4) float32 [first_y, first_x, last_y, last_x]
    in original pixel coordinates. The window is padded by one replicated
    pixel on each side, so a sample that falls within half a pixel outside the
    image takes the edge pixel, as `tf.image.resize` clamps it, instead of
    crop_and_resize's extrapolation value.
    """
    padded = tf.pad(tf.cast(window, tf.float32)[tf.newaxis], [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    shape = tf.cast(tf.shape(padded)[1:3] - 1, tf.float32)
    origin = tf.cast(tf.stack([lo_y, lo_x, lo_y, lo_x]), tf.float32) - 1.0
    boxes = (boxes_in_original - origin) / tf.concat([shape, shape], axis=0)
    indices = tf.zeros([tf.shape(boxes)[0]], tf.int32)
    views = tf.image.crop_and_resize(padded, boxes, indices, [crop, crop], method="bilinear")
    return tf.cast(tf.clip_by_value(tf.round(views), 0.0, 255.0), tf.uint8)


def _grids(height, width, crop, reference, offsets):
    """Each view's sample grid in original pixel coordinates, and the window holding them all.

    Returns (boxes float32 (N, 4) [first_y, first_x, last_y, last_x], [lo_y, lo_x, hi_y, hi_x]).
    """
    new_h, new_w = rescaled_shape(height, width, reference)
    boxes, ys, xs = [], [], []
    for y, x in offsets:
        first_y, step_y = _axis_samples(height, new_h, reference, crop, y)
        first_x, step_x = _axis_samples(width, new_w, reference, crop, x)
        boxes.append(tf.stack([first_y, first_x, first_y + (crop - 1) * step_y, first_x + (crop - 1) * step_x]))
        ys.append(_window(height, first_y, step_y, crop))
        xs.append(_window(width, first_x, step_x, crop))
    lo_y = tf.reduce_min(tf.stack([lo for lo, _ in ys]))
    hi_y = tf.reduce_max(tf.stack([hi for _, hi in ys]))
    lo_x = tf.reduce_min(tf.stack([lo for lo, _ in xs]))
    hi_x = tf.reduce_max(tf.stack([hi for _, hi in xs]))
    return tf.stack(boxes), (lo_y, lo_x, hi_y, hi_x)


def _check(crop, reference):
    if not 0 < crop <= reference:
        raise ValueError("expected 0 < crop <= reference. Received: crop=%r, reference=%r" % (crop, reference))


def decode_views(encoded, crop, reference, offsets):
    """Decodes views of a JPEG of any size in the paper's geometry.

    Args:
      encoded: scalar string tensor, JPEG bytes.
      crop: int, the view side.
      reference: int, the side of the rescaled square (`reference_size`).
      offsets: list of (y, x) pairs (ints or int32 scalars) inside the square,
        each in [0, reference - crop].

    Returns:
      uint8 tensor (len(offsets), crop, crop, 3). Only the smallest window of
      the original holding every view's samples is decoded.
    """
    _check(crop, reference)
    shape = tf.image.extract_jpeg_shape(encoded)  # reads the header only
    boxes, (lo_y, lo_x, hi_y, hi_x) = _grids(shape[0], shape[1], crop, reference, offsets)
    window = tf.image.decode_and_crop_jpeg(encoded, tf.stack([lo_y, lo_x, hi_y - lo_y, hi_x - lo_x]), channels=3)
    views = _sample(window, lo_y, lo_x, boxes, crop)
    views.set_shape([len(offsets), crop, crop, 3])
    return views


def image_views(image, crop, reference, offsets):
    """`decode_views` of an image already decoded (uint8 (H, W, 3)): the same views."""
    _check(crop, reference)
    shape = tf.shape(image)
    boxes, _ = _grids(shape[0], shape[1], crop, reference, offsets)
    views = _sample(image, tf.constant(0), tf.constant(0), boxes, crop)
    views.set_shape([len(offsets), crop, crop, 3])
    return views


def ten_views(views):
    """The paper's 10 views from the five of `corner_offsets`: them, then their mirrors."""
    return tf.concat([views, tf.reverse(views, axis=[2])], axis=0)
