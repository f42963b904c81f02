"""End-to-end tests of `python -m preprocessing.build_tfrecords` through run([...]).

Every test builds its own inputs (tests/helpers/image_folders.py), runs the
whole Beam job in-process on the FnApiRunner, and reads every record back with
tf.data and the shared schema.
"""
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from preprocessing import build_tfrecords, demo, images, schema, shards
from tests.helpers import image_folders as fx

# One in-process worker: the fastest way to run the real pipeline in a test.
# test_rerun_is_byte_identical_with_worker_processes covers worker processes
# (the default for large inputs).
IN_PROCESS = ["--direct_running_mode", "in_memory", "--direct_num_workers", "1"]


def _run(out, *args, runner=IN_PROCESS):
    return build_tfrecords.run([*map(str, args), "--output_dir", str(out), *runner])


def _flags(data, train=None, val=None):
    return [
        "--train_dir", train or data["train_dir"], "--val_dir", val or data["val_dir"],
        "--val_labels", data["gt"], "--devkit_classes", data["devkit"], "--synsets", data["synsets"],
    ]


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    root = tmp_path_factory.mktemp("clean")
    data = fx.make_clean_set(root / "in")
    data["train_tar"], data["val_tar"] = fx.make_tars(data, root / "tars")
    data["out"] = root / "out"
    data["meta"] = _run(data["out"], *_flags(data), "--train_shards", 3, "--val_shards", 2, "--image_size", 48)
    return data


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    root = tmp_path_factory.mktemp("messy")
    data = fx.make_messy_set(root / "in")
    data["out"] = root / "out"
    data["meta"] = _run(
        data["out"], *_flags(data), "--train_shards", 3, "--val_shards", 2, "--image_size", 40,
        "--max_reject_fraction", 0.5,
    )
    return data


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
        assert meta["inputs"][split] == meta["counts"][split] + meta["rejected"][split]
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


def test_tar_layouts_give_the_same_shards_as_folders(clean, tmp_path):
    out = tmp_path / "from-tars"
    meta = _run(out, *_flags(clean, clean["train_tar"], clean["val_tar"]), "--train_shards", 3, "--val_shards", 2, "--image_size", 48)
    assert fx.shard_bytes(out) == fx.shard_bytes(clean["out"])
    assert len(fx.shard_bytes(out)) == 5
    for key in ("counts", "rejected", "inputs", "rgb", "synsets", "shards"):
        assert meta[key] == clean["meta"][key]
    assert meta["counts"] == {"train": 15, "validation": 6}
    assert fx.read_rejects(out) == []
    # The tars were read in place: nothing was extracted next to them.
    assert sorted(p.name for p in clean["train_tar"].parent.iterdir()) == ["ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar"]


def test_odd_and_damaged_tars_are_counted_and_listed(clean, tmp_path):
    train_tar = tmp_path / "train.tar"
    # A loose image at the top of a train tar has no class; a symlink member is
    # not a file; a class tar ("all.tar") whose members are tars, not images,
    # names an unknown class "all".
    with tarfile.open(train_tar, "w", format=tarfile.GNU_FORMAT) as tar:
        tar.add(clean["train_tar"], arcname="all.tar")
        tar.add(clean["val_dir"] / "ILSVRC2012_val_00000001.JPEG", arcname="loose.JPEG")
        link = tarfile.TarInfo("link.JPEG")
        link.type, link.linkname = tarfile.SYMTYPE, "loose.JPEG"
        tar.addfile(link)
    # A val tar cut off inside the data of one of its members (an interrupted
    # download): the members before it are kept, the cut one is rejected.
    whole = clean["val_tar"].read_bytes()
    with tarfile.open(clean["val_tar"]) as tar:
        members = tar.getmembers()
    cut = members[3].offset_data + members[3].size // 2
    val_tar = tmp_path / "val.tar"
    val_tar.write_bytes(whole[:cut])
    meta = _run(
        tmp_path / "out", "--train_dir", train_tar, "--val_dir", val_tar, "--val_labels", clean["gt"],
        "--devkit_classes", clean["devkit"], "--synsets", clean["synsets"], "--train_shards", 2, "--val_shards", 1,
        "--image_size", 32, "--max_reject_fraction", 1.0,
    )
    reasons = {p.split("!")[-1]: r for p, s, r in fx.read_rejects(tmp_path / "out")}
    assert len(reasons) == 7
    assert reasons["loose.JPEG"] == "not in a class folder or class tar"
    assert reasons["link.JPEG"] == "not a regular file in the tar"
    for name in ("n01440764.tar", "n01443537.tar", "n01484850.tar"):
        assert reasons[name] == "class all is not in the class list"
    assert reasons[members[3].name].startswith("unreadable (OSError: tar member cut short")
    # The damage itself is one more listed input: tarfile stops at it.
    assert reasons[str(val_tar)].startswith("corrupt tar (ReadError: unexpected end of data)")
    assert meta["inputs"] == {"train": 5, "validation": 5} and meta["counts"] == {"train": 0, "validation": 3}
    rows = [r for rows in fx.read_records(tmp_path / "out", schema.VALIDATION).values() for r in rows]
    assert sorted(r[schema.FILENAME] for r in rows) == [m.name for m in members[:3]]


def test_rerun_is_byte_identical_with_worker_processes(clean, tmp_path):
    out = tmp_path / "again"
    # Two worker processes (the default for large inputs) split the shards
    # between them; the bytes must not depend on who wrote what.
    processes = ["--direct_running_mode", "multi_processing", "--direct_num_workers", "2"]
    meta = _run(out, *_flags(clean), "--train_shards", 3, "--val_shards", 2, "--image_size", 48, runner=processes)
    assert fx.shard_bytes(out) == fx.shard_bytes(clean["out"])
    a = json.loads((out / "metadata.json").read_text())
    b = json.loads((clean["out"] / "metadata.json").read_text())
    a["options"].pop("output_dir"), b["options"].pop("output_dir")
    assert a == b
    assert meta["options"]["image_size"] == 48


def test_refuses_a_non_empty_output_dir_and_overwrite_removes_stale_shards(clean, tmp_path, capsys):
    out = tmp_path / "out"
    _run(out, *_flags(clean), "--train_shards", 3, "--val_shards", 2, "--image_size", 32)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        _run(out, *_flags(clean), "--train_shards", 2, "--val_shards", 1, "--image_size", 32)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not empty" in err[0] and "--overwrite" in err[0]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    meta = _run(out, *_flags(clean), "--train_shards", 2, "--val_shards", 1, "--image_size", 32, "--overwrite")
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        ["metadata.json", "rejects.tsv", "labels_without_images.txt",
         "train-00000-of-00002", "train-00001-of-00002", "validation-00000-of-00001"]
    )
    assert meta["shards"] == {"train": 2, "validation": 1}


def test_guard_fails_the_job_when_far_too_much_is_rejected(clean, tmp_path, capsys):
    out = tmp_path / "out"
    # Wrong folder: the validation images given as "class folders" of train.
    wrong = tmp_path / "wrong"
    (wrong / "n01440764").mkdir(parents=True)
    for i in range(4):
        (wrong / "n01440764" / ("%d.JPEG" % i)).write_bytes(b"not a picture")
    (wrong / "n01440764" / "ok.JPEG").write_bytes((clean["val_dir"] / "ILSVRC2012_val_00000001.JPEG").read_bytes())
    with pytest.raises(SystemExit) as exit_info:
        _run(out, "--train_dir", wrong, "--train_shards", 1, "--image_size", 32)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "train: rejected 4 of 5 inputs (80.0%), more than --max_reject_fraction 0.1" in err[0]
    assert not (out / "metadata.json").exists()
    assert len(fx.read_rejects(out)) == 4
    # The same input passes with a looser guard.
    meta = _run(tmp_path / "loose", "--train_dir", wrong, "--train_shards", 1, "--image_size", 32, "--max_reject_fraction", 0.9)
    assert meta["counts"]["train"] == 1 and meta["rejected"]["train"] == 4


def test_keep_size_stores_original_bytes_of_rgb_jpegs(clean, tmp_path):
    meta = _run(tmp_path / "out", "--train_dir", clean["train_dir"], "--train_shards", 1, "--keep_size", "--stats_stride", 1)
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


def test_demo_generates_and_converts_a_deterministic_set(tmp_path):
    out = tmp_path / "demo"
    meta = _run(out, "--demo", "--image_size", 64, "--demo_train_per_class", 4, "--demo_val_per_class", 2)
    assert meta["num_classes"] == 10 and meta["counts"] == {"train": 40, "validation": 20}
    assert meta["shards"] == {"train": 8, "validation": 2}
    assert (out / "metadata.json").exists() and (out / "source" / "train").is_dir()
    rows = [r for rows in fx.read_records(out, schema.VALIDATION).values() for r in rows]
    assert sorted(r[schema.LABEL] for r in rows) == sorted(list(range(10)) * 2)
    again = tmp_path / "again"
    _run(again, "--demo", "--image_size", 64, "--demo_train_per_class", 4, "--demo_val_per_class", 2)
    assert fx.shard_bytes(again) == fx.shard_bytes(out)


def test_demo_rebuilt_smaller_with_overwrite_converts_only_the_new_images(tmp_path):
    out = tmp_path / "demo"
    _run(out, "--demo", "--image_size", 32, "--demo_train_per_class", 3, "--demo_val_per_class", 2)
    meta = _run(out, "--demo", "--image_size", 32, "--demo_train_per_class", 1, "--demo_val_per_class", 1, "--overwrite")
    assert meta["counts"] == {"train": 10, "validation": 10} and meta["rejected"] == {"train": 0, "validation": 0}
    assert len([p for p in (out / "source").rglob("*.JPEG")]) == 10 + 10
    rows = [r for rows in fx.read_records(out, schema.TRAIN).values() for r in rows]
    assert sorted(r[schema.FILENAME] for r in rows) == sorted("%s_0.JPEG" % s for s, _ in demo.CLASSES)


@pytest.mark.skipif(not fx.SAMPLE_DIR.is_dir(), reason="real ImageNet sample not present beside the checkout")
def test_real_imagenet_sample_with_devkit_labels_and_quirk_files(tmp_path):
    sample = fx.SAMPLE_DIR
    # Train = the sample's 100 class folders plus the two real-ImageNet quirk
    # files (a CMYK JPEG and a PNG named .JPEG), linked, never copied.
    train = tmp_path / "train"
    for f in sorted(sample.glob("train/*/*")) + sorted(sample.glob("quirks/*/*")):
        (train / f.parent.name).mkdir(parents=True, exist_ok=True)
        (train / f.parent.name / f.name).symlink_to(f)
    # The sample's 200 validation images, plus one more under the name
    # ILSVRC2012_val_00000001.JPEG (not in the sample), whose devkit label is
    # known: ID 490 = n01751748 (sea snake) = sorted index 65.
    val = tmp_path / "val"
    val.mkdir()
    for f in sorted(sample.glob("val/*")):
        (val / f.name).symlink_to(f)
    (val / "ILSVRC2012_val_00000001.JPEG").symlink_to(sorted(sample.glob("val/*"))[0])
    meta = _run(
        tmp_path / "out", "--train_dir", train, "--val_dir", val,
        "--val_labels", sample / "meta" / "ILSVRC2012_validation_ground_truth.txt",
        "--devkit_classes", sample / "meta" / "map_clsloc.txt",
        "--synsets", sample / "meta" / "LOC_synset_mapping.txt",
        "--train_shards", 4, "--val_shards", 2,
    )
    assert meta["num_classes"] == 1000 and meta["synsets"][65] == "n01751748" and meta["class_names"][65] == "sea snake"
    assert meta["counts"] == {"train": 102, "validation": 201} and meta["rejected"] == {"train": 0, "validation": 0}
    assert meta["labels_without_images"] == {"validation": 50000 - 201}
    truth = (sample / "meta" / "imagenet_2012_validation_synset_labels.txt").read_text().split()
    rows_by_name = {r[schema.FILENAME]: r for rows in fx.read_records(tmp_path / "out", schema.VALIDATION).values() for r in rows}
    assert len(rows_by_name) == 201
    first = rows_by_name["ILSVRC2012_val_00000001.JPEG"]
    assert (first[schema.SYNSET], first[schema.LABEL]) == ("n01751748", 65)
    for name, row in rows_by_name.items():
        synset = truth[int(name[15:23]) - 1]
        assert row[schema.SYNSET] == synset and row[schema.LABEL] == meta["synsets"].index(synset)
        assert row["pixels"].shape == (256, 256, 3)
    train_rows = {r[schema.FILENAME]: r for rows in fx.read_records(tmp_path / "out", schema.TRAIN).values() for r in rows}
    for quirk in ("n02105855_2933.JPEG", "n01739381_1309.JPEG"):
        assert train_rows[quirk]["pixels"].shape == (256, 256, 3)
        assert train_rows[quirk][schema.LABEL] == meta["synsets"].index(quirk.split("_")[0])
    # Close to the published full-ImageNet PCA (0.2175, 0.0188, 0.0045).
    rgb = meta["rgb"]
    assert 0.15 < rgb["eigenvalues"][0] < 0.26 and 0.01 < rgb["eigenvalues"][1] < 0.03 and 0.002 < rgb["eigenvalues"][2] < 0.008
    assert np.dot(rgb["eigenvectors"][0], schema.IMAGENET_EIGENVECTORS[0]) > 0.99


def test_imagenette_style_class_folders_for_both_splits(clean, tmp_path):
    # val/ in class folders needs no label file; classes = sorted train folders.
    meta = _run(tmp_path / "out", "--train_dir", clean["train_dir"], "--val_dir", clean["train_dir"],
                "--train_shards", 2, "--val_shards", 2, "--image_size", 32)
    assert meta["synsets"] == fx.TRAIN_CLASSES and meta["counts"] == {"train": 15, "validation": 15}
    rows = [r for rows in fx.read_records(tmp_path / "out", schema.VALIDATION).values() for r in rows]
    for row in rows:
        assert row[schema.SYNSET] == clean["expected"][schema.TRAIN][row[schema.FILENAME]]
        assert row[schema.LABEL] == fx.TRAIN_CLASSES.index(row[schema.SYNSET])


def test_validation_only_job_has_no_rgb_statistics(clean, tmp_path):
    # No training images: no RGB moments at all (metadata "rgb": null), not zeros.
    meta = _run(tmp_path / "out", "--val_dir", clean["val_dir"], "--val_labels", clean["gt"],
                "--devkit_classes", clean["devkit"], "--synsets", clean["synsets"], "--val_shards", 2, "--image_size", 32)
    assert meta["rgb"] is None
    assert meta["counts"] == {"train": 0, "validation": 6} and meta["shards"] == {"train": 0, "validation": 2}
    assert meta["synsets"] == fx.SYNSETS and meta["labels_without_images"] == {"validation": 0}
    rows = [r for rows in fx.read_records(tmp_path / "out", schema.VALIDATION).values() for r in rows]
    assert sorted(r[schema.FILENAME] for r in rows) == sorted(clean["expected"][schema.VALIDATION])
    assert not list((tmp_path / "out").glob("train-*"))
