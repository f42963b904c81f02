"""Decode, repair, resize and re-encode one image (pure functions, no Beam).

Every input becomes a 3-channel 8-bit RGB JPEG, whatever its file name says:
real ImageNet train holds 22 CMYK JPEGs and one PNG named `.JPEG`; other
collections bring grayscale, palette, RGBA and 16-bit files. Anything that
cannot become an example raises `ImageRejected` with a short reason, which the
Beam job counts and lists instead of crashing.
"""
import io
import warnings

import numpy as np
from PIL import Image

# Pillow's own decompression-bomb warning threshold (about 89.5 megapixels).
# The largest real ImageNet train image is far below it.
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS
DEFAULT_JPEG_QUALITY = 90


class ImageRejected(ValueError):
    """An input that cannot become an example; `reason` is one short line."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def _open(data, max_pixels):
    """Opens (headers only) and checks the pixel count before any decode."""
    if not data:
        raise ImageRejected("empty file")
    try:
        with warnings.catch_warnings():
            # Our own limit below decides; Pillow's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as err:
        raise ImageRejected("decompression bomb: %s" % err) from err
    except Exception as err:  # Pillow raises many types for non-images.
        raise ImageRejected("not an image (%s)" % type(err).__name__) from err
    width, height = img.size
    if width * height > max_pixels:
        raise ImageRejected(
            "decompression bomb: %dx%d = %d pixels, limit %d" % (width, height, width * height, max_pixels)
        )
    if width < 1 or height < 1:
        raise ImageRejected("zero-sized image %dx%d" % (width, height))
    return img


def _draft(img, image_size):
    """Lets libjpeg decode at 1/2, 1/4 or 1/8 scale when we shrink anyway.

    The DCT-domain reduction is the cheapest correct decode: it never goes
    below the size we need (draft keeps both sides >= the requested ones).
    """
    if img.format != "JPEG" or not image_size:
        return
    width, height = img.size
    short = min(width, height)
    if short <= image_size:
        return
    scale = image_size / short
    img.draft("RGB", (int(np.ceil(width * scale)), int(np.ceil(height * scale))))


def to_rgb(img):
    """Converts any Pillow mode to 8-bit RGB.

    Args:
      img: a loaded PIL.Image of any mode.

    Returns:
      A PIL.Image in mode "RGB".
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        # Pillow's own convert("L") clips 16-bit values at 255 instead of
        # scaling them; scale the full range down to 8 bits ourselves.
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        if mode == "F":
            top = max(float(arr.max(initial=0)), 1e-12) if arr.max(initial=0) > 1.0 else 1.0
        arr = np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Transparent pixels go on white, as a browser would show them.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def resize_and_crop(img, image_size, upscale=True):
    """Resizes so the shorter side is `image_size`, then centre-crops a square.

    Only the source region that survives the crop is resampled (`box=`), which
    is cheaper than resizing the whole image and cropping afterwards.

    Args:
      img: an RGB PIL.Image.
      image_size: side of the output square, or 0/None to keep the image as is.
      upscale: False keeps an image whose shorter side is under `image_size`
        at its own size: its central square is cut out, never resampled
        (enlarging adds bytes, not information).

    Returns:
      A PIL.Image of image_size x image_size (or the input when image_size is
      0, or its central square when it is small and upscale is False).
    """
    if not image_size:
        return img
    width, height = img.size
    short = min(width, height)
    if short < image_size and not upscale:
        left, top = (width - short) // 2, (height - short) // 2
        return img if width == height else img.crop((left, top, left + short, top + short))
    left = (width - short) / 2.0
    top = (height - short) / 2.0
    box = (left, top, left + short, top + short)
    if short == image_size and width == height:
        return img
    return img.resize((image_size, image_size), Image.BICUBIC, box=box)


def encode_jpeg(img, quality):
    """Encodes an RGB PIL.Image as baseline JPEG bytes (deterministic)."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def sample_grid(img, stride):
    """The pixels of rows and columns 0, stride, 2*stride, ... of an RGB image.

    Equal to np.asarray(img)[::stride, ::stride], without copying the whole
    image out of Pillow first (cheaper: see docs/decisions/preprocessing-rgb-sampling.md): an affine
    nearest-neighbour transform reads exactly those pixels (Pillow samples at
    pixel centres, so the offset 0.5 - stride / 2 lands in the middle of
    pixel stride * x, safe from rounding).

    Args:
      img: an RGB PIL.Image.
      stride: 1 for every pixel, 2 for every 2nd row and column, and so on.

    Returns:
      A uint8 array of shape (ceil(H / stride), ceil(W / stride), 3).
    """
    if stride == 1:
        return np.asarray(img, dtype=np.uint8)
    width, height = img.size
    offset = 0.5 - stride / 2.0
    size = (-(-width // stride), -(-height // stride))
    grid = img.transform(size, Image.AFFINE, (stride, 0, offset, 0, stride, offset), Image.NEAREST)
    return np.asarray(grid, dtype=np.uint8)


def process_image(
    data, image_size, quality=DEFAULT_JPEG_QUALITY, max_pixels=DEFAULT_MAX_PIXELS, sample_stride=1, upscale=True
):
    """Turns the bytes of any image file into a stored RGB JPEG.

    Args:
      data: the file's bytes.
      image_size: shorter side resized to this and centre-cropped square; 0 or
        None keeps the original size. Whenever the stored pixels are the
        decoded file's own (no resize, no crop) and the file is an RGB JPEG,
        its original bytes are kept, so nothing is lost to re-encoding.
      quality: JPEG quality of re-encoded images.
      max_pixels: images with more pixels are rejected before decoding.
      sample_stride: which of the encoded pixels to return (for the RGB
        statistics): 1 for all, s for rows and columns 0, s, 2s, ..., 0 for
        none (pixels is then None).
      upscale: False stores images smaller than `image_size` at their own
        size (see resize_and_crop).

    Returns:
      (jpeg_bytes, height, width, pixels) where pixels is the HxWx3 uint8 array
      that was encoded, or with sample_stride s its [::s, ::s] grid.

    Raises:
      ImageRejected: the bytes cannot become an example.
    """
    img = _open(data, max_pixels)
    source_format, source_size = img.format, img.size
    try:
        _draft(img, image_size)
        img.load()
    except ImageRejected:
        raise
    except Exception as err:  # Truncated or corrupt data surfaces only at load().
        raise ImageRejected("cannot decode (%s: %s)" % (type(err).__name__, err)) from err
    source_mode = img.mode
    try:
        rgb = to_rgb(img)
        out = resize_and_crop(rgb, image_size, upscale)
    except Exception as err:
        raise ImageRejected("cannot convert %s image (%s)" % (source_mode, err)) from err
    pixels = sample_grid(out, sample_stride) if sample_stride else None
    # `out is img`: no conversion, resize or crop; the size check rules out a draft-mode decode.
    if out is img and out.size == source_size and source_format == "JPEG" and source_mode == "RGB":
        encoded = data
    else:
        encoded = encode_jpeg(out, quality)
    width, height = out.size
    return encoded, height, width, pixels
