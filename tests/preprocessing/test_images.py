"""preprocessing.images: decode, repair, resize, re-encode; and the job's stored sizes."""
import io

import numpy as np
import pytest
from PIL import Image

from preprocessing import images, schema
from tests.helpers import image_folders as fx


@pytest.mark.parametrize("mode", fx.MODES)
def test_every_mode_becomes_8bit_rgb_of_the_requested_size(mode):
    rng = np.random.default_rng(0)
    img = fx.noise_image(rng, mode, 90, 60)
    data = fx.encode(img)  # PNG or JPEG bytes; the job never looks at a file name
    encoded, height, width, pixels = images.process_image(data, 48)
    assert (height, width) == (48, 48) and pixels.shape == (48, 48, 3) and pixels.dtype == np.uint8
    stored = Image.open(io.BytesIO(encoded))
    assert stored.format == "JPEG" and stored.mode == "RGB" and stored.size == (48, 48)


def test_sixteen_bit_is_scaled_not_clipped():
    arr = np.array([[0, 32768, 65535, 65535]], dtype=np.uint16)
    rgb = np.asarray(images.to_rgb(Image.fromarray(arr)))
    np.testing.assert_array_equal(rgb[0, :, 0], [0, 128, 255, 255])
    assert (rgb[..., 0] == rgb[..., 2]).all()


def test_transparent_pixels_go_on_white_and_cmyk_keeps_its_colour():
    rgba = Image.fromarray(np.array([[[255, 0, 0, 0], [0, 0, 255, 255]]], dtype=np.uint8), "RGBA")
    np.testing.assert_array_equal(np.asarray(images.to_rgb(rgba)), [[[255, 255, 255], [0, 0, 255]]])
    red = Image.new("RGB", (64, 64), (200, 30, 30)).convert("CMYK")
    buf = io.BytesIO()
    red.save(buf, format="JPEG", quality=95)
    _, _, _, pixels = images.process_image(buf.getvalue(), 32)
    np.testing.assert_allclose(pixels.reshape(-1, 3).mean(axis=0), (200, 30, 30), atol=6)


def test_resize_keeps_the_centre_square_and_draft_decodes_large_jpegs_cheaply():
    # Left third red, middle third green, right third blue: the centre crop of
    # a 3:1 image is the green part only.
    arr = np.zeros((300, 900, 3), np.uint8)
    arr[:, :300, 0] = arr[:, 300:600, 1] = arr[:, 600:, 2] = 255
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95)
    img = images._open(buf.getvalue(), images.DEFAULT_MAX_PIXELS)
    images._draft(img, 64)
    assert img.size == (900 // 4, 300 // 4)  # DCT-domain 1/4 scale, still >= 64 on the short side
    _, _, _, pixels = images.process_image(buf.getvalue(), 64)
    assert pixels[8:-8, 8:-8, 1].min() > 230 and pixels[8:-8, 8:-8, [0, 2]].max() < 25


@pytest.mark.parametrize("stride", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize("size", [(256, 256), (255, 257), (41, 37), (3, 300), (1, 1)])
def test_sample_grid_is_exactly_numpys_strided_slice(stride, size):
    rng = np.random.default_rng(stride)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    grid = images.sample_grid(Image.fromarray(arr, "RGB"), stride)
    np.testing.assert_array_equal(grid, arr[::stride, ::stride])  # same shape, same pixels


def test_process_image_returns_the_sampled_grid_of_what_it_encoded():
    data = fx.encode(fx.noise_image(np.random.default_rng(3), "RGB", 90, 70), "JPEG")
    encoded, height, width, full = images.process_image(data, 48)
    for stride in (2, 4):
        again, h, w, grid = images.process_image(data, 48, sample_stride=stride)
        assert (again, h, w) == (encoded, height, width)
        np.testing.assert_array_equal(grid, full[::stride, ::stride])
    assert images.process_image(data, 48, sample_stride=0)[1:] == (48, 48, None)


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty file"),
        (b"GIF89a garbage", "not an image"),
        (b"plain text\n" * 10, "not an image"),
    ],
)
def test_bad_bytes_are_rejected_with_a_reason(data, reason):
    with pytest.raises(images.ImageRejected) as err:
        images.process_image(data, 32)
    assert reason in err.value.reason


def test_decompression_bomb_is_rejected_before_decoding():
    buf = io.BytesIO()
    Image.new("1", (10000, 9000)).save(buf, format="PNG")
    with pytest.raises(images.ImageRejected) as err:
        images.process_image(buf.getvalue(), 32)
    assert err.value.reason == "decompression bomb: 10000x9000 = 90000000 pixels, limit %d" % images.DEFAULT_MAX_PIXELS


def test_keep_size_stores_original_bytes_of_rgb_jpegs(clean, tmp_path):
    meta = fx.run_job(
        tmp_path / "out", "--train_dir", clean["train_dir"], "--train_shards", 1, "--keep_size", "--stats_stride", 1
    )
    assert meta["image_size"] is None
    assert meta["rgb"]["sampling"].startswith("every pixel")
    rows = fx.read_records(tmp_path / "out", schema.TRAIN)["train-00000-of-00001"]
    assert len(rows) == 15 and meta["num_classes"] == 3  # classes = sorted train folders
    for row in rows:
        source = (clean["train_dir"] / row[schema.SYNSET] / row[schema.FILENAME]).read_bytes()
        assert row["pixels"].shape == (row[schema.HEIGHT], row[schema.WIDTH], 3)
        if row[schema.FILENAME].endswith(("_0.JPEG", "_3.JPEG")):  # the RGB ones
            assert row[schema.ENCODED] == source
    assert meta["rgb"]["pixels"] == sum(int(r[schema.HEIGHT] * r[schema.WIDTH]) for r in rows)


def test_small_images_are_upscaled_by_default_and_kept_at_their_own_size_on_request():
    rng = np.random.default_rng(7)
    arr = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)  # 40 wide, 30 high: under 64
    data = fx.encode(Image.fromarray(arr, "RGB"), "PNG")
    _, height, width, _ = images.process_image(data, 64)
    assert (height, width) == (64, 64)  # bicubic upscale, the default
    encoded, height, width, pixels = images.process_image(data, 64, upscale=False)
    assert (height, width) == (30, 30)
    np.testing.assert_array_equal(pixels, arr[:, 5:35])  # the central square, not resampled
    big = fx.encode(Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8), "RGB"), "PNG")
    assert images.process_image(big, 64, upscale=False)[1:3] == (64, 64)  # large images are resized as always
    # An RGB JPEG already at the stored size keeps its own bytes (no second JPEG loss).
    square = fx.encode(fx.noise_image(rng, "RGB", 64, 64), "JPEG")
    assert images.process_image(square, 64)[0] == square
    assert images.process_image(square, 256, upscale=False)[0] == square


def test_keep_small_stores_tiny_imagenet_at_64_and_says_so(tmp_path):
    tiny = fx.make_tiny_imagenet(tmp_path / "in", per_class=2, val_count=3)
    flags = ["--train_dir", tiny["train_dir"], "--val_dir", tiny["val_dir"], "--train_shards", 1, "--val_shards", 1]
    kept = fx.run_job(tmp_path / "kept", *flags, "--keep_small")
    assert kept["kept_small"] == {"train": 6, "validation": 3}
    assert kept["image_size"] is None  # not every stored image is 256: no such promise to the trainer
    for split in schema.SPLITS:
        for row in [r for rows in fx.read_records(tmp_path / "kept", split).values() for r in rows]:
            assert row["pixels"].shape == (64, 64, 3)
            if split == schema.VALIDATION:  # RGB JPEGs: stored as downloaded
                assert row[schema.ENCODED] == (tiny["val_dir"] / "images" / row[schema.FILENAME]).read_bytes()
    upscaled = fx.run_job(tmp_path / "upscaled", *flags)
    assert upscaled["kept_small"] == {"train": 0, "validation": 0} and upscaled["image_size"] == 256
    rows = [r for rows in fx.read_records(tmp_path / "upscaled", schema.TRAIN).values() for r in rows]
    assert {r["pixels"].shape for r in rows} == {(256, 256, 3)}
