"""BERT's optimiser: AdamW with warm-up schedules and discriminative
(layer-wise) learning rates.

* Schedules (`keras.optimizers.schedules.LearningRateSchedule`, serialisable,
  all counting global optimizer steps): `WarmupLinearDecay` (BERT),
  `SlantedTriangular` (ULMFiT), `WarmupCosineDecay`; `create_schedule` picks
  one by name.
* `AdamW`: Keras AdamW with a per-variable learning-rate multiplier that
  scales both the Adam step and the decoupled weight decay, keyed by
  `variable.path` so it survives `model.save()` / `keras.models.load_model`,
  and a fused TensorFlow update (same math, far fewer kernels).
* `layerwise_lr_groups` / `lr_multipliers`: ELECTRA-style layer-wise decay
  for kzoo BERT models.
* `create_optimizer`: BERT's fine-tuning optimiser.
"""

import collections
import math
import types

import keras
from keras import ops

SCHEDULES = ("linear", "slanted_triangular", "cosine", "constant")
OPTIMIZERS = ("adamw", "adam")
WEIGHT_DECAY_EXCLUDE_NAMES = ("bias", "gamma", "beta")
# Variable dtypes updated by the fused TensorFlow kernels (others: Keras' path).
_FUSED_DTYPES = ("float32", "float64")


def _check_steps(total_steps, warmup_steps):
    if total_steps <= 0 or not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"need 0 <= warmup_steps ({warmup_steps}) <= total_steps ({total_steps}), total > 0")


@keras.saving.register_keras_serializable(package="kzoo")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to `peak` over `warmup_steps`, then linear decay
    to 0 at `total_steps` (google-research/bert's `optimization.py` schedule).
    Steps are global optimizer steps.

    Args:
        peak: learning rate reached at the end of warm-up.
        total_steps: step at which the rate reaches zero.
        warmup_steps: length of the warm-up.

    Example:
    >>> schedule = WarmupLinearDecay(1e-3, total_steps=100, warmup_steps=10)
    >>> [round(float(schedule(step)), 7) for step in (5, 10, 55)]
    [0.0005, 0.001, 0.0005]
    """

    def __init__(self, peak, total_steps, warmup_steps=0):
        _check_steps(total_steps, warmup_steps)
        self.peak = peak
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warmup = step / max(self.warmup_steps, 1)
        decay = (self.total_steps - step) / max(self.total_steps - self.warmup_steps, 1)
        fraction = keras.ops.where(step < self.warmup_steps, warmup, decay)
        return self.peak * keras.ops.clip(fraction, 0.0, 1.0)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps}


@keras.saving.register_keras_serializable(package="kzoo")
class WarmupConstant(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to `peak` over `warmup_steps`, then `peak` for
    good (`warmup_steps` 0: `peak` from the first step, as a plain float rate).

    Example:
    >>> schedule = WarmupConstant(1e-3, total_steps=100, warmup_steps=10)
    >>> [round(float(schedule(step)), 7) for step in (5, 10, 99, 500)]
    [0.0005, 0.001, 0.001, 0.001]
    """

    def __init__(self, peak, total_steps, warmup_steps=0):
        _check_steps(total_steps, warmup_steps)
        self.peak = peak
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        if not self.warmup_steps:
            return keras.ops.cast(self.peak, "float32") + 0.0 * step
        return self.peak * keras.ops.minimum(step / self.warmup_steps, 1.0)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps}


@keras.saving.register_keras_serializable(package="kzoo")
class SlantedTriangular(keras.optimizers.schedules.LearningRateSchedule):
    """ULMFiT's slanted triangular learning rate (Howard & Ruder 2018, eq. 3).

    With `T = total_steps` and `cut = floor(T * cut_fraction)`::

        p  = t / cut                                     if t < cut
           = 1 - (t - cut) / (cut * (1 / cut_fraction - 1))  otherwise
        lr = peak * (1 + p * (ratio - 1)) / ratio

    so the rate rises linearly from `peak / ratio` at step 0 to `peak` at
    `cut`, then falls linearly back to `peak / ratio` at `T`. Past `T`, `p` is
    clipped at 0 (the rate stays at `peak / ratio`). `t` is the global
    optimizer step. (`cut` is computed with a 1e-9 tolerance so that
    `cut_fraction = w / T` gives `cut = w` despite float rounding.)

    Args:
        peak: maximum learning rate (`eta_max`), reached at step `cut`.
        total_steps: `T`, the number of training steps.
        cut_fraction: fraction of `T` spent increasing the rate, in (0, 1).
        ratio: how much smaller the lowest rate is than `peak` (>= 1).

    Example:
    >>> schedule = SlantedTriangular(1e-2, total_steps=100, cut_fraction=0.1, ratio=32)
    >>> round(float(schedule(0)), 7), round(float(schedule(10)), 7), round(float(schedule(100)), 7)
    (0.0003125, 0.01, 0.0003125)
    """

    def __init__(self, peak, total_steps, cut_fraction=0.1, ratio=32):
        if total_steps <= 0:
            raise ValueError(f"total_steps must be positive, got {total_steps}")
        if not 0.0 < cut_fraction < 1.0:
            raise ValueError(f"cut_fraction must be in (0, 1), got {cut_fraction}")
        if ratio < 1:
            raise ValueError(f"ratio must be >= 1, got {ratio}")
        cut = math.floor(total_steps * cut_fraction + 1e-9)
        if cut < 1:
            raise ValueError(
                f"total_steps * cut_fraction = {total_steps} * {cut_fraction} < 1: no warm-up step; "
                "use more steps or a larger cut_fraction"
            )
        self.peak = peak
        self.total_steps = total_steps
        self.cut_fraction = cut_fraction
        self.ratio = ratio
        self.cut = cut

    def __call__(self, step):
        t = keras.ops.cast(step, "float32")
        cut = float(self.cut)
        rising = t / cut
        falling = 1.0 - (t - cut) / (cut * (1.0 / self.cut_fraction - 1.0))
        p = keras.ops.maximum(keras.ops.where(t < cut, rising, falling), 0.0)
        return self.peak * (1.0 + p * (self.ratio - 1.0)) / self.ratio

    def get_config(self):
        return {
            "peak": self.peak,
            "total_steps": self.total_steps,
            "cut_fraction": self.cut_fraction,
            "ratio": self.ratio,
        }


@keras.saving.register_keras_serializable(package="kzoo")
class WarmupCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to `peak` over `warmup_steps`, then cosine decay
    from `peak` to `peak * min_fraction` at `total_steps` (constant after).

    For `warmup_steps <= t <= total_steps`, with
    `q = (t - warmup_steps) / (total_steps - warmup_steps)`:
    `lr = peak * (min_fraction + (1 - min_fraction) * (1 + cos(pi * q)) / 2)`.
    Steps are global optimizer steps.

    Args:
        peak: learning rate at the end of warm-up.
        total_steps: step at which the rate reaches `peak * min_fraction`.
        warmup_steps: length of the linear warm-up.
        min_fraction: final rate as a fraction of `peak`, in [0, 1].

    Example:
    >>> schedule = WarmupCosineDecay(1e-3, total_steps=110, warmup_steps=10)
    >>> [round(float(schedule(step)), 7) for step in (5, 10, 60, 110)]
    [0.0005, 0.001, 0.0005, 0.0]
    """

    def __init__(self, peak, total_steps, warmup_steps=0, min_fraction=0.0):
        _check_steps(total_steps, warmup_steps)
        if not 0.0 <= min_fraction <= 1.0:
            raise ValueError(f"min_fraction must be in [0, 1], got {min_fraction}")
        self.peak = peak
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.min_fraction = min_fraction

    def __call__(self, step):
        t = keras.ops.cast(step, "float32")
        warmup = t / max(self.warmup_steps, 1)
        q = keras.ops.clip((t - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1), 0.0, 1.0)
        q = keras.ops.where(t >= self.total_steps, 1.0, q)  # also when warmup_steps == total_steps
        cosine = self.min_fraction + (1.0 - self.min_fraction) * 0.5 * (1.0 + keras.ops.cos(math.pi * q))
        return self.peak * keras.ops.where(t < self.warmup_steps, warmup, cosine)

    def get_config(self):
        return {
            "peak": self.peak,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "min_fraction": self.min_fraction,
        }


def create_schedule(name, peak, total_steps, warmup_steps=0):
    """A learning-rate schedule by name.

    Args:
        name: one of `SCHEDULES`: "linear" (`WarmupLinearDecay`),
            "slanted_triangular" (`SlantedTriangular`, with
            `cut_fraction = warmup_steps / total_steps` when `warmup_steps > 0`
            else 0.1, and ratio 32), "cosine" (`WarmupCosineDecay` to 0) or
            "constant" (`WarmupConstant`: warm-up, if any, then the peak).
        peak: peak learning rate.
        total_steps: total optimizer steps.
        warmup_steps: warm-up steps.

    Example:
    >>> schedule = create_schedule("cosine", 1e-3, total_steps=110, warmup_steps=10)
    >>> type(schedule).__name__, round(float(schedule(10)), 7)
    ('WarmupCosineDecay', 0.001)
    """
    if name == "linear":
        return WarmupLinearDecay(peak, total_steps, warmup_steps)
    if name == "slanted_triangular":
        _check_steps(total_steps, warmup_steps)
        cut_fraction = warmup_steps / total_steps if warmup_steps > 0 else 0.1
        return SlantedTriangular(peak, total_steps, cut_fraction=cut_fraction)
    if name == "cosine":
        return WarmupCosineDecay(peak, total_steps, warmup_steps)
    if name == "constant":
        return WarmupConstant(peak, total_steps, warmup_steps)
    raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")


@keras.saving.register_keras_serializable(package="kzoo")
class AdamW(keras.optimizers.AdamW):
    """Keras AdamW with per-variable learning-rate multipliers.

    Variable `v` with multiplier `m(v)` is updated with learning rate
    `lr(step) * m(v)` both in its Adam step and in its decoupled weight decay
    (`v -= lr(step) * m(v) * weight_decay * v`), as the layer-wise decay of
    ELECTRA / BERT fine-tuning code does. Variables without a multiplier use
    1.0.

    Multipliers are keyed by `variable.path` (e.g.
    `"transformer_layer_0/attention/query/kernel"`) and resolved to variables
    when the optimizer is built; they are part of `get_config()`, so a compiled
    model saved with `model.save("m.keras")` reloads with the same
    multipliers. `weight_decay_exclude_names` (name substrings excluded from
    weight decay, as `exclude_from_weight_decay(var_names=...)`) is saved too.

    On the TensorFlow backend the Adam step of each float32/float64 variable
    is one fused `ResourceApplyAdam` kernel instead of Keras' ~12 element-wise
    ops: the same arithmetic (see `_fused_update_step`), also under XLA,
    `tf.distribute` and loss scaling. `amsgrad=True`, other dtypes and other
    backends take Keras' update.

    Args:
        learning_rate: float or `LearningRateSchedule`.
        weight_decay: decoupled weight decay rate.
        lr_multipliers: mapping `variable.path -> float` (see
            `lr_multipliers()`), or None.
        weight_decay_exclude_names: variable-name substrings to exclude from
            weight decay, e.g. `("bias", "gamma", "beta")`.
        **kwargs: other `keras.optimizers.AdamW` arguments (beta_1, beta_2,
            epsilon, global_clipnorm, ...).

    Example:
    >>> dense = keras.layers.Dense(1)
    >>> dense.build((None, 2))
    >>> opt = AdamW(1e-3, lr_multipliers={dense.kernel.path: 0.5})
    >>> opt.build(dense.trainable_variables)
    >>> opt.lr_multiplier(dense.kernel), opt.lr_multiplier(dense.bias)
    (0.5, 1.0)
    """

    def __init__(
        self,
        learning_rate=0.001,
        weight_decay=0.004,
        lr_multipliers=None,
        weight_decay_exclude_names=None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay, **kwargs)
        multipliers = {}
        for path, value in dict(lr_multipliers or {}).items():
            if not isinstance(path, str):
                raise TypeError(f"lr_multipliers keys must be variable paths (str), got {path!r}")
            value = float(value)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"lr multiplier for {path!r} must be finite and >= 0, got {value}")
            multipliers[path] = value
        # A read-only mapping: Keras' tracker would wrap a plain dict.
        self._lr_multipliers = types.MappingProxyType(multipliers)
        self._weight_decay_exclude_names = tuple(weight_decay_exclude_names or ())
        self._variable_lr_multipliers = ()
        if self._weight_decay_exclude_names:
            self.exclude_from_weight_decay(var_names=list(self._weight_decay_exclude_names))

    @property
    def lr_multipliers(self):
        """The `variable.path -> multiplier` mapping (read-only)."""
        return self._lr_multipliers

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        if self._lr_multipliers:
            paths = [v.path for v in var_list]
            if var_list and not set(paths) & set(self._lr_multipliers):
                raise ValueError(
                    "none of the trainable variables' paths is a key of lr_multipliers "
                    f"(e.g. variable {paths[0]!r} vs key {next(iter(self._lr_multipliers))!r}); "
                    "build the multipliers from this model (kzoo.training.lr_multipliers)"
                )
        self._variable_lr_multipliers = tuple(self._lr_multipliers.get(v.path, 1.0) for v in var_list)

    def lr_multiplier(self, variable):
        """The multiplier (python float) used for `variable` (1.0 if none)."""
        if not self._variable_lr_multipliers:
            return self._lr_multipliers.get(getattr(variable, "path", None), 1.0)
        try:
            return self._variable_lr_multipliers[self._get_variable_index(variable)]
        except KeyError:
            return 1.0

    # The fused TensorFlow update (see `update_step`); set to False on an
    # instance for Keras' unfused arithmetic (same math, slower).
    _fused_kernels = True

    def _fused_update(self, variable):
        """Whether `variable`'s Adam step is the fused TensorFlow kernel."""
        return (
            self._fused_kernels
            and not self.amsgrad
            and keras.backend.backend() == "tensorflow"
            and keras.backend.standardize_dtype(variable.dtype) in _FUSED_DTYPES
            and all(isinstance(x, (int, float)) for x in (self.beta_1, self.beta_2, self.epsilon))
            and self.beta_2 > 0
        )

    def update_step(self, gradient, variable, learning_rate):
        multiplier = self.lr_multiplier(variable)
        if multiplier != 1.0:
            learning_rate = ops.multiply(ops.cast(learning_rate, variable.dtype), multiplier)
        if self._fused_update(variable):
            self._fused_update_step(gradient, variable, learning_rate)
        else:
            super().update_step(gradient, variable, learning_rate)

    def _fused_update_step(self, gradient, variable, learning_rate):
        """Keras' Adam step for one variable as one fused `ResourceApplyAdam`
        kernel instead of ~12 element-wise ones: `m += (g - m) * (1 - b1)`,
        `v += (g^2 - v) * (1 - b2)`,
        `var -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)`, with
        Keras' bias correction and epsilon outside the sqrt. (The decoupled
        weight decay stays in `_apply_weight_decay`, before every Adam step,
        as in Keras: grappler already folds its two scalar factors, so it is
        one multiply and one in-place subtract; a fused
        `ResourceApplyGradientDescent` measured no faster.)

        `variable` is the per-replica component inside
        `distribution.extended.update`, and the slots' `.handle` resolve to
        the same replica there. The result equals Keras up to float rounding:
        the kernels compute `1 - beta` in the variable's dtype where Keras
        rounds the float64 `1 - beta` (for beta_2 = 0.999 the second moment
        differs by 1.3e-5 relative; Keras' own bias correction uses the
        rounded beta_2, as the kernel does).
        """
        import tensorflow as tf

        if isinstance(variable, keras.Variable):
            variable = variable.value
        dtype = variable.dtype
        index = self._get_variable_index(variable)
        m = self._momentums[index]
        v = self._velocities[index]
        m = m.value if isinstance(m, keras.Variable) else m
        v = v.value if isinstance(v, keras.Variable) else v
        lr = tf.cast(learning_rate, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        local_step = tf.cast(self.iterations + 1, dtype)
        if isinstance(gradient, tf.IndexedSlices):
            gradient = tf.IndexedSlices(tf.cast(gradient.values, dtype), gradient.indices, gradient.dense_shape)
            # (Embedding gradients, when no clipping densified them.) Keras
            # squares the slices before summing duplicate rows: its second
            # moment takes sum(g_i^2) per row, not (sum g_i)^2 as the kernel
            # would. Pre-add the difference, scaled so that the
            # kernel's `v * b2 + g^2 * (1 - b2)` comes out as Keras' value;
            # per slice `g_i^2 - g_i * G_row` (G_row = sum over the row's
            # slices) sums to `sum(g_i^2) - G_row^2`, and to exactly 0 for
            # rows without duplicates.
            dense = tf.convert_to_tensor(gradient)
            values = gradient.values
            correction = values * values - values * tf.gather(dense, gradient.indices)
            tf.raw_ops.ResourceScatterAdd(
                resource=v.handle, indices=gradient.indices, updates=correction * ((1 - beta_2) / beta_2)
            )
            gradient = dense
        else:
            gradient = tf.cast(gradient, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle,
            m=m.handle,
            v=v.handle,
            beta1_power=tf.pow(beta_1, local_step),
            beta2_power=tf.pow(beta_2, local_step),
            lr=lr,
            beta1=beta_1,
            beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype),
            grad=gradient,
        )

    def _decayed_lr(self, variable):
        lr = ops.cast(self.learning_rate, variable.dtype)
        multiplier = self.lr_multiplier(variable)
        return lr if multiplier == 1.0 else ops.multiply(lr, multiplier)

    def _apply_weight_decay(self, variables):
        if self.weight_decay is None:
            return
        if keras.backend.backend() != "tensorflow":
            for variable in variables:
                if self._use_weight_decay(variable):
                    wd = ops.cast(self.weight_decay, variable.dtype)
                    variable.assign(variable - variable * wd * self._decayed_lr(variable))
            return

        # As keras' TF optimizer: one update per (mirrored) component.
        import tensorflow as tf

        def distributed_apply_weight_decay(distribution, variables):
            def weight_decay_fn(variable):
                if self._use_weight_decay(variable):
                    wd = tf.cast(self.weight_decay, variable.dtype)
                    variable.assign_sub(variable * wd * self._decayed_lr(variable))

            for variable in variables:
                if isinstance(variable, keras.Variable):
                    variable = variable.value
                distribution.extended.update(variable, weight_decay_fn, group=False)

        tf.__internal__.distribute.interim.maybe_merge_call(
            distributed_apply_weight_decay, self._distribution_strategy, variables
        )

    def get_config(self):
        config = super().get_config()
        config["lr_multipliers"] = dict(self._lr_multipliers)
        config["weight_decay_exclude_names"] = list(self._weight_decay_exclude_names)
        return config


def layerwise_lr_groups(model, decay, embeddings_multiplier=None, head_multiplier=1.0):
    """Groups a kzoo model's variables for layer-wise learning-rate decay.

    With `L` transformer blocks (layer `l = 1..L`, embeddings = layer 0):

    * `"embeddings"`: the encoder's `embeddings` layer (and the embedding
      projection of ALBERT / ELECTRA-Small), multiplier `decay ** L` (or
      `embeddings_multiplier`);
    * `"layer_{i}"` for block `transformer_layer_{i}`, `i = 0..L-1`:
      multiplier `decay ** (L - 1 - i)`, i.e. `decay ** (L - l)` with the
      1-based `l = i + 1`, so the top block gets 1.0;
    * `"head"`: every other variable of the model (pooler, `final_layer_norm`,
      task heads), multiplier `head_multiplier`.

    ALBERT's blocks are shared across depth, so there `L` counts its shared
    block groups and `"layer_{g}"` is group g (the groups of
    `kzoo.training.freezing.layer_groups`): a block that runs at several
    depths gets one rate, its group's; with one group (every released
    ALBERT) that is the top rate 1.0 and the embeddings get `decay`.

    Every variable of `model` (trainable or not) is in exactly one group
    (shared variables go to the first group above that holds them).

    Args:
        model: a kzoo model holding one BERT encoder (see
            `kzoo.models.find_encoder`), or the encoder itself.
        decay: per-layer decay factor, > 0 (typically 0.65 - 0.95).
        embeddings_multiplier: override for the embeddings' multiplier.
        head_multiplier: multiplier of the "head" group.

    Returns:
        An ordered dict `group name -> (multiplier, [variables])`, ordered
        embeddings, layer_0, ..., layer_{L-1}, head.

    Example:
    >>> from kzoo import configs, models
    >>> config = configs.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2,
    ...                             num_attention_heads=2, intermediate_size=32)
    >>> groups = layerwise_lr_groups(models.bert_classifier(config, 3), decay=0.5)
    >>> [(name, m) for name, (m, _) in groups.items()]
    [('embeddings', 0.25), ('layer_0', 0.5), ('layer_1', 1.0), ('head', 1.0)]
    """
    from kzoo.models.walk import encoder_parts, find_encoder

    if not decay > 0:
        raise ValueError(f"decay must be > 0, got {decay}")
    parts = encoder_parts(find_encoder(model))
    num_layers = len(parts.block_groups)
    names = [b.name for group in parts.block_groups for b in group]
    shared = all(name.startswith("transformer_group_") for name in names)  # ALBERT's, grouped by encoder_parts
    if not shared and names != [f"transformer_layer_{i}" for i in range(num_layers)]:
        raise ValueError(f"expected encoder blocks transformer_layer_0..{num_layers - 1}, got {names}")
    embeddings = [parts.embeddings] + ([parts.projection] if parts.projection is not None else [])

    groups = collections.OrderedDict()
    seen = set()

    def claim(variables):
        claimed = []
        for v in variables:
            if id(v) not in seen:
                seen.add(id(v))
                claimed.append(v)
        return claimed

    emb_m = decay**num_layers if embeddings_multiplier is None else embeddings_multiplier
    groups["embeddings"] = (float(emb_m), claim([v for layer in embeddings for v in layer.weights]))
    for i, blocks in enumerate(parts.block_groups):
        groups[f"layer_{i}"] = (float(decay ** (num_layers - 1 - i)), claim([v for b in blocks for v in b.weights]))
    groups["head"] = (float(head_multiplier), claim(model.weights))
    return groups


def lr_multipliers(groups):
    """`{variable.path: multiplier}` for `AdamW(lr_multipliers=...)` from
    `layerwise_lr_groups`-style groups (`name -> (multiplier, variables)`).

    Raises ValueError when two different variables share a path but not a
    multiplier (e.g. two encoders in one model).

    Example:
    >>> dense = keras.layers.Dense(1)
    >>> dense.build((None, 2))
    >>> lr_multipliers({"all": (0.5, dense.weights)}) == {dense.kernel.path: 0.5, dense.bias.path: 0.5}
    True
    """
    out, owner = {}, {}
    for name, (multiplier, variables) in groups.items():
        for v in variables:
            path = v.path
            if path in out and out[path] != float(multiplier):
                raise ValueError(
                    f"variable path {path!r} is in groups {owner[path]!r} and {name!r} with different "
                    "multipliers; paths must identify variables uniquely"
                )
            out[path] = float(multiplier)
            owner[path] = name
    return out


_multipliers_from_groups = lr_multipliers


def create_optimizer(
    learning_rate,
    num_train_steps,
    warmup_steps=0,
    weight_decay=0.01,
    clipnorm=1.0,
    schedule="linear",
    lr_multipliers=None,
    optimizer="adamw",
):
    """AdamW as BERT fine-tunes: beta_2 0.999, epsilon 1e-6, decoupled weight
    decay on everything but biases and LayerNorm parameters, global-norm
    gradient clipping, and a warm-up schedule. `optimizer="adam"` is Keras'
    (and keras-hub's `compile()` default) Adam instead: epsilon 1e-7 and no
    weight decay (`weight_decay` must then be 0).

    Args:
        learning_rate: peak learning rate.
        num_train_steps: total optimizer steps (epochs * steps per epoch).
        warmup_steps: warm-up steps (e.g. 10% of `num_train_steps`).
        weight_decay: decoupled weight decay rate.
        clipnorm: global gradient-norm clip, or None.
        schedule: a name in `SCHEDULES` (see `create_schedule`).
        lr_multipliers: None, a `{variable.path: multiplier}` mapping, or
            `layerwise_lr_groups(...)` output: the multipliers scale the rate
            and the weight decay per variable.
        optimizer: "adamw" or "adam" (`OPTIMIZERS`).

    Returns:
        kzoo's `AdamW` (a `keras.optimizers.AdamW` with the fused TensorFlow
        update; the weight-decay exclusions are in its config).

    Example:
    >>> optimizer = create_optimizer(2e-5, num_train_steps=1000, warmup_steps=100)
    >>> float(optimizer.learning_rate)  # step 0 of the warm-up
    0.0
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {optimizer!r}")
    if optimizer == "adam" and weight_decay:
        raise ValueError(f"optimizer 'adam' has no weight decay; got weight_decay={weight_decay} (set it to 0, "
                         "or use 'adamw')")
    rate = create_schedule(schedule, learning_rate, num_train_steps, warmup_steps)
    kwargs = dict(
        learning_rate=rate,
        weight_decay=weight_decay,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-6 if optimizer == "adamw" else 1e-7,
        global_clipnorm=clipnorm or None,
    )
    if lr_multipliers is not None:
        values = list(lr_multipliers.values())
        if values and isinstance(values[0], tuple):  # layerwise_lr_groups output
            lr_multipliers = _multipliers_from_groups(lr_multipliers)
    return AdamW(lr_multipliers=lr_multipliers, weight_decay_exclude_names=WEIGHT_DECAY_EXCLUDE_NAMES, **kwargs)
