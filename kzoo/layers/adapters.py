"""Parameter-efficient layers: bottleneck adapters and LoRA.

`BottleneckAdapter` is the adapter of Houlsby et al. 2019 ("Parameter-Efficient
Transfer Learning for NLP"), also used with Pfeiffer et al.'s placement (one
adapter per block, after the feed-forward sub-layer). `LowRankAdapter` is the
low-rank update of Hu et al. 2021 ("LoRA"): for a projection whose kernel W
is viewed as a 2-D [in, out] matrix, it computes the extra term
`(alpha / rank) * x @ A @ B` with A [in, rank] and B [rank, out], so that the
adapted projection is `x @ (W + (alpha / rank) * A @ B) + b`.

Keras' own `EinsumDense.enable_lora` factorises attention kernels per head
([hidden, heads, r] x [r, head_dim]), which is not Hu et al.'s update; kzoo's
`TransformerEncoderBlock` uses `LowRankAdapter` instead (see its
`lora_rank`).
"""

import math
import string

import keras

from kzoo.layers import activations
from kzoo.layers.trainability import freeze_after_build


@keras.saving.register_keras_serializable(package="kzoo")
class BottleneckAdapter(keras.layers.Layer):
    """A bottleneck adapter with its own skip: `x + up(act(down(x)))`.

    `down` projects the width to `size`, `up` back to the input width.
    Houlsby et al. initialise adapters near the identity (small random
    weights); here the down kernel is truncated-normal(`initializer_range`)
    and the up kernel and both biases are zeros, so that at initialisation
    the adapter is *exactly* the identity and inserting it into a pretrained
    encoder leaves the outputs bitwise unchanged. Gradients still reach the
    up kernel at once (its gradient is `act(down(x))`, not zero).

    Args:
        size: bottleneck width m (the adapter has 2*h*m + m + h parameters
            for input width h).
        activation: bottleneck activation name (see `kzoo.configs.ACTIVATIONS`;
            "gelu" is the exact erf GELU).
        initializer_range: stddev of the truncated-normal down kernel.

    Example:
    >>> adapter = BottleneckAdapter(size=4)
    >>> x = keras.random.normal((2, 3, 8))
    >>> bool(keras.ops.all(adapter(x) == x))  # the identity at init
    True
    >>> adapter.count_params()
    76
    """

    def __init__(self, size, activation="gelu", initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise ValueError(f"adapter size must be a positive integer, got {size!r}")
        self.size = size
        self.activation = activation
        self.initializer_range = initializer_range
        self._activation_fn = activations.get_activation(activation)
        self.supports_masking = True

    def build(self, input_shape):
        hidden_size = input_shape[-1]
        common = dict(dtype=self.dtype_policy)
        self.down = keras.layers.Dense(
            self.size,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=self.initializer_range),
            bias_initializer="zeros",
            name="down",
            **common,
        )
        self.down.build(input_shape)
        self.up = keras.layers.Dense(
            hidden_size, kernel_initializer="zeros", bias_initializer="zeros", name="up", **common
        )
        self.up.build(tuple(input_shape[:-1]) + (self.size,))
        self.built = True
        freeze_after_build(self)

    def call(self, x):
        return x + self.up(self._activation_fn(self.down(x)))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(size=self.size, activation=self.activation, initializer_range=self.initializer_range)
        return config


@keras.saving.register_keras_serializable(package="kzoo")
class LowRankAdapter(keras.layers.Layer):
    """The LoRA update of one projection: `(alpha / rank) * (x @ A) @ B`.

    The adapted projection's kernel W is viewed as a 2-D [in, out] matrix
    (`in` = product of the last `input_axes` input dims, `out` = product of
    `output_dims`), as official BERT stores it: a Keras attention query
    kernel [hidden, heads, head_size] is [hidden, heads*head_size], an
    attention output kernel [heads, head_size, hidden] is
    [heads*head_size, hidden]. A is [in, rank], initialised as PyTorch's
    `kaiming_uniform_(a=sqrt(5))` (uniform in +-1/sqrt(in), Hu et al.'s
    reference code); B is [rank, out], zeros, so the update is exactly zero
    at initialisation. This layer only computes the update; the layer that
    owns the projection adds it to the projection's output (and keeps the
    base kernel and bias frozen).

    Args:
        rank: r, the rank of the update (> 0).
        output_dims: the projection's output dims, e.g. `(heads, head_size)`
            or `(hidden,)`.
        alpha: the scale numerator; None means `rank` (scale 1).
        input_axes: how many trailing input axes the projection contracts
            (1 for a dense layer, 2 for the attention output projection).

    Example:
    >>> lora = LowRankAdapter(rank=2, output_dims=(4, 3))
    >>> tuple(lora(keras.ops.ones((2, 5, 8))).shape)
    (2, 5, 4, 3)
    >>> [tuple(v.shape) for v in lora.weights]  # A and B; 2 * (8 + 12) parameters
    [(8, 2), (2, 12)]
    """

    def __init__(self, rank, output_dims, alpha=None, input_axes=1, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(rank, int) or isinstance(rank, bool) or rank <= 0:
            raise ValueError(f"LoRA rank must be a positive integer, got {rank!r}")
        if alpha is not None and not alpha > 0:
            raise ValueError(f"LoRA alpha must be positive (or None for alpha = rank), got {alpha!r}")
        if input_axes not in (1, 2):
            raise ValueError(f"input_axes must be 1 or 2, got {input_axes!r}")
        self.rank = rank
        self.output_dims = tuple(int(d) for d in output_dims)
        self.alpha = alpha
        self.input_axes = input_axes

    @property
    def scale(self):
        """alpha / rank."""
        return (self.rank if self.alpha is None else self.alpha) / self.rank

    def build(self, input_shape):
        self.input_dims = tuple(int(d) for d in input_shape[-self.input_axes:])
        fan_in = math.prod(self.input_dims)
        self.lora_a = self.add_weight(
            name="lora_a",
            shape=(fan_in, self.rank),
            # kaiming_uniform_(a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
            initializer=keras.initializers.VarianceScaling(scale=1.0 / 3.0, mode="fan_in", distribution="uniform"),
        )
        self.lora_b = self.add_weight(name="lora_b", shape=(self.rank, math.prod(self.output_dims)),
                                      initializer="zeros")
        letters = string.ascii_lowercase.replace("r", "")
        ins = letters[: len(self.input_dims)]
        outs = letters[len(self.input_dims): len(self.input_dims) + len(self.output_dims)]
        self._down_equation = f"...{ins},{ins}r->...r"
        self._up_equation = f"...r,r{outs}->...{outs}"
        self.built = True

    def delta_kernel(self):
        """`scale * A @ B` in the projection kernel's shape (input dims + output dims)."""
        delta = keras.ops.matmul(self.lora_a, self.lora_b) * self.scale
        return keras.ops.reshape(delta, self.input_dims + self.output_dims)

    def call(self, x):
        a = keras.ops.reshape(self.lora_a, self.input_dims + (self.rank,))
        b = keras.ops.reshape(self.lora_b, (self.rank,) + self.output_dims)
        h = keras.ops.einsum(self._down_equation, x, a) * keras.ops.cast(self.scale, x.dtype)
        return keras.ops.einsum(self._up_equation, h, b)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[: len(input_shape) - self.input_axes]) + self.output_dims

    def get_config(self):
        config = super().get_config()
        config.update(rank=self.rank, output_dims=list(self.output_dims), alpha=self.alpha,
                      input_axes=self.input_axes)
        return config
