"""The four-layer convolutional network of the paper's Figure 1.

Figure 1 compares ReLU and tanh in "a four-layer convolutional neural network"
on CIFAR-10. The network is cuda-convnet's fast CIFAR-10 model
(`layers-80sec.cfg`), three 5x5 convolutions and a fully-connected softmax
layer, without response normalisation or any other regularisation ("no
regularization of any kind was employed"):

    conv1 32@5x5 pad 2 -> act -> pool1 max 3/2
    conv2 32@5x5 pad 2 -> act -> pool2 avg 3/2
    conv3 64@5x5 pad 2 -> act -> pool3 avg 3/2
    fc4 num_classes (logits)

On 32x32 inputs the pooled maps are 16, 8 and 4 pixels wide; 89,578
parameters for 10 classes.
"""
import keras
from keras import layers

from model.alexnet import ACTIVATIONS

# Initialisations of this small network (not AlexNet's `model.alexnet.INITS`): Glorot, He, and
# cuda-convnet's fixed normal standard deviations from layers-80sec.cfg.
FIGURE1_INITS = ("glorot", "he", "convnet")


def _initializer(init, layer_index, seed):
    if init == "glorot":
        return keras.initializers.GlorotUniform(seed=seed)
    if init == "he":
        return keras.initializers.HeNormal(seed=seed)
    # cuda-convnet's layers-80sec.cfg: initW 0.0001 for conv1 (its pixels are
    # 0..255, ours 0..1, hence 255x larger here) and 0.01 for the other layers.
    return keras.initializers.RandomNormal(stddev=0.0255 if layer_index == 0 else 0.01, seed=seed)


def build_figure1_net(activation="relu", num_classes=10, image_size=32, init="glorot", seed=0):
    """Builds the Figure 1 network.

    The same `init` and `seed` give the same initial weights for either
    activation, so a ReLU run and a tanh run start from one point.

    Args:
      activation: 'relu' or 'tanh'.
      num_classes: size of the logits layer.
      image_size: side of the square RGB input (at least 8: three stride-2 pools).
      init: 'glorot' (Glorot uniform), 'he' (He normal) or 'convnet'
        (cuda-convnet's fixed normal std devs); biases are 0.
      seed: seed of the weight initialisers.

    Returns:
      A functional keras.Model from (batch, image_size, image_size, 3) floats
      to (batch, num_classes) float32 logits.
    """
    if activation not in ACTIVATIONS:
        raise ValueError("build_figure1_net expected activation in %s. Received: activation=%r" % (ACTIVATIONS, activation))
    if init not in FIGURE1_INITS:
        raise ValueError("build_figure1_net expected init in %s. Received: init=%r" % (FIGURE1_INITS, init))
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise ValueError("build_figure1_net expected image_size to be an int >= 8. Received: image_size=%r" % (image_size,))
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError("build_figure1_net expected num_classes to be an int >= 2. Received: num_classes=%r" % (num_classes,))

    def conv(filters, index):
        return layers.Conv2D(
            filters,
            5,
            padding="same",
            activation=activation,
            kernel_initializer=_initializer(init, index, seed + index),
            name="conv%d" % (index + 1),
        )

    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = conv(32, 0)(inputs)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    x = conv(32, 1)(x)
    x = layers.AveragePooling2D(3, strides=2, padding="same", name="pool2")(x)
    x = conv(64, 2)(x)
    x = layers.AveragePooling2D(3, strides=2, padding="same", name="pool3")(x)
    x = layers.Flatten(name="flatten")(x)
    logits = layers.Dense(num_classes, kernel_initializer=_initializer(init, 3, seed + 3), name="fc4")(x)
    return keras.Model(inputs, logits, name="figure1_%s" % activation)
