"""preprocessing.listing: folders and tars walked into inputs, run through the whole job."""
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from preprocessing import listing, schema
from tests.helpers import image_folders as fx

REPO = Path(__file__).resolve().parents[2]


def test_tar_layouts_give_the_same_shards_as_folders(clean, tmp_path):
    out = tmp_path / "from-tars"
    flags = fx.imagenet_flags(clean, clean["train_tar"], clean["val_tar"])
    meta = fx.run_job(out, *flags, "--train_shards", 3, "--val_shards", 2, "--image_size", 48)
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
    # not a file; a class tar ("all.tar") whose members are tars is listed, but
    # its members are not images by name: they are skipped, never decoded.
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
    meta = fx.run_job(
        tmp_path / "out", "--train_dir", train_tar, "--val_dir", val_tar, "--val_labels", clean["gt"],
        "--devkit_classes", clean["devkit"], "--synsets", clean["synsets"], "--train_shards", 2, "--val_shards", 1,
        "--image_size", 32, "--max_reject_fraction", 1.0,
    )
    reasons = {p.split("!")[-1]: r for p, s, r in fx.read_rejects(tmp_path / "out")}
    assert len(reasons) == 4
    skipped = {p.split("!")[-1]: r for p, s, r in fx.read_skipped(tmp_path / "out")}
    assert len(skipped) == 3
    assert reasons["loose.JPEG"] == "not in a class folder or class tar"
    assert reasons["link.JPEG"] == "not a regular file in the tar"
    for name in ("n01440764.tar", "n01443537.tar", "n01484850.tar"):
        assert skipped[name] == "not an image file name (extension .tar)"
    assert reasons[members[3].name].startswith("unreadable (OSError: tar member cut short")
    # The damage itself is one more listed input: tarfile stops at it.
    assert reasons[str(val_tar)].startswith("corrupt tar (ReadError: unexpected end of data)")
    assert meta["inputs"] == {"train": 5, "validation": 5} and meta["counts"] == {"train": 0, "validation": 3}
    rows = [r for rows in fx.read_records(tmp_path / "out", schema.VALIDATION).values() for r in rows]
    assert sorted(r[schema.FILENAME] for r in rows) == [m.name for m in members[:3]]


def test_imagenette_style_class_folders_for_both_splits(clean, tmp_path):
    # val/ in class folders needs no label file; classes = sorted train folders.
    meta = fx.run_job(tmp_path / "out", "--train_dir", clean["train_dir"], "--val_dir", clean["train_dir"],
                      "--train_shards", 2, "--val_shards", 2, "--image_size", 32)
    assert meta["synsets"] == fx.TRAIN_CLASSES and meta["counts"] == {"train": 15, "validation": 15}
    rows = [r for rows in fx.read_records(tmp_path / "out", schema.VALIDATION).values() for r in rows]
    for row in rows:
        assert row[schema.SYNSET] == clean["expected"][schema.TRAIN][row[schema.FILENAME]]
        assert row[schema.LABEL] == fx.TRAIN_CLASSES.index(row[schema.SYNSET])


def _check_tiny_output(tiny, out, meta, skipped_prefix):
    """Every image written with its label and class name, every sidecar skipped, nothing rejected."""
    wnids = sorted(fx.TINY_CLASSES)
    assert meta["synsets"] == wnids and meta["class_names"] == [fx.TINY_CLASSES[w] for w in wnids]
    for split in schema.SPLITS:
        rows = [r for rows in fx.read_records(out, split).values() for r in rows]
        expected = tiny["expected"][split]
        assert sorted(r[schema.FILENAME] for r in rows) == sorted(expected)
        for row in rows:
            wnid = expected[row[schema.FILENAME]]
            assert row[schema.SYNSET] == wnid and row[schema.LABEL] == wnids.index(wnid)
            assert row[schema.TEXT] == fx.TINY_CLASSES[wnid]  # "king penguin", not n02056570
            assert row["pixels"].shape == (64, 64, 3)
        assert meta["counts"][split] == len(expected) and meta["rejected"][split] == 0
        assert meta["skipped"][split] == len(tiny["skipped"][split])
        assert meta["inputs"][split] == meta["counts"][split] + meta["rejected"][split] + meta["skipped"][split]
    assert fx.read_rejects(out) == []
    listed = {}
    for path, split, reason in fx.read_skipped(out):
        inside = path.split("!", 1)[1] if "!" in path else str(Path(path).relative_to(tiny["root"]))
        listed[(skipped_prefix.get(split, "") + inside, split)] = reason
    expected = {(path, split): reason for split, items in tiny["skipped"].items() for path, reason in items.items()}
    assert sorted(listed) == sorted(expected)
    for key, fragment in expected.items():
        assert listed[key].startswith(fragment), (key, listed[key])


def test_tiny_imagenet_as_downloaded(tmp_path):
    tiny = fx.make_tiny_imagenet(tmp_path / "in")
    out = tmp_path / "out"
    # --val_dir is the downloaded val/ (images/ beside val_annotations.txt): detected.
    meta = fx.run_job(
        out, "--train_dir", tiny["train_dir"], "--val_dir", tiny["val_dir"], "--synsets", tiny["wnids"],
        "--class_names", tiny["words"], "--train_shards", 2, "--val_shards", 1, "--image_size", 64,
    )
    _check_tiny_output(tiny, out, meta, {})
    assert meta["options"]["val_labels"] == str(tiny["val_dir"] / "val_annotations.txt")
    assert meta["image_size"] == 64 and meta["kept_small"] == {"train": 0, "validation": 0}
    # The same with val/images and the annotations named: the same shards.
    again = tmp_path / "again"
    fx.run_job(
        again, "--train_dir", tiny["train_dir"], "--val_dir", tiny["val_dir"] / "images",
        "--val_labels", tiny["val_dir"] / "val_annotations.txt", "--synsets", tiny["wnids"],
        "--class_names", tiny["words"], "--train_shards", 2, "--val_shards", 1, "--image_size", 64,
    )
    assert fx.shard_bytes(again) == fx.shard_bytes(out)


def test_tiny_imagenet_train_folder_inside_a_tar(tmp_path):
    tiny = fx.make_tiny_imagenet(tmp_path / "in")
    train_tar = fx.tar_of(tiny["train_dir"], tmp_path / "train.tar", "train")  # members train/<wnid>/images/x.JPEG
    with tarfile.open(train_tar) as tar:
        assert "train/n01443537/images/n01443537_0.JPEG" in tar.getnames()
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "preprocessing.build_tfrecords", "--train_dir", str(train_tar),
         "--val_dir", str(tiny["val_dir"]), "--synsets", str(tiny["wnids"]), "--class_names", str(tiny["words"]),
         "--train_shards", "2", "--val_shards", "1", "--image_size", "64", "--output_dir", str(out), *fx.IN_PROCESS],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    meta = fx.load_metadata(out)
    _check_tiny_output(tiny, out, meta, {})
    folder = tmp_path / "folder"
    fx.run_job(folder, "--train_dir", tiny["train_dir"], "--val_dir", tiny["val_dir"], "--synsets", tiny["wnids"],
               "--class_names", tiny["words"], "--train_shards", 2, "--val_shards", 1, "--image_size", 64)
    assert fx.shard_bytes(out) == fx.shard_bytes(folder)  # the tar and the folder give the same shards


@pytest.mark.parametrize(
    "paths, root",
    [
        (["train/n01/images/a.JPEG", "train/n01/n01_boxes.txt", "train/n02/images/b.JPEG", "train/.DS_Store"], ("train",)),
        (["n01/a.JPEG", "n02/b.JPEG"], ()),
        (["a/b/n01/x.png", "a/b/n02/y.png", "._a"], ("a", "b")),
        (["n01/images/a.JPEG", "n01/n01_boxes.txt"], ()),  # one class folder: it stays the class
        (["n01440764.tar", "n01443537.tar"], ()),
        (["ILSVRC2012_val_00000001.JPEG"], ()),
    ],
)
def test_tar_root_is_the_folder_the_class_folders_are_in(paths, root):
    assert listing.tar_root(paths) == root


@pytest.mark.parametrize(
    "relative, reason",
    [
        ("n01/images/a.JPEG", None), ("n01/a.jpg", None), ("n01/a.PNG", None), ("a.webp", None),
        ("n01/n01_boxes.txt", "not an image file name (extension .txt)"),
        ("n01/Thumbs.db", "not an image file name (extension .db)"),
        ("n01/annotations.xml", "not an image file name (extension .xml)"),
        ("labels.csv", "not an image file name (extension .csv)"),
        ("n01/README", "not an image file name (no extension)"),
        (".DS_Store", "hidden file (a name starting with '.')"),
        ("n01/._a.JPEG", "hidden file (a name starting with '.')"),
        ("n01/.cache/a.JPEG", "hidden file (a name starting with '.')"),
    ],
)
def test_files_that_are_not_images_by_name_are_skipped(relative, reason):
    assert listing.skip_reason(relative) == reason


def test_files_at_any_depth_below_a_class_folder_belong_to_it(tmp_path):
    rng = np.random.default_rng(0)
    good = fx.encode(fx.noise_image(rng, "RGB", 50, 40), "JPEG")
    train = tmp_path / "train"
    for rel in ("n01/a.JPEG", "n01/x/y/b.JPEG", "n02/images/c.png"):
        (train / rel).parent.mkdir(parents=True, exist_ok=True)
        (train / rel).write_bytes(good)
    (train / "n02" / "images" / "notes.txt").write_text("sidecar")
    (train / "loose.JPEG").write_bytes(good)
    items = list(listing.list_folder(str(train), "train", "classes"))
    refs = sorted((i.klass, i.name) for i in items if isinstance(i, listing.Ref))
    assert refs == [("n01", "a.JPEG"), ("n01", "b.JPEG"), ("n02", "c.png")]
    rejects = [(Path(i.path).name, i.reason) for i in items if isinstance(i, listing.Reject)]
    assert rejects == [("loose.JPEG", listing.NOT_IN_CLASS)]
    assert [Path(i.path).name for i in items if isinstance(i, listing.Skip)] == ["notes.txt"]
    assert listing.estimate_count(str(train), "classes") == 4
    assert listing.class_folders(str(train)) == ["n01", "n02"]
