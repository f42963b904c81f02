"""Unit tests of the preprocessing modules and of the entry point's user errors."""
import io
import subprocess
import sys
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that
from PIL import Image

from preprocessing import build_tfrecords, demo, fields, images, records, schema, shards, sources, stats
from tests.helpers import image_folders as fx

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- images


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


# ---------------------------------------------------------------- stats


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


# ---------------------------------------------------------------- records

EXAMPLE_CASES = [
    # (encoded, label, height, width, synset, text, filename)
    (bytes(range(256)) * 300, 3, 256, 256, "n01440764", "tench, Tinca tinca", "n01440764_10026.JPEG"),  # 3-byte lengths
    (b"", 0, 0, 0, "", "", ""),  # every field at its default value
    (b"x" * 127, 999, 127, 128, b"n0", "caf\u00e9, \u00fcber", b"f.JPEG"),  # 1- and 2-byte varints, UTF-8, bytes
    (b"y" * 128, -1, 16383, 2**40, "a", "b", "c"),  # a negative int64 takes ten bytes
]


@pytest.mark.parametrize("case", EXAMPLE_CASES)
def test_hand_made_example_bytes_equal_tensorflows_and_parse_back(case):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    encoded, label, height, width, synset, text, filename = case
    made = records.example_bytes(encoded, label, height, width, synset=synset, text=text, filename=filename)
    reference = schema.serialize_example(
        schema.make_example(encoded, label, height, width, synset=synset, text=text, filename=filename)
    )
    assert made == reference  # byte for byte: shards stay identical to the TensorFlow-made ones
    parsed = {k: v.numpy() for k, v in tf.io.parse_single_example(made, schema.FEATURE_SPEC).items()}
    as_bytes = lambda v: v.encode("utf-8") if isinstance(v, str) else v  # noqa: E731
    assert parsed == {
        schema.ENCODED: encoded, schema.FORMAT: b"JPEG", schema.HEIGHT: height, schema.WIDTH: width,
        schema.CHANNELS: 3, schema.COLORSPACE: b"RGB", schema.LABEL: label, schema.SYNSET: as_bytes(synset),
        schema.TEXT: as_bytes(text), schema.FILENAME: as_bytes(filename),
    }


def test_record_framing_equals_tfrecordwriter(tmp_path):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    payloads = [records.example_bytes(*case[:4]) for case in EXAMPLE_CASES] + [b"", b"z" * 70000]
    with tf.io.TFRecordWriter(str(tmp_path / "tf.tfrecord")) as writer:
        for payload in payloads:
            writer.write(payload)
    assert b"".join(shards.frame_record(p) for p in payloads) == (tmp_path / "tf.tfrecord").read_bytes()


def test_schema_reexports_the_tensorflow_free_fields():
    public = [name for name in vars(fields) if not name.startswith("_")]
    assert {"ENCODED", "LABEL", "TRAIN", "SPLITS", "METADATA_FILE", "shard_name", "IMAGENET_EIGENVECTORS"} <= set(public)
    for name in public:
        assert getattr(schema, name) is getattr(fields, name), name


def test_the_job_runs_without_importing_tensorflow(tmp_path):
    """Worker processes import the job's modules; TensorFlow would add seconds to each one's start-up."""
    train = tmp_path / "in" / "n01440764"
    train.mkdir(parents=True)
    (train / "a.JPEG").write_bytes(fx.encode(fx.noise_image(np.random.default_rng(0), "RGB", 48, 40), "JPEG"))
    code = (
        "import sys\n"
        "from preprocessing import build_tfrecords\n"
        "meta = build_tfrecords.run(['--train_dir', sys.argv[1], '--output_dir', sys.argv[2], '--train_shards', '1',"
        " '--image_size', '32', '--direct_running_mode', 'in_memory', '--direct_num_workers', '1'])\n"
        "assert meta['counts']['train'] == 1, meta\n"
        "loaded = sorted(m for m in sys.modules if m == 'tensorflow' or m.startswith('tensorflow.'))\n"
        "print('tensorflow modules:', len(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "in"), str(tmp_path / "out")],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "tensorflow modules: 0" in result.stdout
    assert (tmp_path / "out" / "train-00000-of-00001").stat().st_size > 0


# ---------------------------------------------------------------- label files


def test_devkit_ground_truth_maps_through_map_clsloc_not_sorted_order():
    ids, names = sources.parse_devkit_classes("n02119789 1 kit_fox\nn01440764 2 tench\nn01751748 3 sea_snake")
    labels = sources.parse_val_labels("3\n1\n2\n", ids)
    assert labels == {
        "ILSVRC2012_val_00000001": "n01751748",
        "ILSVRC2012_val_00000002": "n02119789",
        "ILSVRC2012_val_00000003": "n01440764",
    }
    assert names["n02119789"] == "kit fox"


def test_other_label_formats():
    assert sources.parse_val_labels("n01\nn02\n") == {"ILSVRC2012_val_00000001": "n01", "ILSVRC2012_val_00000002": "n02"}
    csv_text = "ImageId,PredictionString\nILSVRC2012_val_00008726,n02119789 255 142 454 329 n02119789 44 21 322 295\n"
    assert sources.parse_val_labels(csv_text) == {"ILSVRC2012_val_00008726": "n02119789"}
    assert sources.parse_val_labels("a.JPEG n01\nb.png n02\n") == {"a": "n01", "b": "n02"}


@pytest.mark.parametrize(
    "text, ids, message",
    [
        ("490\n", None, "pass --devkit_classes"),
        ("7\n", {1: "n01"}, "class ID 7 is not in --devkit_classes"),
        ("", None, "is empty"),
        ("a b c\n", None, "unknown label format"),
    ],
)
def test_bad_label_files_are_user_errors(text, ids, message):
    with pytest.raises(sources.UserError) as err:
        sources.parse_val_labels(text, ids)
    assert message in str(err.value)


def test_class_lists_sort_and_name():
    synsets, names = sources.parse_class_list("n02 two, 2\nn01 one\n")
    assert synsets == ["n01", "n02"] and names == {"n01": "one", "n02": "two, 2"}
    synsets, names = sources.parse_class_list("n02119789 1 kit_fox\nn01440764 2 tench")  # map_clsloc.txt
    assert synsets == ["n01440764", "n02119789"] and names["n02119789"] == "kit fox"
    with pytest.raises(sources.UserError, match="twice"):
        sources.parse_class_list("n01\nn01\n")


# ---------------------------------------------------------------- demo


def test_demo_set_is_deterministic_and_varied(tmp_path):
    a = demo.generate(tmp_path / "a", train_per_class=6, val_per_class=2)
    demo.generate(tmp_path / "b", train_per_class=6, val_per_class=2)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 6 * 10 + 2 * 10 + 2
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    sizes = set()
    for synset, _ in demo.CLASSES:
        for f in sorted((Path(a["train_dir"]) / synset).iterdir()):
            sizes.add(Image.open(f).size)
    assert len(sizes) > 30 and all(demo.MIN_SIDE <= min(s) and max(s) <= demo.MAX_SIDE for s in sizes)
    labels = Path(a["val_labels"]).read_text().split()
    assert sorted(labels) == sorted([s for s, _ in demo.CLASSES] * 2)


def test_demo_regenerated_smaller_keeps_no_stale_image(tmp_path):
    root = tmp_path / "source"
    demo.generate(root, train_per_class=4, val_per_class=3)
    (root / "mine.txt").write_text("not the generator's")
    small = demo.generate(root, train_per_class=2, val_per_class=1)
    train = sorted(p.name for p in Path(small["train_dir"]).rglob("*") if p.is_file())
    assert len(train) == 2 * 10 and all(name.endswith(("_0.JPEG", "_1.JPEG")) for name in train)
    assert len(list(Path(small["val_dir"]).iterdir())) == 1 * 10
    assert len(Path(small["val_labels"]).read_text().split()) == 10
    assert (root / "mine.txt").exists()


def test_demo_classes_are_not_separable_by_colour():
    # Nearest class centroid of each image's mean and std colour: if colour
    # told the classes apart this would beat chance (10%) by far.
    features, labels = [], []
    for c in range(len(demo.CLASSES)):
        for i in range(20):
            a = np.asarray(demo.draw_image(c, np.random.default_rng([0, 0, c, i])), np.float64)
            features.append(np.r_[a.mean(axis=(0, 1)), a.std(axis=(0, 1))])
            labels.append(c)
    x, y = np.asarray(features), np.asarray(labels)
    first = np.arange(len(y)) % 20 < 10
    centroids = np.array([x[first & (y == c)].mean(axis=0) for c in range(10)])
    guess = ((x[~first][:, None] - centroids[None]) ** 2).sum(-1).argmin(axis=1)
    assert (guess == y[~first]).mean() < 0.25


# ---------------------------------------------------------------- user errors


def _error_line(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        build_tfrecords.run(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("build_tfrecords: error: ")
    return err[0]


@pytest.fixture()
def small_set(tmp_path):
    return fx.make_clean_set(tmp_path / "in", per_class=1, val_count=2)


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "--output_dir is required"),
        (["--output_dir", "{out}"], "nothing to do"),
        (["--output_dir", "{out}", "--train_dir", "{missing}"], "--train_dir: not a folder or .tar"),
        (["--output_dir", "{out}", "--train_dir", "{missing}.tar"], "--train_dir: tar not found"),
        (["--output_dir", "{out}", "--train_dir", "{in}/x.tar.gz"], "compressed tars"),
        (["--output_dir", "{out}", "--train_dir", "{in}/val"], "must hold class folders"),
        (["--output_dir", "{out}", "--val_dir", "{in}/val", "--synsets", "{in}/meta/LOC_synset_mapping.txt"], "pass --val_labels"),
        (["--output_dir", "{out}", "--train_dir", "{in}/train", "--val_dir", "{in}/val",
          "--val_labels", "{in}/meta/ILSVRC2012_validation_ground_truth.txt"], "pass --devkit_classes"),
        (["--output_dir", "{out}", "--train_dir", "{in}/train", "--synsets", "{missing}"], "--synsets: file not found"),
        (["--output_dir", "{out}", "--train_dir", "{in}/train", "--image_size", "-1"], "--image_size must be >= 0"),
        (["--output_dir", "{out}", "--train_dir", "{in}/train", "--image_size", "big"], "invalid int value: 'big'"),
        (["--output_dir", "{out}", "--train_dir", "{in}/train", "--train_shards", "0"], "--train_shards must be >= 1"),
        (["--output_dir", "{out}", "--train_dir", "{in}/train", "--stats_stride", "0"], "--stats_stride must be >= 1"),
        (["--output_dir", "{out}", "--train_dir", "{in}/train", "--jpeg_quality", "101"], "--jpeg_quality must be in 1..100"),
        (["--output_dir", "{out}", "--train_dir", "{in}/train", "--max_reject_fraction", "2"], "--max_reject_fraction must be in [0, 1]"),
        (["--output_dir", "{out}", "--trian_dir", "{in}/train"], "unknown flag(s): --trian_dir"),
        # A bad value of a Beam flag: one line, not Beam's usage of its ~150 flags first.
        (["--output_dir", "{out}", "--train_dir", "{in}/train", "--direct_num_workers", "abc"],
         "bad Beam flag: argument --direct_num_workers: invalid int value: 'abc'"),
        (["--output_dir", "{out}", "--train_dir", "{in}/train", "--direct_running_mode", "bogus"],
         "bad Beam flag: argument --direct_running_mode: invalid choice: 'bogus'"),
        (["--output_dir", "{out}", "--demo", "--train_dir", "{in}/train"], "--demo generates its own inputs"),
        (["--output_dir", "gs://bucket/demo", "--demo"], "give a local --output_dir"),
        (["--output_dir", "{in}/train", "--train_dir", "{in}/train"], "is not empty"),
    ],
)
def test_user_errors_print_one_line_and_exit_2(small_set, tmp_path, capsys, extra, message):
    fill = {"out": str(tmp_path / "out"), "missing": str(tmp_path / "missing"), "in": str(tmp_path / "in")}
    argv = [a.format(**fill) for a in extra]
    previous = _previous_output(tmp_path / "out")
    if any("{out}" in a for a in extra):
        argv.append("--overwrite")  # a user mistake must not cost the previous output even so
    line = _error_line(capsys, argv)
    assert message in line, line
    assert _files(tmp_path / "out") == previous


def _previous_output(out):
    """A finished earlier job's output (metadata.json, a shard) plus a foreign file."""
    out.mkdir()
    (out / "metadata.json").write_text('{"counts": {"train": 1, "validation": 0}}')
    (out / "train-00000-of-00001").write_bytes(b"old shard")
    (out / "notes.txt").write_text("not the job's")
    return _files(out)


def _files(folder):
    return {p.name: p.read_bytes() for p in Path(folder).iterdir()}


@pytest.mark.parametrize("extra", [["--train_dir", "{missing}"], ["--demo", "--demo_seed", "x"], ["--demo", "--jpeg_quality", "0"]])
def test_overwrite_deletes_nothing_when_the_flags_or_inputs_are_wrong(tmp_path, capsys, extra):
    out = tmp_path / "out"
    previous = _previous_output(out)
    argv = ["--output_dir", str(out), "--overwrite"] + [a.format(missing=tmp_path / "missing") for a in extra]
    _error_line(capsys, argv)
    assert _files(out) == previous


def test_command_line_exit_code_and_single_error_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "preprocessing.build_tfrecords", "--output_dir", str(tmp_path), "--train_dir", str(tmp_path / "nope")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    lines = [l for l in proc.stderr.splitlines() if l.startswith("build_tfrecords:")]
    assert lines == ["build_tfrecords: error: --train_dir: not a folder or .tar. Received: %s" % (tmp_path / "nope")]
    assert "Traceback" not in proc.stderr


def test_default_runner_is_local_and_offline_and_scales_with_the_input(tmp_path):
    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

    def chosen(beam_args, estimate):
        options = build_tfrecords._beam_options(beam_args, estimate)
        direct = options.view_as(DirectOptions)
        return options.view_as(StandardOptions).runner, direct.direct_running_mode, direct.direct_num_workers

    assert chosen([], 1600) == ("FnApiRunner", "in_memory", 1)
    assert chosen([], build_tfrecords.PROCESSES_FROM_IMAGES) == ("FnApiRunner", "multi_processing", 0)
    assert chosen([], None) == ("FnApiRunner", "multi_processing", 0)  # gs:// input: assume large
    assert chosen(["--direct_num_workers", "3"], 10) == ("FnApiRunner", "in_memory", 3)
    assert chosen(["--runner", "DataflowRunner"], 10)[0] == "DataflowRunner"
    data = fx.make_clean_set(tmp_path / "in", per_class=2, val_count=3)
    assert sources.estimate_count(str(data["train_dir"]), "classes") == 6
    assert sources.estimate_count(str(data["val_dir"]), "flat") == 3
    assert sources.estimate_count("gs://bucket/train", "classes") is None
