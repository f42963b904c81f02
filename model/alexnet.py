"""AlexNet as a Keras functional model (Krizhevsky, Sutskever, Hinton, NIPS 2012).

    conv1 96@11x11/4 -> act -> lrn1 -> pool1 3/2
    conv2 256@5x5 pad 2 -> act -> lrn2 -> pool2 3/2
    conv3 384@3x3 -> conv4 384@3x3 -> conv5 256@3x3 -> pool5 3/2
    fc6 4096 -> dropout -> fc7 4096 -> dropout -> fc8 num_classes (logits)

62,378,344 parameters with one tower and 1000 classes; 60,965,224 with the
paper's two-GPU connectivity, where conv2, conv4 and conv5 see only the
channels of their own tower.

Input is 227x227: the paper's "224" does not fit its own arithmetic
((224 - 11) / 4 + 1 is not 55, (227 - 11) / 4 + 1 is).
"""
import keras
import tensorflow as tf
from keras import layers, ops

from model.lrn import LocalResponseNormalization

ACTIVATIONS = ("relu", "tanh")
INITS = ("paper", "he")


@keras.saving.register_keras_serializable(package="alexnet")
class TowerConv2D(layers.Conv2D):
    """A Conv2D with `groups` towers computed as separate convolutions.

    Same weights and result as `Conv2D(groups=...)` (kernel shape
    (kh, kw, in_channels / groups, filters), output channels of tower g are
    filters[g * filters / groups:(g + 1) * filters / groups]), in either
    `data_format`. The towers are plain convolutions because TensorFlow's grouped
    convolution is slower on CPU (docs/decisions/model-towers.md), and the paper's
    two GPUs computed it the same way: each tower a convolution over its own share
    of the channels, concatenated.
    """

    def convolution_op(self, inputs, kernel):
        if self.groups == 1:
            return super().convolution_op(inputs, kernel)
        channel_axis = -1 if self.data_format == "channels_last" else 1
        tower_inputs = ops.split(inputs, self.groups, axis=channel_axis)
        # The kernel is (kh, kw, in / groups, filters) in both data formats.
        tower_kernels = ops.split(kernel, self.groups, axis=-1)
        outputs = [
            ops.conv(
                x,
                k,
                strides=list(self.strides),
                padding=self.padding,
                dilation_rate=self.dilation_rate,
                data_format=self.data_format,
            )
            for x, k in zip(tower_inputs, tower_kernels)
        ]
        return ops.concatenate(outputs, axis=channel_axis)


@tf.custom_gradient
def _matmul(x, w):
    """x @ w, with the input gradient computed as (w @ dy^T)^T instead of dy @ w^T.

    Same values. With a small batch, oneDNN runs dy @ w^T (TensorFlow's MatMul
    gradient) several times slower than w @ dy^T on the CPUs this project was
    measured on, and about as fast at batch 128 (docs/decisions/model-dense-gradient.md).
    On GPUs it costs one small transpose more (not measured here).
    """

    def grad(dy):
        dx = tf.transpose(tf.matmul(w, dy, transpose_b=True))
        dw = tf.matmul(x, dy, transpose_a=True)
        return dx, dw

    return tf.matmul(x, w), grad


@keras.saving.register_keras_serializable(package="alexnet")
class FullyConnected(layers.Dense):
    """The paper's fully connected layers: a Dense layer (same weights, same
    result) whose backward pass uses the faster form of the input gradient
    (see `_matmul`) for 2-D inputs."""

    def call(self, inputs, training=None):
        if len(inputs.shape) != 2 or self.lora_enabled or self.quantization_mode is not None:
            return super().call(inputs, training=training)
        x = _matmul(inputs, tf.identity(self.kernel))
        if self.bias is not None:
            x = ops.add(x, self.bias)
        if self.activation is not None:
            x = self.activation(x)
        return x


def _stack(overlapping_pool):
    """(kernel, stride) of the three max-pooling layers."""
    return (3, 2) if overlapping_pool else (2, 2)


def min_image_size(overlapping_pool=True):
    """The smallest square input whose pool5 output is at least 1x1."""
    pool, stride = _stack(overlapping_pool)
    size = 11
    while True:
        s = (size - 11) // 4 + 1  # conv1, valid
        for _ in range(3):  # pool1, pool2, pool5; conv2..conv5 keep the size ("same")
            s = (s - pool) // stride + 1 if s >= pool else 0
        if s >= 1:
            return size
        size += 1


def build_alexnet(
    num_classes=1000,
    image_size=227,
    two_tower=False,
    activation="relu",
    lrn=True,
    overlapping_pool=True,
    dropout_rate=0.5,
    weight_decay=5e-4,
    init="paper",
    name="alexnet",
):
    """Builds AlexNet; the defaults are the paper's single-tower network.

    Args:
      num_classes: size of fc8 (logits).
      image_size: side of the square RGB input (paper: 227). At least
        `min_image_size(overlapping_pool)` (67 with overlapping pooling).
      two_tower: the paper's two-GPU connectivity: conv2, conv4, conv5 see only
        their own tower's half of the channels (conv3 and fc6 see both).
      activation: 'relu' (paper) or 'tanh' (the paper's Figure 1 comparison).
      lrn: local response normalisation after conv1 and conv2 (paper: on).
      overlapping_pool: 3x3 stride-2 pooling (paper) or 2x2 stride 2.
      dropout_rate: dropout after fc6 and fc7 (paper: 0.5; 0 disables).
      weight_decay: the paper's coupled weight decay on kernels (paper: 5e-4).
        Added to the loss as (weight_decay / 2) * ||w||^2, whose gradient
        weight_decay * w enters the momentum update exactly as the paper's rule
        v <- 0.9 v - weight_decay * lr * w - lr * grad. Biases are not decayed.
      init: 'paper': weights N(0, 0.01), biases 1 in conv2, conv4, conv5, fc6,
        fc7 and 0 elsewhere. 'he': He-normal weights and zero biases, which
        trains from scratch on small data sets, where the paper's init can
        sit at chance for several epochs.
      name: model name.

    Returns:
      A functional keras.Model from (batch, image_size, image_size, 3) floats
      to (batch, num_classes) float32 logits.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError("build_alexnet expected num_classes to be an int >= 1. Received: num_classes=%r" % (num_classes,))
    if activation not in ACTIVATIONS:
        raise ValueError("build_alexnet expected activation in %s. Received: activation=%r" % (ACTIVATIONS, activation))
    if init not in INITS:
        raise ValueError("build_alexnet expected init in %s. Received: init=%r" % (INITS, init))
    smallest = min_image_size(overlapping_pool)
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < smallest:
        raise ValueError(
            "build_alexnet expected image_size to be an int >= %d (the smallest input for which pool5 is "
            "at least 1x1). Received: image_size=%r" % (smallest, image_size)
        )
    if not 0.0 <= dropout_rate < 1.0:
        raise ValueError("build_alexnet expected 0 <= dropout_rate < 1. Received: dropout_rate=%r" % (dropout_rate,))
    if weight_decay < 0:
        raise ValueError("build_alexnet expected weight_decay >= 0. Received: weight_decay=%r" % (weight_decay,))

    regularizer = keras.regularizers.L2(weight_decay / 2.0) if weight_decay > 0 else None
    groups = 2 if two_tower else 1
    pool_size, pool_stride = _stack(overlapping_pool)

    def kernel_init():
        if init == "paper":
            return keras.initializers.RandomNormal(mean=0.0, stddev=0.01)
        return keras.initializers.HeNormal()

    def bias_init(one):
        return keras.initializers.Constant(1.0 if (one and init == "paper") else 0.0)

    def conv(filters, size, name, strides=1, padding="same", bias_one=False, tower=False):
        return TowerConv2D(
            filters,
            size,
            strides=strides,
            padding=padding,
            groups=groups if tower else 1,
            activation=activation,
            kernel_initializer=kernel_init(),
            bias_initializer=bias_init(bias_one),
            kernel_regularizer=regularizer,
            name=name,
        )

    def dense(units, name, bias_one=False, act=None, dtype=None):
        return FullyConnected(
            units,
            activation=act,
            kernel_initializer=kernel_init(),
            bias_initializer=bias_init(bias_one),
            kernel_regularizer=regularizer,
            name=name,
            dtype=dtype,
        )

    def pool(name):
        return layers.MaxPooling2D(pool_size, strides=pool_stride, name=name)

    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = conv(96, 11, "conv1", strides=4, padding="valid")(inputs)
    if lrn:
        x = LocalResponseNormalization(name="lrn1")(x)
    x = pool("pool1")(x)
    x = conv(256, 5, "conv2", bias_one=True, tower=True)(x)
    if lrn:
        x = LocalResponseNormalization(name="lrn2")(x)
    x = pool("pool2")(x)
    x = conv(384, 3, "conv3")(x)
    x = conv(384, 3, "conv4", bias_one=True, tower=True)(x)
    x = conv(256, 3, "conv5", bias_one=True, tower=True)(x)
    x = pool("pool5")(x)
    x = layers.Flatten(name="flatten")(x)
    x = dense(4096, "fc6", bias_one=True, act=activation)(x)
    if dropout_rate:
        x = layers.Dropout(dropout_rate, name="dropout6")(x)
    x = dense(4096, "fc7", bias_one=True, act=activation)(x)
    if dropout_rate:
        x = layers.Dropout(dropout_rate, name="dropout7")(x)
    # Logits stay float32 under mixed precision so the softmax cross-entropy is stable.
    logits = dense(num_classes, "fc8", dtype="float32")(x)
    return keras.Model(inputs, logits, name=name)
