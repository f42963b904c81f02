"""trainer.per_class: per-class top-1 / top-5, the worst classes, the confusion matrix as a file and a
TensorBoard image; on a table of known outcomes and on the shared finished run's files."""
import csv
import json

import numpy as np
import pytest
import tensorflow as tf

from trainer import data_info, per_class

# label, prediction, in_top5, weight: class 0 has 3 examples (2 right), class 1 has 1 (wrong,
# in the top 5), class 2 has 2 (1 right), class 3 none.
OUTCOMES = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [0, 2, 0, 1], [1, 0, 1, 1], [2, 2, 1, 1], [2, 1, 0, 1]], np.int32)


def _info(num_classes):
    return data_info.DataInfo(
        num_classes=num_classes, label_offset=0, synsets=tuple("n%08d" % c for c in range(num_classes)),
        class_names=tuple("class %d" % c for c in range(num_classes)), rgb_mean=(0.5,) * 3, eigenvalues=(0.1,) * 3,
        eigenvectors=((1, 0, 0), (0, 1, 0), (0, 0, 1)), counts={},
    )  # fmt: skip


def test_per_class_accuracies_and_confusion_of_known_outcomes():
    examples, top1, top5 = per_class.class_accuracies(OUTCOMES, 4)
    np.testing.assert_array_equal(examples, [3, 1, 2, 0])
    np.testing.assert_array_equal(top1, [2, 0, 1, 0])
    np.testing.assert_array_equal(top5, [2, 1, 1, 0])
    confusion = per_class.confusion_matrix(OUTCOMES, 4)
    np.testing.assert_array_equal(confusion, [[2, 0, 1, 0], [1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]])
    result = per_class.report(OUTCOMES, _info(4))
    assert result["classes"][0] == {
        "index": 0, "synset": "n00000000", "name": "class 0", "examples": 3, "top1": 2 / 3, "top5": 2 / 3
    }  # fmt: skip
    assert result["classes"][3]["top1"] is None and result["classes"][3]["examples"] == 0
    # Lowest top-1 first; a class without examples is not among the worst.
    assert [e["index"] for e in result["worst"]] == [1, 2, 0]


def test_confusion_csv_and_image(tmp_path):
    confusion = per_class.confusion_matrix(OUTCOMES, 4)
    path = tmp_path / "confusion.csv"
    per_class.write_confusion_csv(str(path), confusion, _info(4).synsets)
    rows = list(csv.reader(path.open()))
    assert rows[0] == ["true\\predicted", "n00000000", "n00000001", "n00000002", "n00000003"]
    assert rows[1] == ["n00000000", "2", "0", "1", "0"] and len(rows) == 5
    image = per_class.confusion_image(confusion)
    cell = per_class._CELL_PIXELS
    assert image.shape == (4 * cell, 4 * cell, 3) and image.dtype == np.uint8
    # Row 1 is all prediction 0: that cell is the darkest colour, the rest of its row white;
    # the empty class 3 is a white row.
    np.testing.assert_array_equal(image[cell, 0], [8, 48, 107])
    np.testing.assert_array_equal(image[cell, cell], [255, 255, 255])
    assert (image[3 * cell :] == 255).all()
    # Class 0: 2 of 3 examples on the diagonal.
    np.testing.assert_array_equal(image[0, 0], np.round(255 - 2 / 3 * (255 - np.array([8, 48, 107]))))


def _event_images(run_dir):
    images = {}
    for path in sorted(run_dir.glob("events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.tag.startswith("confusion_matrix/"):
                    images[value.tag] = (int(event.step), tf.io.decode_png(tf.make_ndarray(value.tensor)[2]).numpy())
    return images


def test_the_finished_run_writes_per_class_results_that_agree_with_eval_json(finished_run):
    m = finished_run["model_dir"]
    results = json.loads((m / "eval.json").read_text())
    reports = json.loads((m / per_class.PER_CLASS_FILE).read_text())
    names = json.loads((finished_run["data"] / "metadata.json").read_text())["class_names"]
    images = _event_images(m / "logs" / "validation")
    for view in ("centre_crop", "ten_view"):
        classes = reports[view]["classes"]
        assert [c["name"] for c in classes] == names
        counts = np.array([c["examples"] for c in classes])
        assert counts.sum() == results[view]["examples"] == 12
        # The per-class accuracies, weighted by each class's examples, are the overall ones.
        for key in ("top1", "top5"):
            weighted = sum(c[key] * c["examples"] for c in classes) / counts.sum()
            assert weighted == pytest.approx(results[view][key], abs=1e-9)
        assert len(reports[view]["worst"]) == 3 and reports[view]["worst"][0]["top1"] == min(c["top1"] for c in classes)
        rows = list(csv.reader((m / (per_class.CONFUSION_FILE % view)).open()))
        confusion = np.array([[int(v) for v in row[1:]] for row in rows[1:]])
        assert confusion.shape == (3, 3) and confusion.sum() == 12
        np.testing.assert_array_equal(confusion.sum(axis=1), counts)
        np.testing.assert_array_equal(np.diag(confusion), [round(c["top1"] * c["examples"]) for c in classes])
        # The TensorBoard image, read back from the event file, is this matrix's.
        step, image = images["confusion_matrix/" + view]
        assert step == results["step"]
        np.testing.assert_array_equal(image, per_class.confusion_image(confusion))
