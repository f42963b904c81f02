"""A deterministic, learnable synthetic data set in ImageNet layout.

Ten classes of drawn shapes and textures. Colours, sizes, positions, rotation
and background are random, so a network has to learn the SHAPE (colour alone
says nothing about the class). Image sizes vary (80 to 400 px, varied aspect
ratios, like ImageNet photos); the figure always lies in the central square
so the job's centre crop keeps it. The layout is that of an ImageNet
download, so the demo runs the same code path as the real thing:

    <root>/train/<synset>/<synset>_<i>.JPEG
    <root>/val/ILSVRC2012_val_<i>.JPEG           (flat, shuffled classes)
    <root>/meta/LOC_synset_mapping.txt           (class list with names)
    <root>/meta/val_synsets.txt                  (one synset per line, line i = val image i)
"""
import math
import os
import shutil

import numpy as np
from PIL import Image, ImageDraw

CLASSES = (
    ("n90000000", "circle"),
    ("n90000001", "square"),
    ("n90000002", "triangle"),
    ("n90000003", "five-pointed star"),
    ("n90000004", "plus sign"),
    ("n90000005", "ring"),
    ("n90000006", "horizontal stripes"),
    ("n90000007", "vertical stripes"),
    ("n90000008", "checkerboard"),
    ("n90000009", "polka dots"),
)
MIN_SIDE, MAX_SIDE = 80, 400


def _colours(rng):
    """Foreground and background far enough apart in brightness to see."""
    while True:
        fg = rng.integers(0, 256, 3)
        bg = rng.integers(0, 256, 3)
        if abs(float(fg @ (0.299, 0.587, 0.114)) - float(bg @ (0.299, 0.587, 0.114))) > 70:
            return tuple(int(v) for v in fg), tuple(int(v) for v in bg)


def _polygon(cx, cy, radius, angles):
    return [(cx + radius * math.cos(a), cy + radius * math.sin(a)) for a in angles]


def _draw(kind, draw, cx, cy, r, fg, bg, rng):
    rot = float(rng.uniform(0, 2 * math.pi))
    if kind == 0:
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fg)
    elif kind == 1:
        draw.polygon(_polygon(cx, cy, r, [rot + k * math.pi / 2 for k in range(4)]), fill=fg)
    elif kind == 2:
        draw.polygon(_polygon(cx, cy, r, [rot + k * 2 * math.pi / 3 for k in range(3)]), fill=fg)
    elif kind == 3:
        points = []
        for k in range(10):
            points.append(_polygon(cx, cy, r if k % 2 == 0 else r * 0.42, [rot + k * math.pi / 5])[0])
        draw.polygon(points, fill=fg)
    elif kind == 4:
        w = r * 0.32
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=fg)
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=fg)
    elif kind == 5:
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fg)
        inner = r * 0.55
        draw.ellipse((cx - inner, cy - inner, cx + inner, cy + inner), fill=bg)
    else:
        # Textures fill a square patch; the pattern, not the patch, is the class.
        period = max(4.0, r * float(rng.uniform(0.25, 0.4)))
        left, top = cx - r, cy - r
        steps = int(2 * r / period) + 1
        if kind == 6:
            for k in range(0, steps, 2):
                draw.rectangle((left, top + k * period, left + 2 * r, min(top + (k + 1) * period, top + 2 * r)), fill=fg)
        elif kind == 7:
            for k in range(0, steps, 2):
                draw.rectangle((left + k * period, top, min(left + (k + 1) * period, left + 2 * r), top + 2 * r), fill=fg)
        elif kind == 8:
            for i in range(steps):
                for j in range(steps):
                    if (i + j) % 2 == 0:
                        draw.rectangle(
                            (left + i * period, top + j * period,
                             min(left + (i + 1) * period, left + 2 * r), min(top + (j + 1) * period, top + 2 * r)),
                            fill=fg,
                        )
        else:
            dot = period * 0.3
            for i in range(steps):
                for j in range(steps):
                    x, y = left + (i + 0.5) * period, top + (j + 0.5) * period
                    draw.ellipse((x - dot, y - dot, x + dot, y + dot), fill=fg)


def draw_image(kind, rng):
    """Draws one image of class index `kind` (0..9) with random appearance.

    Args:
      kind: class index into CLASSES.
      rng: a numpy Generator (all randomness comes from it).

    Returns:
      An RGB PIL.Image of random size between 80 and 400 px a side.
    """
    width = int(rng.integers(MIN_SIDE, MAX_SIDE + 1))
    height = int(np.clip(width * rng.uniform(0.6, 1.6), MIN_SIDE, MAX_SIDE))
    fg, bg = _colours(rng)
    img = Image.new("RGB", (width, height), bg)
    draw = ImageDraw.Draw(img)
    short = min(width, height)
    # Faint distractor lines in a third colour so the background is not flat.
    third = tuple(int(v) for v in rng.integers(0, 256, 3))
    for _ in range(int(rng.integers(0, 4))):
        x0, x1 = rng.uniform(0, width, 2)
        y0, y1 = rng.uniform(0, height, 2)
        draw.line((x0, y0, x1, y1), fill=third, width=max(1, short // 60))
    r = short * float(rng.uniform(0.2, 0.38))
    slack = short / 2.0 - r
    cx = width / 2.0 + float(rng.uniform(-slack, slack)) * 0.8
    cy = height / 2.0 + float(rng.uniform(-slack, slack)) * 0.8
    _draw(kind, draw, cx, cy, r, fg, bg, rng)
    return img


def generate(root, train_per_class=130, val_per_class=30, seed=0, quality=90):
    """Writes the demo data set under `root` (a local folder).

    Args:
      root: output folder; created if needed. Its meta/, train/ and val/
        folders (an earlier generation's) are removed first, so no stale
        image of a larger earlier set survives; nothing else in it is touched.
      train_per_class, val_per_class: images per class in each split.
      seed: everything is a function of the seed, so reruns are byte-identical.
      quality: JPEG quality of the source images.

    Returns:
      dict with paths: train_dir, val_dir, synsets, val_labels.
    """
    meta = os.path.join(root, "meta")
    train_dir = os.path.join(root, "train")
    val_dir = os.path.join(root, "val")
    for folder in (meta, train_dir, val_dir):
        if os.path.isdir(folder) and not os.path.islink(folder):
            shutil.rmtree(folder)
        elif os.path.lexists(folder):
            os.remove(folder)
    for folder in [meta, val_dir] + [os.path.join(train_dir, synset) for synset, _ in CLASSES]:
        os.makedirs(folder, exist_ok=True)
    for c, (synset, _) in enumerate(CLASSES):
        for i in range(train_per_class):
            rng = np.random.default_rng([seed, 0, c, i])
            path = os.path.join(train_dir, synset, "%s_%d.JPEG" % (synset, i))
            draw_image(c, rng).save(path, format="JPEG", quality=quality)
    # Validation: classes interleaved in a seeded order, as in ILSVRC2012_img_val.
    order = np.random.default_rng([seed, 1]).permutation(len(CLASSES) * val_per_class) % len(CLASSES)
    labels = []
    for i, c in enumerate(order, 1):
        rng = np.random.default_rng([seed, 2, i])
        draw_image(int(c), rng).save(os.path.join(val_dir, "ILSVRC2012_val_%08d.JPEG" % i), format="JPEG", quality=quality)
        labels.append(CLASSES[int(c)][0])
    synsets = os.path.join(meta, "LOC_synset_mapping.txt")
    with open(synsets, "w") as f:
        f.writelines("%s %s\n" % pair for pair in CLASSES)
    val_labels = os.path.join(meta, "val_synsets.txt")
    with open(val_labels, "w") as f:
        f.writelines("%s\n" % s for s in labels)
    return {"train_dir": train_dir, "val_dir": val_dir, "synsets": synsets, "val_labels": val_labels}
