"""Local Response Normalization, as defined in Section 3.3 of the paper.

    b[x, y, i] = a[x, y, i] / (k + alpha * sum_{j=max(0, i-n/2)}^{min(N-1, i+n/2)} a[x, y, j]^2) ^ beta

with k=2, n=5, alpha=1e-4, beta=0.75. The sum over the n neighbouring channels
is NOT divided by n. In this layer n = 2 * depth_radius + 1 and k = bias.

Caffe's LRN layer divides alpha by the window size: it computes
    a / (k + (alpha / n) * sum a^2) ^ beta      (with Caffe's default k = 1).
To reproduce a Caffe model with `local_size: n, alpha: A, beta: B, k: K`, use
    LocalResponseNormalization(depth_radius=(n - 1) // 2, bias=K, alpha=A / n, beta=B).
The paper's alpha=1e-4 corresponds to Caffe's alpha=5e-4 with local_size 5 and k=2.
"""
import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="alexnet")
class LocalResponseNormalization(keras.layers.Layer):
    """The paper's cross-channel LRN for channels-last 4-D inputs.

    Args:
      depth_radius: half-width of the channel window; n = 2 * depth_radius + 1 (paper: n=5).
      bias: k in the paper's formula (paper: 2).
      alpha: scale of the sum of squares, not divided by n (paper: 1e-4).
      beta: exponent (paper: 0.75).
    """

    def __init__(self, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75, **kwargs):
        super().__init__(**kwargs)
        if isinstance(depth_radius, bool) or not isinstance(depth_radius, int) or depth_radius < 0:
            raise ValueError(
                "LocalResponseNormalization expected depth_radius to be an int >= 0. "
                "Received: depth_radius=%r" % (depth_radius,)
            )
        for name, value in (("bias", bias), ("alpha", alpha), ("beta", beta)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(
                    "LocalResponseNormalization expected %s to be a number. Received: %s=%r" % (name, name, value)
                )
        if bias <= 0:
            # k > 0 keeps the denominator away from 0 ** beta for all-zero inputs (ReLU makes many).
            raise ValueError("LocalResponseNormalization expected bias > 0. Received: bias=%r" % (bias,))
        if alpha < 0:
            raise ValueError("LocalResponseNormalization expected alpha >= 0. Received: alpha=%r" % (alpha,))
        if beta < 0:
            raise ValueError("LocalResponseNormalization expected beta >= 0. Received: beta=%r" % (beta,))
        self.depth_radius = depth_radius
        self.bias = float(bias)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.supports_masking = True

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                "LocalResponseNormalization expected a 4-D channels-last input (batch, height, width, "
                "channels). Received: input_shape=%s" % (tuple(input_shape),)
            )

    def call(self, inputs):
        # Squares of float16 activations overflow past 256; reduce in float32
        # and cast back so mixed precision stays finite.
        x = tf.cast(inputs, tf.float32)
        y = tf.nn.local_response_normalization(
            x, depth_radius=self.depth_radius, bias=self.bias, alpha=self.alpha, beta=self.beta
        )
        return tf.cast(y, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "depth_radius": self.depth_radius,
            "bias": self.bias,
            "alpha": self.alpha,
            "beta": self.beta,
        }
