"""Small ImageNet- and Tiny-ImageNet-layout inputs for the preprocessing tests, made on the fly.

Images are 40 to 96 px of random noise (so JPEG coding has real work to do),
in every mode the job must repair. Nothing here is read from outside the
repository except the optional real sample (see SAMPLE_DIR). `run_job` runs the
whole Beam job in-process on the FnApiRunner.
"""
import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

from preprocessing import build_tfrecords, schema

# One in-process worker: the fastest way to run the real pipeline in a test.
# The worker-process test of tests/preprocessing/test_pipeline.py covers worker
# processes (the default for large inputs).
IN_PROCESS = ["--direct_running_mode", "in_memory", "--direct_num_workers", "1"]

SAMPLE_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "imagenet-sample"

# The fixed class list (sorted); the last two have no training images, so
# labels must still index this whole list.
SYNSETS = ["n01440764", "n01443537", "n01484850", "n01491361", "n01494475"]
NAMES = {s: "class %d name, with comma" % i for i, s in enumerate(SYNSETS)}
TRAIN_CLASSES = SYNSETS[:3]
# Devkit order is NOT the sorted order; n02000000 is a devkit class that the
# class list does not have.
DEVKIT_ORDER = ["n01484850", "n02000000", "n01440764", "n01494475", "n01443537", "n01491361"]

# Arguments of records.example_bytes that cover every varint length and field.
EXAMPLE_CASES = [
    # (encoded, label, height, width, synset, text, filename)
    (bytes(range(256)) * 300, 3, 256, 256, "n01440764", "tench, Tinca tinca", "n01440764_10026.JPEG"),  # 3-byte lengths
    (b"", 0, 0, 0, "", "", ""),  # every field at its default value
    (b"x" * 127, 999, 127, 128, b"n0", "caf\u00e9, \u00fcber", b"f.JPEG"),  # 1- and 2-byte varints, UTF-8, bytes
    (b"y" * 128, -1, 16383, 2**40, "a", "b", "c"),  # a negative int64 takes ten bytes
]

MODES = ("RGB", "CMYK", "L", "P", "RGBA", "I;16")


def noise_image(rng, mode, width, height):
    """A random image in `mode` (16-bit values span the full 0..65535 range)."""
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    img = Image.fromarray(rgb, "RGB")
    if mode == "RGB":
        return img
    if mode == "CMYK":
        return img.convert("CMYK")
    if mode == "L":
        return img.convert("L")
    if mode == "P":
        pal = img.convert("P", palette=Image.ADAPTIVE, colors=16)
        pal.info["transparency"] = 0
        return pal
    if mode == "RGBA":
        rgba = np.dstack([rgb, rng.integers(0, 256, (height, width, 1), dtype=np.uint8)])
        return Image.fromarray(rgba, "RGBA")
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
    raise ValueError(mode)


def encode(img, fmt=None):
    buf = io.BytesIO()
    if fmt is None:
        fmt = "PNG" if img.mode in ("P", "RGBA", "I;16") else "JPEG"
    img.save(buf, format=fmt, quality=92) if fmt == "JPEG" else img.save(buf, format=fmt)
    return buf.getvalue()


def _size(rng):
    return int(rng.integers(40, 97)), int(rng.integers(40, 97))


def write_class_list(path):
    path.write_text("".join("%s %s\n" % (s, NAMES[s]) for s in reversed(SYNSETS)))  # order must not matter
    return path


def write_devkit(path):
    # map_clsloc.txt has no newline at the end of the file.
    path.write_text("\n".join("%s %d %s" % (s, i + 1, "name_%d" % i) for i, s in enumerate(DEVKIT_ORDER)))
    return path


def devkit_id(synset):
    return DEVKIT_ORDER.index(synset) + 1


def make_clean_set(root, per_class=5, val_count=6, seed=1):
    """Good inputs only: class folders, a flat val folder and devkit labels.

    Returns:
      dict with train_dir, val_dir, gt (devkit ground truth), devkit, synsets,
      expected {split: {file name: synset}}.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    expected = {schema.TRAIN: {}, schema.VALIDATION: {}}
    for synset in TRAIN_CLASSES:
        folder = root / "train" / synset
        folder.mkdir(parents=True)
        for i in range(per_class):
            name = "%s_%d.JPEG" % (synset, i)
            (folder / name).write_bytes(encode(noise_image(rng, ("RGB", "L", "CMYK")[i % 3], *_size(rng)), "JPEG"))
            expected[schema.TRAIN][name] = synset
    val = root / "val"
    val.mkdir()
    gt = []
    for i in range(1, val_count + 1):
        synset = TRAIN_CLASSES[i % len(TRAIN_CLASSES)]
        name = "ILSVRC2012_val_%08d.JPEG" % i
        (val / name).write_bytes(encode(noise_image(rng, "RGB", *_size(rng)), "JPEG"))
        gt.append(devkit_id(synset))
        expected[schema.VALIDATION][name] = synset
    (root / "meta").mkdir()
    return {
        "train_dir": root / "train",
        "val_dir": root / "val",
        "gt": _write_lines(root / "meta" / "ILSVRC2012_validation_ground_truth.txt", gt),
        "devkit": write_devkit(root / "meta" / "map_clsloc.txt"),
        "synsets": write_class_list(root / "meta" / "LOC_synset_mapping.txt"),
        "expected": expected,
    }


def _write_lines(path, values):
    path.write_text("".join("%s\n" % v for v in values))
    return path


def make_tars(clean, root):
    """The official archive layouts of a clean set: a train tar of per-class
    tars and a flat val tar, both uncompressed."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    train_tar = root / "ILSVRC2012_img_train.tar"
    with tarfile.open(train_tar, "w", format=tarfile.GNU_FORMAT) as outer:
        for folder in sorted(Path(clean["train_dir"]).iterdir()):
            inner_buf = io.BytesIO()
            with tarfile.open(fileobj=inner_buf, mode="w", format=tarfile.GNU_FORMAT) as inner:
                for f in sorted(folder.iterdir()):
                    inner.add(f, arcname=f.name)
            info = tarfile.TarInfo(folder.name + ".tar")
            info.size = len(inner_buf.getvalue())
            outer.addfile(info, io.BytesIO(inner_buf.getvalue()))
    val_tar = root / "ILSVRC2012_img_val.tar"
    with tarfile.open(val_tar, "w", format=tarfile.GNU_FORMAT) as tar:
        for f in sorted(Path(clean["val_dir"]).iterdir()):
            tar.add(f, arcname=f.name)
    return train_tar, val_tar


def make_messy_set(root, seed=2):
    """Every image mode and every kind of bad input.

    Returns:
      dict with the paths and the expected outcome: written {split: {name:
      synset}}, rejected and skipped {split: {name: reason fragment}}, unmatched
      label stems.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    written = {schema.TRAIN: {}, schema.VALIDATION: {}}
    rejected = {schema.TRAIN: {}, schema.VALIDATION: {}}
    for synset in TRAIN_CLASSES:
        folder = root / "train" / synset
        folder.mkdir(parents=True)
        for i, mode in enumerate(MODES):
            # Every file is named .JPEG whatever it holds (PNGs included).
            name = "%s_%d.JPEG" % (synset, i)
            (folder / name).write_bytes(encode(noise_image(rng, mode, *_size(rng))))
            written[schema.TRAIN][name] = synset
    train = root / "train"
    good = encode(noise_image(rng, "RGB", 80, 60), "JPEG")
    (train / "n01440764" / "empty.JPEG").write_bytes(b"")
    rejected[schema.TRAIN]["empty.JPEG"] = "empty file"
    (train / "n01440764" / "truncated.JPEG").write_bytes(good[: len(good) // 2])
    rejected[schema.TRAIN]["truncated.JPEG"] = "cannot decode"
    (train / "n01443537" / "notes.JPEG").write_bytes(b"this is not an image\n" * 20)
    rejected[schema.TRAIN]["notes.JPEG"] = "not an image"
    os.symlink(root / "does-not-exist.JPEG", train / "n01443537" / "dangling.JPEG")
    rejected[schema.TRAIN]["dangling.JPEG"] = "unreadable"
    # 10000 x 9000 = 90 M pixels, just over Pillow's 89.5 M default limit;
    # as a 1-bit PNG it is only a few kB on disk.
    bomb = io.BytesIO()
    Image.new("1", (10000, 9000)).save(bomb, format="PNG")
    (train / "n01484850" / "bomb.JPEG").write_bytes(bomb.getvalue())
    rejected[schema.TRAIN]["bomb.JPEG"] = "decompression bomb"
    (train / "n99999999").mkdir()
    (train / "n99999999" / "n99999999_0.JPEG").write_bytes(good)
    rejected[schema.TRAIN]["n99999999_0.JPEG"] = "class n99999999 is not in the class list"
    (train / "stray.JPEG").write_bytes(good)
    rejected[schema.TRAIN]["stray.JPEG"] = "not in a class folder"
    # Files that are not images by name are skipped, wherever they are.
    skipped = {schema.TRAIN: {}, schema.VALIDATION: {}}
    (train / "README.txt").write_text("stray file")
    skipped[schema.TRAIN]["README.txt"] = "not an image file name (extension .txt)"
    (train / "n01443537" / "Thumbs.db").write_bytes(b"\0" * 64)
    skipped[schema.TRAIN]["Thumbs.db"] = "not an image file name (extension .db)"

    val = root / "val"
    val.mkdir()
    gt = []
    for i in range(1, 9):
        synset = TRAIN_CLASSES[i % 3] if i != 8 else "n01491361"  # a class without train images
        name = "ILSVRC2012_val_%08d.JPEG" % i
        (val / name).write_bytes(encode(noise_image(rng, ("RGB", "L")[i % 2], *_size(rng)), "JPEG"))
        gt.append(devkit_id(synset))
        written[schema.VALIDATION][name] = synset
    # Image 9 is labelled with a devkit class missing from the class list.
    (val / "ILSVRC2012_val_00000009.JPEG").write_bytes(good)
    gt.append(devkit_id("n02000000"))
    rejected[schema.VALIDATION]["ILSVRC2012_val_00000009.JPEG"] = "class n02000000 is not in the class list"
    # Labels 10..12 have no image; image 20 has no label.
    gt += [devkit_id(s) for s in TRAIN_CLASSES]
    (val / "ILSVRC2012_val_00000020.JPEG").write_bytes(good)
    rejected[schema.VALIDATION]["ILSVRC2012_val_00000020.JPEG"] = "no label"
    (val / ".DS_Store").write_bytes(b"\0\0\0\1Bud1" + bytes(100))
    skipped[schema.VALIDATION][".DS_Store"] = "hidden file"
    (root / "meta").mkdir()
    return {
        "train_dir": train,
        "val_dir": val,
        "gt": _write_lines(root / "meta" / "ILSVRC2012_validation_ground_truth.txt", gt),
        "devkit": write_devkit(root / "meta" / "map_clsloc.txt"),
        "synsets": write_class_list(root / "meta" / "LOC_synset_mapping.txt"),
        "written": written,
        "rejected": rejected,
        "skipped": skipped,
        "unmatched": ["ILSVRC2012_val_%08d" % i for i in (10, 11, 12)],
    }


def read_records(output_dir, split):
    """Every record of a split, parsed with the shared schema.

    Returns:
      {shard file name: [dict of feature -> python value, plus "pixels"]}.
    """
    out = {}
    for path in sorted(tf.io.gfile.glob(schema.shard_glob(str(output_dir), split))):
        rows = []
        for raw in tf.data.TFRecordDataset(path):
            parsed = tf.io.parse_single_example(raw, schema.FEATURE_SPEC)
            row = {k: v.numpy() for k, v in parsed.items()}
            row = {k: (v.decode() if isinstance(v, bytes) and k != schema.ENCODED else v) for k, v in row.items()}
            row["pixels"] = tf.io.decode_jpeg(parsed[schema.ENCODED], channels=0).numpy()
            rows.append(row)
        out[os.path.basename(path)] = rows
    return out


def load_metadata(output_dir):
    return json.loads((Path(output_dir) / "metadata.json").read_text())


def read_rejects(output_dir, name="rejects.tsv"):
    lines = (Path(output_dir) / name).read_text().splitlines()
    assert lines[0] == "path\tsplit\treason"
    return [tuple(line.split("\t")) for line in lines[1:]]


def read_skipped(output_dir):
    return read_rejects(output_dir, "skipped.tsv")


def run_job(out, *args, runner=IN_PROCESS):
    """build_tfrecords.run with these flags (str()-ed) and --output_dir out."""
    return build_tfrecords.run([*map(str, args), "--output_dir", str(out), *runner])


def imagenet_flags(data, train=None, val=None):
    """The flags of an ImageNet-layout set from make_clean_set or make_messy_set."""
    return [
        "--train_dir", train or data["train_dir"], "--val_dir", val or data["val_dir"],
        "--val_labels", data["gt"], "--devkit_classes", data["devkit"], "--synsets", data["synsets"],
    ]


def shard_bytes(output_dir):
    return {p.name: p.read_bytes() for p in sorted(Path(output_dir).iterdir()) if "-of-" in p.name}


# Tiny ImageNet's layout: wnids.txt in its own (unsorted) order, and words.txt
# naming these classes among synsets that are not classes.
TINY_CLASSES = {"n09246464": "cliff", "n01443537": "goldfish", "n02056570": "king penguin"}
TINY_WORDS = (
    "n00001740\tentity\n"
    "n01443537\tgoldfish, Carassius auratus\n"
    "n02056570\tking penguin, Aptenodytes patagonica\n"
    "n02999999\tnot a class, only a WordNet noun\n"
    "n09246464\tcliff, drop, drop-off\n"
)
_DS_STORE = b"\0\0\0\1Bud1" + bytes(120)


def make_tiny_imagenet(root, per_class=4, val_count=6, seed=5):
    """Tiny ImageNet exactly as its archive unpacks, with self-made 64x64 JPEGs.

    tiny-imagenet-200/{wnids.txt, words.txt, .DS_Store}, train/.DS_Store,
    train/<wnid>/{<wnid>_boxes.txt, images/<wnid>_<i>.JPEG} (a .DS_Store in
    one class folder and in one images/ folder), val/images/val_<i>.JPEG (and
    a .DS_Store) with val/val_annotations.txt: tab-separated file, wnid and
    box columns, no final newline.

    Returns:
      dict with root, train_dir, val_dir, wnids, words, expected {split:
      {file name: wnid}} and skipped {split: {path below root: reason fragment}}.
    """
    rng = np.random.default_rng(seed)
    root = Path(root) / "tiny-imagenet-200"
    expected = {schema.TRAIN: {}, schema.VALIDATION: {}}
    skipped = {schema.TRAIN: {}, schema.VALIDATION: {}}
    train = root / "train"
    for c, wnid in enumerate(TINY_CLASSES):
        images = train / wnid / "images"
        images.mkdir(parents=True)
        boxes = []
        for i in range(per_class):
            name = "%s_%d.JPEG" % (wnid, i)
            mode = "L" if i == 1 else "RGB"  # Tiny ImageNet has grayscale JPEGs too
            (images / name).write_bytes(encode(noise_image(rng, mode, 64, 64), "JPEG"))
            expected[schema.TRAIN][name] = wnid
            boxes.append("%s\t%d\t%d\t%d\t%d\n" % (name, 1, 2, 40 + i, 50))
        (train / wnid / ("%s_boxes.txt" % wnid)).write_text("".join(boxes))
        skipped[schema.TRAIN]["train/%s/%s_boxes.txt" % (wnid, wnid)] = "not an image file name (extension .txt)"
        if c == 0:
            (train / wnid / ".DS_Store").write_bytes(_DS_STORE)
            skipped[schema.TRAIN]["train/%s/.DS_Store" % wnid] = "hidden file"
        if c == 1:
            (images / ".DS_Store").write_bytes(_DS_STORE)
            skipped[schema.TRAIN]["train/%s/images/.DS_Store" % wnid] = "hidden file"
    (train / ".DS_Store").write_bytes(_DS_STORE)
    skipped[schema.TRAIN]["train/.DS_Store"] = "hidden file"
    val_images = root / "val" / "images"
    val_images.mkdir(parents=True)
    rows = []
    for i in range(val_count):
        wnid = list(TINY_CLASSES)[i % len(TINY_CLASSES)]
        name = "val_%d.JPEG" % i
        (val_images / name).write_bytes(encode(noise_image(rng, "RGB", 64, 64), "JPEG"))
        expected[schema.VALIDATION][name] = wnid
        rows.append("%s\t%s\t%d\t%d\t%d\t%d" % (name, wnid, 0, 32, 44, 62))
    (root / "val" / "val_annotations.txt").write_text("\n".join(rows))  # no final newline, as downloaded
    (val_images / ".DS_Store").write_bytes(_DS_STORE)
    skipped[schema.VALIDATION]["val/images/.DS_Store"] = "hidden file"
    (root / ".DS_Store").write_bytes(_DS_STORE)
    (root / "wnids.txt").write_text("".join("%s\n" % w for w in TINY_CLASSES))
    (root / "words.txt").write_text(TINY_WORDS)
    return {
        "root": root, "train_dir": train, "val_dir": root / "val", "wnids": root / "wnids.txt",
        "words": root / "words.txt", "expected": expected, "skipped": skipped,
    }


def tar_of(folder, tar_path, arcname):
    """An uncompressed tar of a folder as `tar cf tar_path arcname` would make it."""
    with tarfile.open(tar_path, "w", format=tarfile.GNU_FORMAT) as tar:
        tar.add(folder, arcname=arcname)
    return tar_path
