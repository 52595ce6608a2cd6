"""Freezing, feature extraction, gradual unfreezing and chain-thaw.

A kzoo task model is cut into *layer groups*, bottom to top:
`embeddings`, `layer_0` ... `layer_{L-1}` (the encoder blocks) and `head`
(everything else: the pooler, a pre-LN final LayerNorm and the task head).
The embedding projection of ALBERT and ELECTRA-Small belongs to
`embeddings`. ALBERT's blocks are shared across depth, so its groups are its
*shared block groups*: `layer_g` holds the blocks of group g (all its inner
blocks), which run at every depth that uses the group; with one group (every
released ALBERT) the encoder is `embeddings`, `layer_0`, `head`, and
`freeze_layers` counts groups.
Freezing works on Keras' `trainable` flags, so frozen variables are simply
absent from the train step: no gradient, no optimizer update and no weight
decay touch them, under any `tf.distribute` strategy.

Changing the flags while `fit()` runs needs a new train function. The
`GradualUnfreezing` callback rebuilds it (`make_train_function(force=True)`)
whenever the set of trainable groups changes; the optimizer must know every
variable that will ever train, so leave the model fully trainable when
`fit()` starts (Keras builds the optimizer's slots then) and let the callback
freeze what stage 0 freezes.
"""

import collections

import keras
from absl import logging

from kzoo.models.walk import encoder_parts, find_encoder
from kzoo.layers.trainability import set_trainable


def layer_groups(model):
    """Returns an ordered dict, bottom to top: "embeddings" -> [layer(s)],
    "layer_{i}" -> [block i] and "head" -> [every other layer of the model].

    "embeddings" holds the embeddings and, for ALBERT and ELECTRA-Small, the
    projection to the hidden size. For ALBERT "layer_{g}" is shared block
    group g (its inner blocks; see the module docstring). "head" holds the
    encoder's pooler and final LayerNorm and every layer outside the
    encoder, however deeply nested (e.g. a classifier inside a multi-task
    training model). Every variable is in exactly one group.
    """
    encoder = find_encoder(model)
    parts = encoder_parts(encoder)
    groups = collections.OrderedDict()
    groups["embeddings"] = [parts.embeddings] + ([parts.projection] if parts.projection is not None else [])
    for i, blocks in enumerate(parts.block_groups):
        groups[f"layer_{i}"] = list(blocks)
    inside = {id(l) for g in groups.values() for l in g}
    head = [l for l in encoder.layers if id(l) not in inside and l.weights]
    in_encoder = {id(l) for l in encoder._flatten_layers(include_self=True, recursive=True)}
    for layer in model._flatten_layers(include_self=False, recursive=True):  # task layers, at any depth
        if id(layer) not in in_encoder and not isinstance(layer, keras.Model) and layer.weights:
            head.append(layer)
    groups["head"] = head
    return groups


def group_variables(groups):
    """{group: [variables]} for `layer_groups(...)`, each variable once."""
    seen, out = set(), collections.OrderedDict()
    for name, layers in groups.items():
        out[name] = []
        for layer in layers:
            for v in layer.weights:
                if id(v) not in seen:
                    seen.add(id(v))
                    out[name].append(v)
    return out


def set_trainable_groups(model, trainable, groups=None):
    """Makes exactly the named groups trainable (others frozen); returns them.

    Every group's layers get their flag set explicitly, down to every
    sub-layer and variable (`kzoo.layers.trainability.set_trainable`: Keras does
    not propagate `trainable` reliably through nested layers); the model and
    its encoder stay `trainable=True` so the layer flags decide. A frozen
    group's layers are frozen by their own `trainable` flag, which
    `model.save()` keeps: a reloaded model has the same trainable variables.
    """
    groups = groups or layer_groups(model)
    unknown = set(trainable) - set(groups)
    if unknown:
        raise ValueError(f"unknown layer group(s) {sorted(unknown)}; the model has {list(groups)}")
    model.trainable = True
    find_encoder(model).trainable = True
    for name, layers in groups.items():
        for layer in layers:
            set_trainable(layer, name in trainable)
    return list(trainable)


def freeze(model, freeze_layers=0, feature_extraction=False):
    """Freezes the bottom of the encoder before fine-tuning.

    Semantics of `freeze_layers` (k), with L encoder blocks:
      - k = 0: nothing frozen (full fine-tuning, the default);
      - k = -1: only the embeddings frozen, every block trainable;
      - 1 <= k <= L: the embeddings and the first (lowest) k blocks frozen.
    `feature_extraction=True` freezes the whole encoder, pooler included, and
    trains only the task head (it overrides `freeze_layers`).

    Returns the names of the groups left trainable.
    """
    groups = layer_groups(model)
    num_blocks = len(groups) - 2
    if feature_extraction:
        set_trainable_groups(model, ["head"], groups)
        for layer in find_encoder(model).layers:  # the pooler and a final LayerNorm too
            set_trainable(layer, False)
        return ["task head"]
    if not -1 <= freeze_layers <= num_blocks:
        raise ValueError(f"freeze_layers={freeze_layers}: expected -1 (embeddings only), 0 (nothing) or 1..{num_blocks} "
                         f"(embeddings and that many of the {num_blocks} blocks)")
    if freeze_layers == 0:
        frozen = set()
    else:
        frozen = {"embeddings"} | {f"layer_{i}" for i in range(max(freeze_layers, 0))}
    return set_trainable_groups(model, [g for g in groups if g not in frozen], groups)


def count_parameters(model):
    """(trainable, total) scalar counts over the model's weights (each variable once)."""
    seen, trainable, total = set(), 0, 0
    trainable_ids = {id(v) for v in model.trainable_weights}
    for v in model.weights:
        if id(v) in seen:
            continue
        seen.add(id(v))
        size = _size(v.shape)
        total += size
        if id(v) in trainable_ids:
            trainable += size
    return trainable, total


def _size(shape):
    n = 1
    for d in shape:
        n *= int(d)
    return n


def log_trainable_parameters(model, note=""):
    """Logs (and returns) the line `trainable parameters: N of M (P%)`."""
    trainable, total = count_parameters(model)
    line = f"trainable parameters: {trainable:,} of {total:,} ({100.0 * trainable / max(total, 1):.2f}%)"
    if note:
        line += f" {note}"
    logging.info(line)
    return line


def unfreezing_stages(group_names, start_with_embeddings=False, chain_thaw=False):
    """The trainable groups at each stage, as a list of lists.

    Gradual unfreezing (ULMFiT): ["head"], then one more block from the top at
    each stage, then the embeddings (or with them from the start).
    Chain-thaw (Felbo et al. 2017): the head alone, then each group alone from
    the bottom (embeddings, layer_0, ..., the head again), then everything.
    """
    blocks = [g for g in group_names if g.startswith("layer_")]
    if chain_thaw:
        singles = [["head"], ["embeddings"]] + [[b] for b in blocks] + [["head"]]
        return singles + [list(group_names)]
    first = ["head"] + (["embeddings"] if start_with_embeddings else [])
    stages = [first]
    for block in reversed(blocks):
        stages.append(stages[-1] + [block])
    if not start_with_embeddings:
        stages.append(stages[-1] + ["embeddings"])
    return stages


class GradualUnfreezing(keras.callbacks.Callback):
    """Unfreezes the encoder from the top, one group every `interval`.

    Stage s (0-based) lasts from step/epoch `s * interval`; the stage is
    derived from the epoch index or the optimizer's step counter, so a resumed
    run lands in the right stage. When the set of trainable groups changes the
    callback sets the flags, rebuilds the model's train function and logs the
    change (and the new trainable-parameter count).

    Args:
        interval: stage length, in `unit`s.
        unit: "epoch" or "step" (optimizer steps).
        start_with_embeddings: embeddings trainable from the start with the head.
        chain_thaw: Felbo et al.'s chain-thaw order instead (see
            `unfreezing_stages`).

    The model must be fully trainable when `fit()` starts, so that Keras
    builds optimizer slots for every variable; the callback checks it. When
    `fit()` ends the callback makes every group trainable again, the set
    its optimizer was built for: a model saved then (`model.save("m.keras")`,
    which keeps the freezing) reloads with its optimizer state, whatever
    stage training stopped at, and a later `fit()` with the callback goes on
    from the stage its step or epoch is in.

    Example:
    >>> callback = GradualUnfreezing(interval=1, unit="epoch")  # doctest: +SKIP
    >>> model.fit(train_ds, epochs=8, callbacks=[callback])  # doctest: +SKIP
    """

    def __init__(self, interval=1, unit="epoch", start_with_embeddings=False, chain_thaw=False):
        super().__init__()
        if unit not in ("epoch", "step"):
            raise ValueError(f"unit must be 'epoch' or 'step', got {unit!r}")
        if interval < 1:
            raise ValueError(f"interval must be >= 1, got {interval}")
        self.interval = int(interval)
        self.unit = unit
        self.start_with_embeddings = start_with_embeddings
        self.chain_thaw = chain_thaw
        self.history = []  # (step, epoch, stage, groups)
        self._current = None

    def on_train_begin(self, logs=None):
        self._groups = layer_groups(self.model)
        self.stages = unfreezing_stages(list(self._groups), self.start_with_embeddings, self.chain_thaw)
        optimizer = self.model.optimizer
        set_trainable_groups(self.model, list(self._groups), self._groups)  # all that some stage will train
        if optimizer is not None and not optimizer.built:
            with self.model.distribute_strategy.scope():
                optimizer.build(self.model.trainable_variables)
        elif optimizer is not None:
            known = {id(v) for v in optimizer._trainable_variables}
            missing = [v.path for v in self.model.trainable_variables if id(v) not in known]
            if missing:
                raise ValueError(
                    f"GradualUnfreezing: the optimizer was built without {len(missing)} variable(s) it will have to "
                    f"train (e.g. {missing[:3]}); leave the model fully trainable until fit() starts")
        self._current = None
        self._apply(self._stage_for(epoch=0))

    def on_train_end(self, logs=None):
        set_trainable_groups(self.model, list(self._groups), self._groups)
        self.model.make_train_function(force=True)
        self._current = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        if self.unit == "epoch":
            self._apply(self._stage_for(epoch=epoch))

    def on_train_batch_begin(self, batch, logs=None):
        if self.unit == "step":
            self._apply(self._stage_for())

    def _stage_for(self, epoch=None):
        if self.unit == "epoch":
            position = epoch
        else:
            position = int(self.model.optimizer.iterations.numpy())
        return min(position // self.interval, len(self.stages) - 1)

    def _apply(self, stage):
        if stage == self._current:
            return
        self._current = stage
        groups = self.stages[stage]
        set_trainable_groups(self.model, groups, self._groups)
        self.model.make_train_function(force=True)
        step = int(self.model.optimizer.iterations.numpy()) if self.model.optimizer is not None else 0
        epoch = getattr(self, "_epoch", 0)
        self.history.append((step, epoch, stage, list(groups)))
        trainable, total = count_parameters(self.model)
        logging.info("gradual unfreezing: stage %d/%d at epoch %d, step %d: trainable %s "
                     "(trainable parameters: %s of %s)", stage + 1, len(self.stages), epoch, step,
                     ", ".join(groups), f"{trainable:,}", f"{total:,}")
