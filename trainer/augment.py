"""The paper's image transforms, as pure functions on tensors.

Every function here works eagerly and inside `tf.data.Dataset.map` (the tests
run both), takes plain tensors and arguments, and keeps no state. Randomness is
stateless: each call takes a `seed` of shape [2], so a pipeline with a fixed
seed gives the same crops, flips and colour noise whatever its parallelism.

Section 4.1 of the paper, and where each part lives:
  * random 227x227 crops of the stored 256x256 image: `decode_random_crop`
    decodes only the crop window (`tf.image.decode_and_crop_jpeg`);
  * horizontal reflections: `random_flip`;
  * PCA colour noise, [p1 p2 p3][a1 l1, a2 l2, a3 l3]^T added to every pixel
    with a_i ~ N(0, 0.1) drawn once per image: `pca_noise`;
  * the only normalisation is subtracting the training set's mean RGB
    ("We did not pre-process the images in any other way"): `subtract_mean`;
  * test time: the centre crop (`decode_center_crop`) or the 10 views,
    4 corners and centre plus their mirrors (`ten_crop_views`).

Pixels are scaled to [0, 1] (`to_float`), the scale in which metadata.json
states the RGB mean and the PCA eigenvalues.
"""
import tensorflow as tf

# JPEG markers: every JPEG starts with SOI (FF D8) and a marker (FF ..) and
# ends with EOI (FF D9). Entropy-coded data never holds FF D9 (a data FF byte
# is stuffed as FF 00), so an EOI near the end means the file is complete.
_JPEG_SOI = b"\xff\xd8\xff"
# Some encoders append bytes after EOI (camera trailers); look for EOI in this
# many trailing bytes rather than only in the last two.
JPEG_TAIL_BYTES = 4096


def jpeg_is_complete(encoded):
    """Whether `encoded` starts like a JPEG and has an end-of-image marker near its end.

    TensorFlow decodes a truncated JPEG without error (the missing rows come out
    grey), so this cheap check is what turns a truncated image into a reported
    corrupt record instead of a silently wrong training example.

    Args:
      encoded: string tensor of any shape (a scalar, or a chunk of records).

    Returns:
      bool tensor of the same shape.
    """
    encoded = tf.convert_to_tensor(encoded, tf.string)
    length = tf.strings.length(encoded)
    starts = tf.equal(tf.strings.substr(encoded, tf.zeros_like(length), tf.fill(tf.shape(length), 3)), _JPEG_SOI)
    tail = tf.strings.substr(
        encoded, tf.maximum(length - JPEG_TAIL_BYTES, 0), tf.fill(tf.shape(length), JPEG_TAIL_BYTES)
    )
    # Zero padding (for short images) cannot create an FF D9 pair.
    tail = tf.io.decode_raw(tail, tf.uint8, fixed_length=JPEG_TAIL_BYTES)
    has_eoi = tf.reduce_any(tf.logical_and(tf.equal(tail[..., :-1], 0xFF), tf.equal(tail[..., 1:], 0xD9)), axis=-1)
    return tf.logical_and(starts, has_eoi)


def _check_image_size(image_size):
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError("expected image_size to be a positive int. Received: image_size=%r" % (image_size,))


def _upscaled_shape(height, width, image_size):
    """Shape with the shorter side raised to `image_size`, aspect ratio kept."""
    shorter = tf.minimum(height, width)
    scale = tf.cast(image_size, tf.float32) / tf.cast(shorter, tf.float32)
    new_h = tf.maximum(tf.cast(tf.math.ceil(tf.cast(height, tf.float32) * scale), tf.int32), image_size)
    new_w = tf.maximum(tf.cast(tf.math.ceil(tf.cast(width, tf.float32) * scale), tf.int32), image_size)
    return new_h, new_w


def resize_to_at_least(image, image_size):
    """Resizes a uint8 (H, W, 3) image up so that its shorter side is `image_size`.

    Images already at least `image_size` on both sides are returned unchanged.
    Stored images smaller than the crop (a data set written at a smaller size)
    are scaled up rather than rejected.

    Args:
      image: uint8 tensor (H, W, C).
      image_size: int, the crop side.

    Returns:
      uint8 tensor (H', W', C) with min(H', W') >= image_size.
    """
    image = tf.convert_to_tensor(image)
    shape = tf.shape(image)
    height, width = shape[0], shape[1]

    def _resize():
        new_h, new_w = _upscaled_shape(height, width, image_size)
        resized = tf.image.resize(image, tf.stack([new_h, new_w]), method="bilinear")
        return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), image.dtype)

    return tf.cond(tf.minimum(height, width) >= image_size, lambda: image, _resize)


def random_crop_window(height, width, image_size, seed):
    """A uniformly random `image_size` square inside a (height, width) image.

    Args:
      height, width: scalar int32 tensors, at least image_size.
      image_size: int, the crop side.
      seed: int tensor of shape [2] (stateless randomness).

    Returns:
      int32 tensor [y, x, image_size, image_size], the layout of
      `tf.image.decode_and_crop_jpeg`'s crop_window.
    """
    seeds = tf.random.experimental.stateless_split(seed, 2)
    y = tf.random.stateless_uniform([], seeds[0], minval=0, maxval=height - image_size + 1, dtype=tf.int32)
    x = tf.random.stateless_uniform([], seeds[1], minval=0, maxval=width - image_size + 1, dtype=tf.int32)
    return tf.stack([y, x, image_size, image_size])


def center_crop_window(height, width, image_size):
    """The central `image_size` square of a (height, width) image, as [y, x, h, w]."""
    y = (height - image_size) // 2
    x = (width - image_size) // 2
    return tf.stack([y, x, tf.constant(image_size), tf.constant(image_size)])


def _decode_crop(encoded, image_size, window_fn, upscale):
    """Decodes only the crop window when the image is big enough, else decodes,
    scales up and crops. `window_fn(height, width)` picks the window."""
    _check_image_size(image_size)
    shape = tf.image.extract_jpeg_shape(encoded)  # reads the header only
    height, width = shape[0], shape[1]
    if not upscale:
        # The caller knows every image is at least the crop (metadata.json's
        # image_size): skip the per-image branch and its CPU cost.
        image = tf.image.decode_and_crop_jpeg(encoded, window_fn(height, width), channels=3)
        image.set_shape([image_size, image_size, 3])
        return image

    def _fused():
        # Decoding only the window costs about (227/256)^2 of a full decode.
        return tf.image.decode_and_crop_jpeg(encoded, window_fn(height, width), channels=3)

    def _upscaled():
        image = resize_to_at_least(tf.io.decode_jpeg(encoded, channels=3), image_size)
        new_shape = tf.shape(image)
        window = window_fn(new_shape[0], new_shape[1])
        return tf.image.crop_to_bounding_box(image, window[0], window[1], image_size, image_size)

    image = tf.cond(tf.minimum(height, width) >= image_size, _fused, _upscaled)
    image.set_shape([image_size, image_size, 3])
    return image


def decode_random_crop(encoded, image_size, seed, upscale=True):
    """Decodes a random `image_size` square crop of a JPEG (uint8, (S, S, 3)).

    Args:
      encoded: scalar string tensor, JPEG bytes.
      image_size: int, crop side (the paper: 227 of a 256 image).
      seed: int tensor of shape [2].
      upscale: scale up images smaller than the crop first; False when every
        image is known to be at least image_size on a side (then faster).

    Returns:
      uint8 tensor (image_size, image_size, 3).
    """
    return _decode_crop(encoded, image_size, lambda h, w: random_crop_window(h, w, image_size, seed), upscale)


def decode_center_crop(encoded, image_size, upscale=True):
    """Decodes the central `image_size` square of a JPEG (uint8, (S, S, 3)).

    Args:
      encoded: scalar string tensor, JPEG bytes.
      image_size: int, crop side.
      upscale: as in decode_random_crop.

    Returns:
      uint8 tensor (image_size, image_size, 3).
    """
    return _decode_crop(encoded, image_size, lambda h, w: center_crop_window(h, w, image_size), upscale)


def decode_full(encoded, image_size):
    """Decodes a whole JPEG, scaled up if a side is below `image_size` (uint8, (H, W, 3))."""
    _check_image_size(image_size)
    return resize_to_at_least(tf.io.decode_jpeg(encoded, channels=3), image_size)


def ten_crop_views(image, image_size):
    """The paper's 10 test views: 4 corner crops and the centre crop, then their mirrors.

    Args:
      image: tensor (H, W, C), H and W at least image_size.
      image_size: int, view side.

    Returns:
      Tensor (10, image_size, image_size, C) of the image's dtype, in the order
      top-left, top-right, bottom-left, bottom-right, centre, then the same five
      flipped left-right.
    """
    _check_image_size(image_size)
    image = tf.convert_to_tensor(image)
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    tf.debugging.assert_greater_equal(
        tf.minimum(height, width), image_size, message="ten_crop_views needs an image at least image_size on a side"
    )
    s = image_size
    bottom, right = height - s, width - s
    offsets = [(0, 0), (0, right), (bottom, 0), (bottom, right), (bottom // 2, right // 2)]
    views = tf.stack([image[y : y + s, x : x + s] for y, x in offsets])
    views = tf.concat([views, tf.reverse(views, axis=[2])], axis=0)
    views.set_shape([10, s, s, image.shape[-1]])
    return views


def random_flip(images, seed):
    """Mirrors each image left-right with probability 1/2.

    Args:
      images: tensor (..., H, W, C): one image or a batch (each image flips on its own draw).
      seed: int tensor of shape [2].

    Returns:
      Tensor of the same shape and dtype.
    """
    images = tf.convert_to_tensor(images)
    leading = tf.shape(images)[:-3]
    flip = tf.random.stateless_uniform(leading, seed) < 0.5
    return tf.where(flip[..., tf.newaxis, tf.newaxis, tf.newaxis], tf.reverse(images, axis=[-2]), images)


def pca_offsets(alphas, eigenvalues, eigenvectors):
    """RGB offsets [p1 p2 p3][a1 l1, a2 l2, a3 l3]^T for given draws a.

    Args:
      alphas: float tensor (..., 3), the draws a_i.
      eigenvalues: 3 floats l_i.
      eigenvectors: 3x3 floats, row i the unit eigenvector p_i of eigenvalue i.

    Returns:
      float32 tensor (..., 3): sum_i a_i l_i p_i.
    """
    eigenvalues = tf.constant(eigenvalues, tf.float32, shape=[3])
    eigenvectors = tf.constant(eigenvectors, tf.float32, shape=[3, 3])
    return tf.linalg.matmul(tf.cast(alphas, tf.float32) * eigenvalues, eigenvectors)


def pca_noise(images, seed, eigenvalues, eigenvectors, stddev=0.1):
    """Adds the paper's PCA colour noise, one draw a ~ N(0, stddev^2 I) per image.

    Args:
      images: float tensor (..., H, W, 3) in the scale of the eigenvalues ([0, 1]).
      seed: int tensor of shape [2].
      eigenvalues: 3 floats; eigenvectors: 3x3 floats, row i for eigenvalue i.
      stddev: standard deviation of a_i (the paper: 0.1).

    Returns:
      float32 tensor of the same shape.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    leading = tf.shape(images)[:-3]
    alphas = tf.random.stateless_normal(tf.concat([leading, [3]], axis=0), seed, stddev=stddev)
    offsets = pca_offsets(alphas, eigenvalues, eigenvectors)
    return images + offsets[..., tf.newaxis, tf.newaxis, :]


def to_float(images):
    """uint8 pixels to float32 in [0, 1]."""
    return tf.cast(images, tf.float32) * (1.0 / 255.0)


def subtract_mean(images, rgb_mean):
    """Subtracts the training set's mean RGB (3 floats, [0, 1] scale); no division by std."""
    return tf.convert_to_tensor(images, tf.float32) - tf.constant(rgb_mean, tf.float32, shape=[3])


def _flip_scale_offset(images, flips, offsets):
    """uint8 images -> float32: mirror where `flips`, scale to [0, 1], add per-image RGB offsets."""
    mirrored = tf.where(flips[..., tf.newaxis, tf.newaxis, tf.newaxis], tf.reverse(images, axis=[-2]), images)
    return tf.cast(mirrored, tf.float32) * (1.0 / 255.0) + offsets[..., tf.newaxis, tf.newaxis, :]


# XLA fuses the mirror, the cast, the scale and the offset into one pass over
# the batch. Separate TensorFlow ops make four passes, and tf.reverse on
# 3-byte pixels is slow (what it cost: docs/decisions/trainer-cpu.md).
_flip_scale_offset_xla = tf.function(_flip_scale_offset, jit_compile=True, reduce_retracing=True)


def batch_draws(
    leading,
    seed,
    *,
    flip,
    pca,
    eigenvalues,
    eigenvectors,
    pca_stddev,
    rgb_mean,
):
    """The random part of `finish_batch`: which images to mirror, and each image's RGB offset.

    Kept apart from the pixel work so the draws can be made in tf.data and the
    pixels finished elsewhere (the train step, on the accelerator) with the same
    values: stateless draws inside an XLA computation differ from TensorFlow's
    kernels for the same seed.

    Args:
      leading: int tensor, the batch's shape without the last three (pixel) dimensions.
      seed: int tensor of shape [2].
      flip, pca, eigenvalues, eigenvectors, pca_stddev, rgb_mean: see finish_batch.

    Returns:
      (bool flips of shape `leading`, float32 offsets of shape `leading` + [3]).
    """
    seeds = tf.random.experimental.stateless_split(seed, 2)
    if flip:
        flips = tf.random.stateless_uniform(leading, seeds[0]) < 0.5  # the draws of random_flip
    else:
        flips = tf.zeros(leading, tf.bool)
    # PCA noise and the mean are both one RGB offset per image.
    offsets = tf.zeros(tf.concat([leading, [3]], axis=0), tf.float32)
    if pca:
        alphas = tf.random.stateless_normal(tf.concat([leading, [3]], axis=0), seeds[1], stddev=pca_stddev)
        offsets += pca_offsets(alphas, eigenvalues, eigenvectors)  # the draws of pca_noise
    if rgb_mean is not None:
        offsets -= tf.constant(rgb_mean, tf.float32, shape=[3])
    return flips, offsets


def apply_draws(images, flips, offsets, jit_compile=True):
    """The pixel part of `finish_batch`: uint8 images -> mirrored where `flips`,
    scaled to [0, 1], plus `offsets` (float32, same shape)."""
    convert = _flip_scale_offset_xla if jit_compile else _flip_scale_offset
    return convert(tf.convert_to_tensor(images), flips, offsets)


def finish_batch(
    images,
    labels,
    seed,
    *,
    flip,
    pca,
    eigenvalues,
    eigenvectors,
    pca_stddev,
    rgb_mean,
    jit_compile=True,
):
    """Batch-level part of training augmentation: flips, scaling, PCA noise, mean.

    Runs after `batch`, so the random draws are two small ops per batch and
    the pixel work is one fused pass (XLA) over the whole batch, instead of
    several small ops per image. It is `batch_draws` then `apply_draws`.

    Args:
      images: uint8 tensor (B, S, S, 3) (or (B, 10, S, S, 3) of evaluation views).
      labels: int32 tensor (B,).
      seed: int tensor of shape [2].
      flip, pca: whether to apply the random flip / the PCA noise.
      eigenvalues, eigenvectors, pca_stddev: the PCA noise parameters.
      rgb_mean: 3 floats to subtract, or None to keep pixels in [0, 1].
      jit_compile: fuse the pixel work with XLA (False: plain TensorFlow ops,
        the same values within float rounding).

    Returns:
      (float32 images of the same shape, labels).
    """
    images = tf.convert_to_tensor(images)
    flips, offsets = batch_draws(
        tf.shape(images)[:-3],
        seed,
        flip=flip,
        pca=pca,
        eigenvalues=eigenvalues,
        eigenvectors=eigenvectors,
        pca_stddev=pca_stddev,
        rgb_mean=rgb_mean,
    )
    return apply_draws(images, flips, offsets, jit_compile=jit_compile), labels
