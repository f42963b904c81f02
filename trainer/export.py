"""Export of a trained model: `alexnet.keras` and a SavedModel that serves JPEG bytes.

The SavedModel's `serving_default` signature takes a batch of encoded JPEG
strings (`image_bytes`, what Vertex AI prediction sends as {"b64": ...}) and
returns the top-5 class indices, synsets and probabilities. The preprocessing
runs inside the graph (`serving_image`), so clients send raw files: it redoes
what the Beam job did to the stored images (shorter side resized to the stored
size with an antialiased bicubic filter, like Pillow's, and the central square
kept), then what evaluation does (centre crop of the model's input size, mean
subtraction). A data set stored at its original sizes (metadata.json without
`image_size`) is served with the centre crop of the original image, as evaluated.

The exported network is rebuilt in float32 outside any distribution strategy
and given the trained weights: serving on CPUs is fastest in float32, and a
model whose variables are mirrored or float16 would tie the export to the
training setup.
"""
import os

import keras
import tensorflow as tf

from trainer import augment
from trainer import datasets
from trainer import geometry
from trainer import step

KERAS_FILE = "alexnet.keras"
SAVED_MODEL_DIR = "saved_model"


def resize_like_stored(image, stored_size):
    """What preprocessing.images.resize_and_crop does, on a decoded uint8 (H, W, 3) tensor.

    The central square of the image is resized to stored_size x stored_size
    (bicubic with antialiasing: Pillow's resize filters over the whole
    footprint when shrinking) and rounded back to uint8 pixels, as stored.
    """
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    short = tf.minimum(height, width)
    square = tf.image.crop_to_bounding_box(image, (height - short) // 2, (width - short) // 2, short, short)
    resized = tf.image.resize(square, [stored_size, stored_size], method="bicubic", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


def serving_image(jpeg_bytes, image_size, stored_size, rgb_mean):
    """One JPEG of any size -> the float32 (S, S, 3) input evaluation gives its stored copy.

    Args:
      jpeg_bytes: scalar string tensor.
      image_size: S, the model's input side.
      stored_size: the data set's stored side (metadata.json `image_size`), or
        None when the data set kept the original sizes.
      rgb_mean: 3 floats ([0, 1] scale) to subtract, or None.
    """
    if not stored_size:
        return datasets.decode_and_center_crop(jpeg_bytes, image_size, rgb_mean)
    image = resize_like_stored(tf.io.decode_jpeg(jpeg_bytes, channels=3), int(stored_size))
    # Then the centre view evaluation takes of a stored square (trainer.datasets.crop_geometry).
    reference, plain = datasets.crop_geometry(int(stored_size), image_size)
    if plain:
        top = (int(stored_size) - image_size) // 2
        image = tf.image.crop_to_bounding_box(image, top, top, image_size, image_size)
    else:
        image = geometry.image_views(image, image_size, reference, [geometry.centre_offset(reference, image_size)])[0]
    image = augment.to_float(image)
    if rgb_mean is not None:
        image = augment.subtract_mean(image, rgb_mean)
    return image


class ServingModule(tf.Module):
    """JPEG bytes -> top-k classes, with the preprocessing inside.

    Args:
      model: float32 Keras model from (B, S, S, 3) images to logits.
      synsets: class synsets in label order.
      class_names: class names in label order.
      image_size: S.
      rgb_mean: the training set's mean RGB (pixel scale of the input pipeline).
      top_k: classes returned per image (at most the number of classes).
      stored_size: side of the data set's stored images (metadata.json
        `image_size`), or None when it kept the original sizes.
    """

    def __init__(self, model, synsets, class_names, image_size, rgb_mean, top_k=5, stored_size=None):
        super().__init__()
        self.model = model
        self.stored_size = int(stored_size) if stored_size else None
        self.synsets = tf.constant([str(s) for s in synsets])
        self.class_names = tf.constant([str(s) for s in class_names])
        self.image_size = int(image_size)
        self.rgb_mean = tf.constant(list(rgb_mean), tf.float32)
        self.top_k = min(int(top_k), len(synsets))
        self.serve = tf.function(self._serve, input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])

    def _serve(self, image_bytes):
        size = self.image_size
        images = tf.map_fn(
            lambda b: serving_image(b, size, self.stored_size, self.rgb_mean),
            image_bytes,
            fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32),
        )
        probabilities = tf.nn.softmax(tf.cast(self.model(images, training=False), tf.float32))
        top = tf.math.top_k(probabilities, k=self.top_k)
        return {
            "classes": top.indices,
            "synsets": tf.gather(self.synsets, top.indices),
            "class_names": tf.gather(self.class_names, top.indices),
            "probabilities": top.values,
        }


def float32_copy(config, trained_model, num_classes):
    """A fresh float32 AlexNet (no strategy) holding `trained_model`'s weights."""
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("float32")
    try:
        fresh = step.build_model(config, num_classes)
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
    fresh.set_weights([keras.ops.convert_to_numpy(w) for w in trained_model.weights])
    return fresh


def export(config, trained_model, info, export_dir):
    """Writes export_dir/alexnet.keras and export_dir/saved_model.

    Args:
      config: TrainConfig (model switches, image size).
      trained_model: the trained Keras model (possibly mirrored / mixed precision).
      info: trainer.data_info.DataInfo (num_classes, synsets, class_names, rgb_mean,
        image_size: the stored size the serving signature resizes to).
      export_dir: destination directory (local or gs://).

    Returns:
      (keras_path, saved_model_dir).
    """
    tf.io.gfile.makedirs(export_dir)
    model = float32_copy(config, trained_model, info.num_classes)
    keras_path = os.path.join(export_dir, KERAS_FILE)
    model.save(keras_path)
    module = ServingModule(model, info.synsets, info.class_names, config.image_size, info.rgb_mean, stored_size=info.image_size)
    saved_model_dir = os.path.join(export_dir, SAVED_MODEL_DIR)
    tf.saved_model.save(module, saved_model_dir, signatures={"serving_default": module.serve})
    return keras_path, saved_model_dir
