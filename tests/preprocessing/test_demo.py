"""preprocessing.demo: the synthetic set, and its conversion by the job."""
from pathlib import Path

import numpy as np
from PIL import Image

from preprocessing import demo, schema
from tests.helpers import image_folders as fx


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


def test_demo_generates_and_converts_a_deterministic_set(tmp_path):
    out = tmp_path / "demo"
    meta = fx.run_job(out, "--demo", "--image_size", 64, "--demo_train_per_class", 4, "--demo_val_per_class", 2)
    assert meta["num_classes"] == 10 and meta["counts"] == {"train": 40, "validation": 20}
    assert meta["shards"] == {"train": 8, "validation": 2}
    assert (out / "metadata.json").exists() and (out / "source" / "train").is_dir()
    rows = [r for rows in fx.read_records(out, schema.VALIDATION).values() for r in rows]
    assert sorted(r[schema.LABEL] for r in rows) == sorted(list(range(10)) * 2)
    again = tmp_path / "again"
    fx.run_job(again, "--demo", "--image_size", 64, "--demo_train_per_class", 4, "--demo_val_per_class", 2)
    assert fx.shard_bytes(again) == fx.shard_bytes(out)


def test_demo_rebuilt_smaller_with_overwrite_converts_only_the_new_images(tmp_path):
    out = tmp_path / "demo"
    fx.run_job(out, "--demo", "--image_size", 32, "--demo_train_per_class", 3, "--demo_val_per_class", 2)
    meta = fx.run_job(out, "--demo", "--image_size", 32, "--demo_train_per_class", 1, "--demo_val_per_class", 1, "--overwrite")
    assert meta["counts"] == {"train": 10, "validation": 10} and meta["rejected"] == {"train": 0, "validation": 0}
    assert len([p for p in (out / "source").rglob("*.JPEG")]) == 10 + 10
    rows = [r for rows in fx.read_records(out, schema.TRAIN).values() for r in rows]
    assert sorted(r[schema.FILENAME] for r in rows) == sorted("%s_0.JPEG" % s for s, _ in demo.CLASSES)
