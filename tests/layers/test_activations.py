import math

import numpy as np
import pytest

from kzoo.layers import get_activation
from kzoo.layers.activations import gelu_exact_inference


def test_gelu_exact_and_approximate_match_their_formulas():
    x = np.linspace(-6, 6, 101).astype("float32")
    exact = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x.astype("float64")])
    approx = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    np.testing.assert_allclose(get_activation("gelu")(x), exact, atol=1e-6)
    np.testing.assert_allclose(gelu_exact_inference(x), exact, atol=1e-6)  # what serving copies compute
    np.testing.assert_allclose(get_activation("gelu_new")(x), approx, atol=1e-6)
    # The two forms really differ (by ~1e-3 around |x|~2): the choice matters.
    assert np.abs(np.asarray(get_activation("gelu")(x)) - approx).max() > 1e-4


def test_unknown_activation():
    with pytest.raises(ValueError, match="unknown activation 'gelu2'"):
        get_activation("gelu2")


@pytest.mark.parametrize("dtype, tolerance", [("float32", 1e-6), ("bfloat16", 2e-2)])
def test_gelu_gradient_is_the_derivative_of_x_phi(dtype, tolerance):
    import tensorflow as tf

    x64 = np.linspace(-6, 6, 241)
    phi = np.exp(-0.5 * x64**2) / math.sqrt(2 * math.pi)
    cdf = np.array([0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x64])
    x = tf.constant(x64, dtype)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        ours, reference = get_activation("gelu")(x), tf.nn.gelu(x, approximate=False)
    assert ours.dtype == x.dtype
    np.testing.assert_allclose(tf.cast(tape.gradient(ours, x), "float64"), cdf + x64 * phi, atol=tolerance)
    np.testing.assert_allclose(tf.cast(ours, "float64"), tf.cast(reference, "float64"), atol=tolerance)
    # in a compiled step too (the path training takes)
    grad = tf.function(lambda v: tf.gradients(get_activation("gelu")(v), v)[0], jit_compile=True)(x)
    np.testing.assert_allclose(tf.cast(grad, "float64"), cdf + x64 * phi, atol=tolerance)
