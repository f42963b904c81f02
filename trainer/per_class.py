"""Per-class results of an evaluation: top-1 and top-5 of each class, the worst classes, the confusion matrix.

From the per-example outcomes `trainer.evaluate.evaluate_with_outcomes` gathers
(label, top-1 prediction, label in the top 5) of every real validation example.
Written beside eval.json in the model directory:

  eval_per_class.json            for each view ("centre_crop", "ten_view"): every
                                 class (index, synset, name, examples, top1, top5;
                                 accuracies null for a class without examples) and
                                 the WORST_CLASSES lowest by top-1
  eval_confusion_<view>.csv      rows the true class, columns the top-1 prediction,
                                 counts; a header row and column of synsets

and, for sets of at most MAX_IMAGE_CLASSES classes, an image of each confusion
matrix in TensorBoard (validation run, tag confusion_matrix/<view>).
"""
import json
import os

import numpy as np
import tensorflow as tf

from trainer import evaluate as eval_lib
from trainer import summaries as summaries_lib

PER_CLASS_FILE = "eval_per_class.json"
CONFUSION_FILE = "eval_confusion_%s.csv"
WORST_CLASSES = 10  # listed in the file; the log line names the first WORST_LOGGED
WORST_LOGGED = 5
# Above this a cell would be under a pixel of a readable image; the CSV holds any size.
MAX_IMAGE_CLASSES = 100
IMAGE_TAG = "confusion_matrix/%s"
_VIEW_NAMES = {"centre_crop": "centre-crop", "ten_view": "10-view"}
_CELL_PIXELS = 4  # each cell of the image is a square of this side (at most 400 x 400 pixels)


def confusion_matrix(outcomes, num_classes):
    """(C, C) int64 counts: row the true class, column the top-1 prediction."""
    labels = outcomes[:, eval_lib.OUTCOME_COLUMNS.index("label")].astype(np.int64)
    predictions = outcomes[:, eval_lib.OUTCOME_COLUMNS.index("prediction")].astype(np.int64)
    return np.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def class_accuracies(outcomes, num_classes):
    """(examples, top-1 correct, top-5 correct) per class: three (C,) int64 arrays."""
    labels = outcomes[:, eval_lib.OUTCOME_COLUMNS.index("label")].astype(np.int64)
    predictions = outcomes[:, eval_lib.OUTCOME_COLUMNS.index("prediction")]
    in_top5 = outcomes[:, eval_lib.OUTCOME_COLUMNS.index("in_top5")]
    examples = np.bincount(labels, minlength=num_classes)
    top1 = np.bincount(labels, weights=(predictions == labels), minlength=num_classes).astype(np.int64)
    top5 = np.bincount(labels, weights=in_top5, minlength=num_classes).astype(np.int64)
    return examples, top1, top5


def report(outcomes, info):
    """The per-class record of one view's outcomes.

    Args:
      outcomes: (N, 4) rows of trainer.evaluate.OUTCOME_COLUMNS.
      info: the data set's trainer.data_info.DataInfo (class names, synsets).

    Returns:
      {"classes": [{index, synset, name, examples, top1, top5}, ...], "worst": [the
      WORST_CLASSES classes with examples of lowest top-1, then top-5, then index]}.
    """
    examples, top1, top5 = class_accuracies(outcomes, info.num_classes)
    classes = []
    for c in range(info.num_classes):
        n = int(examples[c])
        classes.append({
            "index": c,
            "synset": info.synsets[c] if c < len(info.synsets) else "",
            "name": info.class_names[c] if c < len(info.class_names) else str(c),
            "examples": n,
            "top1": float(top1[c]) / n if n else None,
            "top5": float(top5[c]) / n if n else None,
        })
    seen = [entry for entry in classes if entry["examples"]]
    worst = sorted(seen, key=lambda e: (e["top1"], e["top5"], e["index"]))[:WORST_CLASSES]
    return {"classes": classes, "worst": worst}


def confusion_image(confusion):
    """An RGB uint8 image of a confusion matrix: each row scaled by its class's examples,
    white (0) to dark blue (all of the row), each cell _CELL_PIXELS on a side."""
    confusion = np.asarray(confusion, np.float64)
    rows = confusion.sum(axis=1, keepdims=True)
    share = np.divide(confusion, rows, out=np.zeros_like(confusion), where=rows > 0)
    dark = np.array([8.0, 48.0, 107.0])
    image = 255.0 - share[..., np.newaxis] * (255.0 - dark)
    image = np.repeat(np.repeat(image, _CELL_PIXELS, axis=0), _CELL_PIXELS, axis=1)
    return np.round(image).astype(np.uint8)


def write_confusion_csv(path, confusion, synsets):
    """The matrix as CSV with a header row and first column of synsets (indices when unknown)."""
    names = [synsets[c] if c < len(synsets) else str(c) for c in range(confusion.shape[0])]
    lines = ["true\\predicted," + ",".join(names)]
    lines += [names[r] + "," + ",".join(str(int(v)) for v in row) for r, row in enumerate(confusion)]
    with tf.io.gfile.GFile(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def write(model_dir, outcomes_by_view, info, summaries, step, log):
    """Writes eval_per_class.json, the confusion CSVs and the TensorBoard images; logs the worst classes.

    Args:
      model_dir: where eval.json is.
      outcomes_by_view: {"centre_crop": (N, 4) outcomes, "ten_view": ...}.
      info: the data set's DataInfo.
      summaries: trainer.summaries.Summaries (no-op when disabled).
      step: global step of the evaluated checkpoint.
      log: print-like function.
    """
    tf.io.gfile.makedirs(model_dir)
    reports = {view: report(rows, info) for view, rows in outcomes_by_view.items()}
    with tf.io.gfile.GFile(os.path.join(model_dir, PER_CLASS_FILE), "w") as f:
        f.write(json.dumps(reports, indent=2, sort_keys=True) + "\n")
    for view, rows in outcomes_by_view.items():
        confusion = confusion_matrix(rows, info.num_classes)
        write_confusion_csv(os.path.join(model_dir, CONFUSION_FILE % view), confusion, info.synsets)
        if info.num_classes <= MAX_IMAGE_CLASSES and summaries.enabled:
            with summaries.writer(summaries_lib.VALIDATION).as_default(step=step):
                tf.summary.image(IMAGE_TAG % view, confusion_image(confusion)[np.newaxis], max_outputs=1)
    summaries.flush()
    for view, result in reports.items():
        # Names hold commas ("tench, Tinca tinca"): entries are separated by semicolons.
        worst = "; ".join("%s (%.2f)" % (e["name"], e["top1"]) for e in result["worst"][:WORST_LOGGED])
        log("worst classes by %s top-1: %s (every class: %s)" % (_VIEW_NAMES.get(view, view), worst, PER_CLASS_FILE))
