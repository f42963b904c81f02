"""The paper's optimizer: SGD with momentum and coupled weight decay in the update.

Section 5 of the paper updates each weight w with

    v <- 0.9 v - 0.0005 * lr * w - lr * dL/dw
    w <- w + v

The weight-decay term enters the momentum, so it is L2 regularisation (the
gradient of (0.0005 / 2) * ||w||^2), not the "decoupled" decay of
`keras.optimizers.SGD(weight_decay=...)`, which shrinks w outside the momentum.

`PaperSGD` adds 0.0005 * w to each kernel's gradient inside the update instead
of adding the L2 term to the loss. The arithmetic is the paper's; the cost is
not. An L2 term in the loss makes the step square every kernel, sum it,
broadcast the sum's gradient back over the kernel, scale it and add it to the
data gradient: five passes over 61 million weights each step (fc6 alone is
151 MB). Here it is a multiply and an add per weight in the update. PyTorch's
`SGD(weight_decay=...)` does the same.

Use it with a model built with `build_alexnet(..., weight_decay=0)`: the
model's default adds the L2 term to the loss, and both together decay twice.

The update stays Keras's own element-wise ops (seven per kernel, about 15
reads and writes of a weight-sized tensor). Fusing it into one XLA-compiled
pass per variable made the update itself faster but not the train step: much
of the update already runs beside the convolutions (the measurement:
docs/decisions/trainer-cpu.md).
"""
import keras
import tensorflow as tf


def decays(variable):
    """Whether the paper's weight decay applies: kernels (2-D and up), not biases."""
    return len(variable.shape) > 1


@keras.saving.register_keras_serializable(package="alexnet")
class PaperSGD(keras.optimizers.SGD):
    """SGD with momentum whose gradients include `l2 * w` for every kernel.

    Args:
      learning_rate: a float or a keras LearningRateSchedule.
      momentum: the paper's 0.9.
      l2: the coupled weight decay (the paper's 0.0005); 0 for none. Biases
        (1-D variables) are not decayed.
      **kwargs: the rest of keras.optimizers.SGD's arguments (not weight_decay:
        that would be decoupled decay on top of this one).
    """

    def __init__(self, learning_rate=0.01, momentum=0.9, l2=5e-4, **kwargs):
        if kwargs.get("weight_decay"):
            raise ValueError(
                "PaperSGD applies the paper's coupled weight decay through `l2`; keras' decoupled weight_decay "
                "would decay twice. Received: weight_decay=%r" % (kwargs["weight_decay"],)
            )
        if isinstance(l2, bool) or not isinstance(l2, (int, float)) or l2 < 0:
            raise ValueError("PaperSGD expected l2 to be a number >= 0. Received: l2=%r" % (l2,))
        super().__init__(learning_rate=learning_rate, momentum=momentum, **kwargs)
        self.l2 = float(l2)

    def update_step(self, gradient, variable, learning_rate):
        if self.l2 and decays(variable):
            value = variable.value if isinstance(variable, keras.Variable) else variable
            gradient = tf.cast(gradient, variable.dtype) + tf.cast(self.l2, variable.dtype) * value
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "l2": self.l2}


def l2_penalty(variables, l2):
    """(l2 / 2) * sum of the squared kernels: the loss term PaperSGD's decay is the gradient of.

    For reporting the full objective; it takes no part in the gradient.
    """
    kernels = [tf.cast(v, tf.float32) for v in variables if decays(v)]
    if not l2 or not kernels:
        return tf.constant(0.0, tf.float32)
    return float(l2) * tf.add_n([tf.nn.l2_loss(k) for k in kernels])  # l2_loss is sum(k ** 2) / 2
