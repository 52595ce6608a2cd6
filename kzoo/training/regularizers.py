"""L2-SP: fine-tuning regularisation towards the pretrained starting point
(Li, Grandvalet & Davoine 2018, "Explicit inductive bias for transfer learning
with convolutional networks").

    Omega(w) = alpha / 2 * ||w_S - w0_S||^2 + beta / 2 * ||w_not_S||^2

where `S` are the pretrained variables, `w0` their pretrained values and
`not_S` every other trainable variable (e.g. a new task head).
"""

import keras
import numpy as np
from keras import ops


class _L2SPAnchorPenalty(keras.regularizers.Regularizer):
    """alpha/2 * ||w - anchor||^2; the anchor is a non-trainable variable."""

    def __init__(self, anchor, alpha):
        self.anchor = anchor
        self.alpha = float(alpha)

    def __call__(self, x):
        anchor = ops.cast(self.anchor, x.dtype)
        return ops.multiply(0.5 * self.alpha, ops.sum(ops.square(ops.subtract(x, anchor))))

    def get_config(self):
        raise NotImplementedError("the L2-SP anchor penalty is not serialisable: call apply_l2sp after loading")


class _L2Penalty(keras.regularizers.Regularizer):
    """beta/2 * ||w||^2 (Keras' L2 has no 1/2)."""

    def __init__(self, beta):
        self.beta = float(beta)

    def __call__(self, x):
        return ops.multiply(0.5 * self.beta, ops.sum(ops.square(x)))

    def get_config(self):
        raise NotImplementedError("the L2-SP penalty is not serialisable: call apply_l2sp after loading")


_OURS = (_L2SPAnchorPenalty, _L2Penalty)


def _designed_trainable(model):
    """Variables created trainable by some layer of `model` (whether frozen now or not)."""
    out, seen = [], set()
    for layer in [model] + list(model._flatten_layers(include_self=False, recursive=True)):
        for v in getattr(layer, "_trainable_variables", []):
            if id(v) not in seen:
                seen.add(id(v))
                out.append(v)
    return out


def apply_l2sp(model, pretrained_variables, alpha, beta=0.0):
    """Adds the L2-SP penalty to `model.losses` (and so to the training loss).

    The current values of `pretrained_variables` are copied into
    non-trainable anchor variables `w0` (created in the current
    `tf.distribute` strategy scope, or the model's, and referenced only by the
    regularisers, so they are not saved by `model.save` / `save_weights` and
    are not touched by `load_weights` or `BackupAndRestore`). Then each
    variable's `variable.regularizer` is set so that `model.losses` holds

    * `alpha / 2 * sum((w - w0) ** 2)` for each pretrained variable, and
    * `beta / 2 * sum(w ** 2)` for every other trainable variable of `model`.

    Keras evaluates `variable.regularizer` for the model's *trainable*
    variables only (nested layers included), so frozen variables contribute
    nothing (their penalty would be constant); they start counting if
    unfrozen later.

    Checkpoint safety: call it right after loading the pretrained weights
    and before restoring any fine-tuning checkpoint. After a restart, load the
    pretrained weights again, call `apply_l2sp`, then `model.load_weights(...)`
    (or let `BackupAndRestore` restore): the anchors keep the pretrained
    values. Calling it on trained weights would anchor to those instead.

    Args:
        model: the model being fine-tuned (e.g. a kzoo classifier).
        pretrained_variables: variables of `model` holding pretrained values
            now, e.g. `encoder.weights` right after
            `kzoo.checkpoints.load_pretrained`. Non-trainable ones (e.g.
            frozen) are anchored too but only count while trainable.
        alpha: weight of the pull towards the pretrained values (>= 0).
        beta: weight of plain L2 on the other trainable variables (>= 0).

    Returns:
        `{variable.path: anchor variable}` for the pretrained variables.

    Raises:
        ValueError: negative weights, a variable not in `model`, or a variable
            that already has a (non-L2-SP) regulariser.

    Example:
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, name="body"),
    ...                           keras.layers.Dense(1, name="head")])
    >>> anchors = apply_l2sp(model, model.layers[0].weights, alpha=1.0, beta=0.1)
    >>> float(sum(model.losses)) == float(0.05 * sum(np.sum(np.square(w)) for w in model.layers[1].get_weights()))
    True
    >>> remove_l2sp(model); len(model.losses)
    0
    """
    import tensorflow as tf

    alpha, beta = float(alpha), float(beta)
    if alpha < 0 or beta < 0 or not (np.isfinite(alpha) and np.isfinite(beta)):
        raise ValueError(f"alpha and beta must be finite and >= 0, got alpha={alpha}, beta={beta}")
    model_ids = {id(v) for v in model.weights}
    pretrained = []
    seen = set()
    for v in pretrained_variables:
        if id(v) not in model_ids:
            raise ValueError(
                f"pretrained variable {getattr(v, 'path', v)!r} is not a variable of model {model.name!r}"
            )
        if id(v) not in seen:
            seen.add(id(v))
            pretrained.append(v)
    others = [v for v in _designed_trainable(model) if id(v) not in seen]
    for v in pretrained + others:
        if v.regularizer is not None and not isinstance(v.regularizer, _OURS):
            raise ValueError(
                f"variable {v.path!r} already has regularizer {v.regularizer!r}; "
                "L2-SP would replace it (remove it first)"
            )
    remove_l2sp(model)

    if tf.distribute.has_strategy():
        strategy = tf.distribute.get_strategy()
    else:
        strategy = getattr(model, "_distribute_strategy", None) or tf.distribute.get_strategy()
    anchors = {}
    with strategy.scope():
        for v in pretrained:
            value = keras.ops.convert_to_numpy(v)
            anchor = keras.Variable(
                initializer=value, trainable=False, dtype=v.dtype, name="l2sp_anchor", autocast=False
            )
            if alpha > 0:
                v.regularizer = _L2SPAnchorPenalty(anchor, alpha)
            anchors[v.path] = anchor
    if beta > 0:
        for v in others:
            v.regularizer = _L2Penalty(beta)
    return anchors


def remove_l2sp(model):
    """Clears the regularisers `apply_l2sp` set on `model`'s variables."""
    for v in model.weights:
        if isinstance(v.regularizer, _OURS):
            v.regularizer = None


def l2sp_penalty(model):
    """The current L2-SP penalty of `model` (a scalar tensor): the sum of the
    `apply_l2sp` regularisers over the model's trainable variables, i.e. the
    part of `sum(model.losses)` that L2-SP adds."""
    terms = [v.regularizer(v) for v in model.trainable_weights if isinstance(v.regularizer, _OURS)]
    return ops.sum(ops.stack(terms)) if terms else ops.zeros(())
