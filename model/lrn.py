"""Local Response Normalization, as defined in Section 3.3 of the paper.

    b[x, y, i] = a[x, y, i] / (k + alpha * sum_{j=max(0, i-n/2)}^{min(N-1, i+n/2)} a[x, y, j]^2) ^ beta

with k=2, n=5, alpha=1e-4, beta=0.75. The sum over the n neighbouring channels
is NOT divided by n. In this layer n = 2 * depth_radius + 1 and k = bias.

Caffe's LRN layer divides alpha by the window size: it computes
    a / (k + (alpha / n) * sum a^2) ^ beta      (with Caffe's default k = 1).
To reproduce a Caffe model with `local_size: n, alpha: A, beta: B, k: K`, use
    LocalResponseNormalization(depth_radius=(n - 1) // 2, bias=K, alpha=A / n, beta=B).
The paper's alpha=1e-4 corresponds to Caffe's alpha=5e-4 with local_size 5 and k=2.

How it is computed: the windowed sum of squares is one matrix product with a
banded (channels x channels) 0/1 matrix, and the backward pass is written out
(`_lrn`), so both passes run in the GEMM kernels plus a handful of element-wise
passes instead of TensorFlow's LRN and LRNGrad kernels, which were slower on the
CPUs this project was measured on (docs/decisions/model-lrn.md). The values are
the same formula (tested against a numpy reference, forward and backward, and
against TensorFlow's kernel).

The arithmetic runs in float32 or the input's dtype, whichever is wider: float16
squares overflow past 256, and float64 inputs keep float64 precision.
"""
import keras
import numpy as np
import tensorflow as tf


def window_matrix(channels, depth_radius):
    """The (channels, channels) 0/1 matrix whose column i marks the channels in i's window.

    Symmetric: channel j is in i's window exactly when i is in j's, which is
    why the backward pass can reuse it.
    """
    index = np.arange(channels)
    return (np.abs(index[:, None] - index[None, :]) <= depth_radius).astype(np.float32)


def _negative_power(d, beta):
    """d ** -beta, with the paper's beta=0.75 as rsqrt(d) * sqrt(rsqrt(d)), which
    CPUs compute faster than `tf.pow` (docs/decisions/model-lrn.md)."""
    if beta == 0.75:
        r = tf.math.rsqrt(d)
        return r * tf.sqrt(r)
    if beta == 0.5:
        return tf.math.rsqrt(d)
    if beta == 1.0:
        return tf.math.reciprocal(d)
    return tf.pow(d, -beta)


def _compute_dtype(dtype):
    """float32, or `dtype` when it is a wider float (float64)."""
    dtype = tf.as_dtype(dtype)
    if dtype.is_floating and dtype.size > 4:
        return dtype
    return tf.float32


def _lrn(x, window, bias, alpha, beta):
    """The paper's LRN of channels-last `x` in x's dtype, with its gradient written out.

    With d_i = k + alpha * sum_{j in W(i)} x_j^2 and y_i = x_i * d_i^-beta,
        dL/dx_i = dy_i * d_i^-beta - 2 alpha beta x_i * sum_{j in W(i)} dy_j y_j / d_j
    (the windows are symmetric, so the same band matrix sums both).
    """
    channels = window.shape[0]
    # Constants scaled once here (in float64, then cast to x's dtype), not as
    # element-wise passes over the activations.
    window = window.astype(np.float64)
    forward_band = tf.constant(window * alpha, dtype=x.dtype)
    backward_band = tf.constant(window * (2.0 * alpha * beta), dtype=x.dtype)
    bias = tf.constant(bias, dtype=x.dtype)

    def window_sum(v, band):
        return tf.reshape(tf.matmul(tf.reshape(v, [-1, channels]), band), tf.shape(v))

    @tf.custom_gradient
    def lrn(x):
        d = bias + window_sum(tf.square(x), forward_band)
        scale = _negative_power(d, beta)
        y = x * scale

        def grad(dy):
            return dy * scale - x * window_sum(dy * y / d, backward_band)

        return y, grad

    return lrn(x)


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
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(
                "LocalResponseNormalization expected a 4-D channels-last input (batch, height, width, "
                "channels) with a known number of channels. Received: input_shape=%s" % (tuple(input_shape),)
            )
        # A constant of the layer, not a weight: nothing to train, save or load.
        self._window = window_matrix(int(input_shape[-1]), self.depth_radius)

    def call(self, inputs):
        # Squares of float16 activations overflow past 256: reduce in float32 (or
        # float64 for float64 inputs) and cast back, so mixed precision stays finite.
        x = tf.cast(inputs, _compute_dtype(inputs.dtype))
        y = _lrn(x, self._window, self.bias, self.alpha, self.beta)
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
