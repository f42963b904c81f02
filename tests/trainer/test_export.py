"""trainer.export: the SavedModel of the shared finished run serves JPEG files as evaluation sees them."""
import json
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import model  # noqa: F401  (registers the LRN layer for loading the .keras file)
from preprocessing import images
from tests.helpers.trainer_data import jpeg, make_image, subprocess_env
from trainer import augment, data_info, datasets, export


def test_exported_saved_model_classifies_jpeg_files(finished_run):
    """A fresh process that never imports the project loads the SavedModel and serves JPEG files."""
    jpegs = finished_run["jpegs"]
    script = (
        "import json, sys, tensorflow as tf\n"
        "m = tf.saved_model.load(sys.argv[1])\n"
        "serve = m.signatures['serving_default']\n"
        "paths = json.loads(sys.argv[2])\n"
        "out = serve(image_bytes=tf.constant([open(p, 'rb').read() for p in paths]))\n"
        "print(json.dumps({k: v.numpy().tolist() if v.dtype != tf.string else [[s.decode() for s in r] for r in v.numpy()]\n"
        "                  for k, v in out.items()}))\n"
    )
    saved_model = finished_run["model_dir"] / "export" / "saved_model"
    env = subprocess_env()
    env.pop("PYTHONPATH")
    proc = subprocess.run(
        [sys.executable, "-c", script, str(saved_model), json.dumps([p for p, _ in jpegs])],
        cwd=finished_run["root"], env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    meta = json.loads((finished_run["data"] / "metadata.json").read_text())
    assert len(out["classes"]) == len(jpegs) and all(len(row) == 3 for row in out["classes"])  # top-5 of 3 classes = 3
    for classes, synsets, probs in zip(out["classes"], out["synsets"], out["probabilities"]):
        assert synsets == [meta["synsets"][c] for c in classes]
        assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1.0, abs=1e-4)
    # Serving preprocessing is the validation pipeline's: top-1 over the JPEG files
    # equals the centre-crop top-1 the run measured on the same images.
    correct = sum(classes[0] == label for classes, (_, label) in zip(out["classes"], jpegs))
    results = finished_run["results"]  # eval.json as the run wrote it
    assert correct == round(results["centre_crop"]["top1"] * len(jpegs))


def test_serving_resizes_like_the_beam_job_before_the_eval_crop(finished_run):
    """A larger non-square JPEG is served as evaluation sees its Beam-processed copy.

    The data set stores 72-pixel squares (metadata.json image_size) and the model
    takes 67-pixel centre crops of them; a 144x180 client image must be resized
    like preprocessing.images does first, not centre-cropped at 67 pixels straight
    out of its original resolution.
    """
    info = data_info.read_data_info(str(finished_run["data"]))
    assert info.image_size == 72
    big = make_image(1, 0, 180, np.random.default_rng(1))[18:162]  # 144 x 180, about twice the stored size
    original = jpeg(big)
    stored = images.process_image(original, info.image_size)[0]  # what the Beam job writes
    keras_model = keras.models.load_model(str(finished_run["model_dir"] / "export" / export.KERAS_FILE))

    def probabilities(image):
        return tf.nn.softmax(keras_model(image[tf.newaxis], training=False))[0].numpy()

    evaluated = probabilities(datasets.decode_and_center_crop(tf.constant(stored), 67, info.rgb_mean, info.image_size))
    # The naive serving input: a 67-pixel centre crop straight out of the original resolution.
    naive_input = augment.subtract_mean(augment.to_float(augment.decode_center_crop(tf.constant(original), 67)), info.rgb_mean)
    old = probabilities(naive_input)
    served = tf.saved_model.load(str(finished_run["model_dir"] / "export" / "saved_model"))
    out = served.signatures["serving_default"](image_bytes=tf.constant([original]))
    got = np.zeros(3)
    got[out["classes"].numpy()[0]] = out["probabilities"].numpy()[0]
    new_error, old_error = np.abs(got - evaluated).max(), np.abs(old - evaluated).max()
    assert new_error < 0.2 * old_error, (got, evaluated, old)
    # The model inputs themselves: JPEG re-encoding noise apart, the same pixels.
    new_input = export.serving_image(tf.constant(original), 67, info.image_size, info.rgb_mean)
    eval_input = datasets.decode_and_center_crop(tf.constant(stored), 67, info.rgb_mean, info.image_size)
    assert float(tf.reduce_mean(tf.abs(new_input - eval_input))) < 0.03
    assert float(tf.reduce_mean(tf.abs(naive_input - eval_input))) > 0.1
