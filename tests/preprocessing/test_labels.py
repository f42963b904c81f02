"""preprocessing.labels: class lists, class names and validation label files."""
import numpy as np
import pytest

import cli
from preprocessing import labels, schema
from tests.helpers import image_folders as fx


def test_devkit_ground_truth_maps_through_map_clsloc_not_sorted_order():
    ids, names = labels.parse_devkit_classes("n02119789 1 kit_fox\nn01440764 2 tench\nn01751748 3 sea_snake")
    parsed = labels.parse_val_labels("3\n1\n2\n", ids)
    assert parsed == {
        "ILSVRC2012_val_00000001": "n01751748",
        "ILSVRC2012_val_00000002": "n02119789",
        "ILSVRC2012_val_00000003": "n01440764",
    }
    assert names["n02119789"] == "kit fox"


def test_other_label_formats():
    assert labels.parse_val_labels("n01\nn02\n") == {"ILSVRC2012_val_00000001": "n01", "ILSVRC2012_val_00000002": "n02"}
    csv_text = "ImageId,PredictionString\nILSVRC2012_val_00008726,n02119789 255 142 454 329 n02119789 44 21 322 295\n"
    assert labels.parse_val_labels(csv_text) == {"ILSVRC2012_val_00008726": "n02119789"}
    assert labels.parse_val_labels("a.JPEG n01\nb.png n02\n") == {"a": "n01", "b": "n02"}


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
    with pytest.raises(cli.UsageError) as err:
        labels.parse_val_labels(text, ids)
    assert message in str(err.value)


def test_class_lists_sort_and_name():
    synsets, names = labels.parse_class_list("n02 two, 2\nn01 one\n")
    assert synsets == ["n01", "n02"] and names == {"n01": "one", "n02": "two, 2"}
    synsets, names = labels.parse_class_list("n02119789 1 kit_fox\nn01440764 2 tench")  # map_clsloc.txt
    assert synsets == ["n01440764", "n02119789"] and names["n02119789"] == "kit fox"
    with pytest.raises(cli.UsageError, match="twice"):
        labels.parse_class_list("n01\nn01\n")


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
    meta = fx.run_job(
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


def test_tiny_imagenet_annotations_with_box_columns_and_no_final_newline():
    text = "val_0.JPEG\tn03444034\t0\t32\t44\t62\nval_1.JPEG\tn04067472\t52\t55\t57\t59"
    assert labels.parse_val_labels(text) == {"val_0": "n03444034", "val_1": "n04067472"}
    assert labels.parse_val_labels(text + "\n") == labels.parse_val_labels(text)
    # wnids.txt is a class list of bare synsets (no final newline either).
    assert labels.parse_class_list("n02\nn01") == (["n01", "n02"], {"n01": "n01", "n02": "n02"})


def test_class_names_take_the_first_name_of_the_classes_present():
    words = labels.parse_class_names(fx.TINY_WORDS)
    assert words["n02056570"] == "king penguin" and words["n09246464"] == "cliff" and len(words) == 5
    assert labels.names_of(["n09246464", "n02056570"], words) == {"n09246464": "cliff", "n02056570": "king penguin"}
    with pytest.raises(cli.UsageError, match=r"class n07777777 is not in --class_names \(1 of 2 classes have no name there\)"):
        labels.names_of(["n02056570", "n07777777"], words)
    with pytest.raises(cli.UsageError, match="line 1: expected '<synset><TAB><names>'"):
        labels.parse_class_names("n01\n")
    with pytest.raises(cli.UsageError, match="is empty"):
        labels.parse_class_names("\n")


@pytest.mark.parametrize("synsets", [True, False])
def test_a_class_missing_from_class_names_is_one_usage_error_line(tmp_path, capsys, synsets):
    tiny = fx.make_tiny_imagenet(tmp_path / "in", per_class=1, val_count=3)
    words = tmp_path / "words.txt"
    words.write_text("".join(line + "\n" for line in fx.TINY_WORDS.splitlines() if not line.startswith("n01443537")))
    extra = ["--synsets", tiny["wnids"]] if synsets else []  # without: the class folders, listed at launch
    with pytest.raises(SystemExit) as exit_info:
        fx.run_job(tmp_path / "out", "--train_dir", tiny["train_dir"], *extra, "--class_names", words)
    assert exit_info.value.code == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    message = "class n01443537 is not in --class_names %s (1 of 3 classes have no name there)" % words
    assert err == ["build_tfrecords: error: " + message]
    assert not (tmp_path / "out").exists()


def test_class_names_of_a_tar_are_checked_once_listed(tmp_path, capsys):
    tiny = fx.make_tiny_imagenet(tmp_path / "in", per_class=1, val_count=3)
    train_tar = fx.tar_of(tiny["train_dir"], tmp_path / "train.tar", "train")
    meta = fx.run_job(tmp_path / "out", "--train_dir", train_tar, "--class_names", tiny["words"], "--train_shards", 1)
    assert meta["class_names"] == [fx.TINY_CLASSES[w] for w in sorted(fx.TINY_CLASSES)]
    words = tmp_path / "words.txt"
    words.write_text("n01443537\tgoldfish\n")
    with pytest.raises(SystemExit) as exit_info:
        fx.run_job(tmp_path / "bad", "--train_dir", train_tar, "--class_names", words, "--train_shards", 1)
    assert exit_info.value.code == cli.EXIT_FAILED
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "class n02056570 is not in --class_names (2 of 3 classes have no name there)" in err[0]
    assert sorted(p.name for p in (tmp_path / "bad").iterdir()) == ["job_failed.txt", "rejects.tsv", "skipped.tsv"]
