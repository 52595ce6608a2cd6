"""Activation lookup by BERT config name, serialisable by name.

"gelu" is the exact erf form google-research/bert uses; "gelu_new" and its
aliases are the tanh approximation (GPT-2, keras-hub's BertBackbone).
"""

import math

import keras

from kzoo import configs


_SQRT_HALF = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _tf_gelu_exact(x):
    """x * Phi(x) with its derivative, Phi(x) + x * phi(x), written out: the
    backward pass is 7 element-wise kernels reusing the forward Phi(x)
    instead of the ~12 autodiff makes of `tf.nn.gelu` (~25% less time for the
    activation on CPU; the same values to float rounding)."""
    import tensorflow as tf

    @tf.custom_gradient
    def gelu(x):
        cdf = 0.5 + 0.5 * tf.math.erf(x * _SQRT_HALF)

        def grad(dy):
            return dy * (cdf + x * (tf.exp(-0.5 * tf.square(x)) * _INV_SQRT_2PI))

        return x * cdf, grad

    return gelu(x)


@keras.saving.register_keras_serializable(package="kzoo")
def gelu_exact(x):
    """GELU with the erf: x * Phi(x)."""
    if keras.backend.backend() == "tensorflow" and not isinstance(x, keras.KerasTensor):
        return _tf_gelu_exact(keras.ops.convert_to_tensor(x))
    return keras.activations.gelu(x, approximate=False)


@keras.saving.register_keras_serializable(package="kzoo")
def gelu_exact_inference(x):
    """`gelu_exact` for graphs that never take its gradient (the copies exports trace,
    `kzoo.export.precision.serving_copy`): TensorFlow's own erf GELU, which grappler fuses with
    the matmul and bias before it into one oneDNN kernel; `gelu_exact`'s custom gradient hides
    that pattern. The same values to float rounding."""
    return keras.activations.gelu(x, approximate=False)  # `tf.nn.gelu` on the TensorFlow backend


@keras.saving.register_keras_serializable(package="kzoo")
def gelu_approximate(x):
    """GELU with the tanh approximation."""
    return keras.activations.gelu(x, approximate=True)


def get_activation(name):
    """Returns the activation function for a `hidden_act` name."""
    if name in configs.EXACT_GELU:
        return gelu_exact
    if name in configs.APPROXIMATE_GELU:
        return gelu_approximate
    if name in ("silu", "swish"):
        return keras.activations.silu
    if name in ("relu", "tanh"):
        return keras.activations.get(name)
    raise ValueError(f"unknown activation {name!r}; expected one of {list(configs.ACTIVATIONS)}")
