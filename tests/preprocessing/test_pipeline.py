"""preprocessing.pipeline end to end: every record read back, every input accounted for.

Every test builds its own inputs (tests/helpers/image_folders.py), runs the
whole Beam job in-process on the FnApiRunner, and reads every record back with
tf.data and the shared schema.
"""
import json
from pathlib import Path

import numpy as np

from preprocessing import images, schema, shards
from tests.helpers import image_folders as fx


def test_every_record_reads_back_with_labels_sizes_and_counts(messy, capsys):
    meta = schema.load_metadata(str(messy["out"]))
    assert meta == messy["meta"]
    assert meta["format_version"] == 1 and meta["label_offset"] == 0
    assert meta["synsets"] == fx.SYNSETS and meta["num_classes"] == 5
    assert meta["class_names"] == [fx.NAMES[s] for s in fx.SYNSETS]
    assert meta["image_size"] == 40
    assert meta["shards"] == {"train": 3, "validation": 2}
    for split in schema.SPLITS:
        records = fx.read_records(messy["out"], split)
        assert sorted(records) == [schema.shard_name(split, i, meta["shards"][split]) for i in range(meta["shards"][split])]
        rows = [row for shard in records.values() for row in shard]
        expected = messy["written"][split]
        assert sorted(row[schema.FILENAME] for row in rows) == sorted(expected)
        for row in rows:
            synset = expected[row[schema.FILENAME]]
            assert row[schema.SYNSET] == synset
            assert row[schema.LABEL] == fx.SYNSETS.index(synset)  # sorted order, not devkit order
            assert row[schema.TEXT] == fx.NAMES[synset]
            assert (row[schema.HEIGHT], row[schema.WIDTH], row[schema.CHANNELS]) == (40, 40, 3)
            assert row["pixels"].shape == (40, 40, 3) and row["pixels"].dtype == np.uint8
            assert row[schema.FORMAT] == "JPEG" and row[schema.COLORSPACE] == "RGB"
        assert meta["counts"][split] == len(expected)
        assert meta["rejected"][split] == len(messy["rejected"][split])
        assert meta["skipped"][split] == len(messy["skipped"][split])
        # Sidecar files are inputs too, skipped: inputs = written + rejected + skipped.
        assert meta["inputs"][split] == meta["counts"][split] + meta["rejected"][split] + meta["skipped"][split]
    # Classes are mixed within every training shard.
    for rows in fx.read_records(messy["out"], schema.TRAIN).values():
        assert len({row[schema.LABEL] for row in rows}) >= 2


def test_every_bad_input_is_listed_with_its_reason(messy):
    listed = fx.read_rejects(messy["out"])
    found = {(Path(path.split("!")[-1]).name, split): reason for path, split, reason in listed}
    expected = {(name, split): reason for split, items in messy["rejected"].items() for name, reason in items.items()}
    assert sorted(found) == sorted(expected)
    for key, fragment in expected.items():
        assert fragment in found[key], (key, found[key])
    assert len(listed) == len(expected)  # nothing listed twice
    skipped = {(Path(path).name, split): reason for path, split, reason in fx.read_skipped(messy["out"])}
    expected = {(name, split): reason for split, items in messy["skipped"].items() for name, reason in items.items()}
    assert sorted(skipped) == sorted(expected)
    for key, fragment in expected.items():
        assert fragment in skipped[key], (key, skipped[key])
    assert messy["meta"]["skipped_file"] == "skipped.tsv"
    unmatched = (messy["out"] / shards.UNMATCHED_LABELS_FILE).read_text().split()
    assert unmatched == messy["unmatched"]
    assert messy["meta"]["labels_without_images"] == {"validation": 3}


def test_pca_statistics_equal_numpy_on_the_same_pixels(messy):
    stride = messy["meta"]["options"]["stats_stride"]
    assert stride == 4  # the default: every 4th row and column
    pixels = []
    for name, synset in messy["written"][schema.TRAIN].items():
        data = (messy["train_dir"] / synset / name).read_bytes()
        pixels.append(images.process_image(data, 40)[3][::stride, ::stride].reshape(-1, 3))
    x = np.concatenate(pixels).astype(np.float64) / 255.0
    cov = np.cov(x, rowvar=False, bias=True)
    values, vectors = np.linalg.eigh(cov)
    rgb = messy["meta"]["rgb"]
    assert rgb["pixel_scale"] == "[0, 1]" and rgb["pixels"] == x.shape[0] == 18 * 10 * 10
    assert rgb["sampling"].startswith("every 4th row and column (1/16 of the pixels, a regular grid) of every training image")
    np.testing.assert_allclose(rgb["mean"], x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(rgb["std"], x.std(axis=0), rtol=1e-10)
    np.testing.assert_allclose(rgb["covariance"], cov, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(rgb["eigenvalues"], values[::-1], rtol=1e-9)
    for i, vector in enumerate(np.asarray(rgb["eigenvectors"])):
        # eigenvectors[i] belongs to eigenvalues[i]: cov v = lambda v.
        np.testing.assert_allclose(cov @ vector, rgb["eigenvalues"][i] * vector, atol=1e-12)
        assert abs(abs(vector @ vectors[:, 2 - i]) - 1.0) < 1e-9
    # The stored JPEGs keep the mean (their chroma subsampling smears the
    # fixture's pixel noise, so the covariance of decoded noise differs).
    stored = np.concatenate(
        [row["pixels"].reshape(-1, 3) for rows in fx.read_records(messy["out"], schema.TRAIN).values() for row in rows]
    ) / 255.0
    np.testing.assert_allclose(stored.mean(axis=0), x.mean(axis=0), atol=0.01)


def test_rerun_is_byte_identical_with_worker_processes(clean, tmp_path):
    out = tmp_path / "again"
    # Two worker processes (the default for large inputs) split the shards
    # between them; the bytes must not depend on who wrote what.
    processes = ["--direct_running_mode", "multi_processing", "--direct_num_workers", "2"]
    meta = fx.run_job(
        out, *fx.imagenet_flags(clean), "--train_shards", 3, "--val_shards", 2, "--image_size", 48, runner=processes
    )
    assert fx.shard_bytes(out) == fx.shard_bytes(clean["out"])
    a = json.loads((out / "metadata.json").read_text())
    b = json.loads((clean["out"] / "metadata.json").read_text())
    a["options"].pop("output_dir"), b["options"].pop("output_dir")
    assert a == b
    assert meta["options"]["image_size"] == 48


def test_validation_only_job_has_no_rgb_statistics(clean, tmp_path):
    # No training images: no RGB moments at all (metadata "rgb": null), not zeros.
    meta = fx.run_job(tmp_path / "out", "--val_dir", clean["val_dir"], "--val_labels", clean["gt"],
                "--devkit_classes", clean["devkit"], "--synsets", clean["synsets"], "--val_shards", 2, "--image_size", 32)
    assert meta["rgb"] is None
    assert meta["counts"] == {"train": 0, "validation": 6} and meta["shards"] == {"train": 0, "validation": 2}
    assert meta["synsets"] == fx.SYNSETS and meta["labels_without_images"] == {"validation": 0}
    rows = [r for rows in fx.read_records(tmp_path / "out", schema.VALIDATION).values() for r in rows]
    assert sorted(r[schema.FILENAME] for r in rows) == sorted(clean["expected"][schema.VALIDATION])
    assert not list((tmp_path / "out").glob("train-*"))
