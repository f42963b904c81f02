"""Export of a trained model: `alexnet.keras` and a SavedModel that serves JPEG bytes.

The SavedModel's `serving_default` signature takes a batch of encoded JPEG
strings (`image_bytes`, what Vertex AI prediction sends as {"b64": ...}) and
returns the top-5 class indices, synsets and probabilities. The decoding,
centre crop and mean subtraction run inside the graph
(`trainer.input_pipeline.decode_and_center_crop`), so clients send raw files.

The exported network is rebuilt in float32 outside any distribution strategy
and given the trained weights: serving on CPUs is fastest in float32, and a
model whose variables are mirrored or float16 would tie the export to the
training setup.
"""
import os

import keras
import tensorflow as tf

from trainer import loop

KERAS_FILE = "alexnet.keras"
SAVED_MODEL_DIR = "saved_model"


class ServingModule(tf.Module):
    """JPEG bytes -> top-k classes, with the preprocessing inside.

    Args:
      model: float32 Keras model from (B, S, S, 3) images to logits.
      synsets: class synsets in label order.
      class_names: class names in label order.
      image_size: S.
      rgb_mean: the training set's mean RGB (pixel scale of the input pipeline).
      top_k: classes returned per image (at most the number of classes).
    """

    def __init__(self, model, synsets, class_names, image_size, rgb_mean, top_k=5):
        super().__init__()
        from trainer import input_pipeline  # imported here: only export needs the serving decoder

        self.model = model
        self._decode = input_pipeline.decode_and_center_crop
        self.synsets = tf.constant([str(s) for s in synsets])
        self.class_names = tf.constant([str(s) for s in class_names])
        self.image_size = int(image_size)
        self.rgb_mean = tf.constant(list(rgb_mean), tf.float32)
        self.top_k = min(int(top_k), len(synsets))
        self.serve = tf.function(self._serve, input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])

    def _serve(self, image_bytes):
        size = self.image_size
        images = tf.map_fn(
            lambda b: self._decode(b, size, self.rgb_mean),
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
        fresh = loop.build_model(config, num_classes)
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
    fresh.set_weights([keras.ops.convert_to_numpy(w) for w in trained_model.weights])
    return fresh


def export(config, trained_model, info, export_dir):
    """Writes export_dir/alexnet.keras and export_dir/saved_model.

    Args:
      config: TrainConfig (model switches, image size).
      trained_model: the trained Keras model (possibly mirrored / mixed precision).
      info: trainer.input_pipeline.DataInfo (num_classes, synsets, class_names, rgb_mean).
      export_dir: destination directory (local or gs://).

    Returns:
      (keras_path, saved_model_dir).
    """
    tf.io.gfile.makedirs(export_dir)
    model = float32_copy(config, trained_model, info.num_classes)
    keras_path = os.path.join(export_dir, KERAS_FILE)
    model.save(keras_path)
    module = ServingModule(model, info.synsets, info.class_names, config.image_size, info.rgb_mean)
    saved_model_dir = os.path.join(export_dir, SAVED_MODEL_DIR)
    tf.saved_model.save(module, saved_model_dir, signatures={"serving_default": module.serve})
    return keras_path, saved_model_dir
