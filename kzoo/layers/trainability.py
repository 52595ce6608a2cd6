"""Freezing that survives `model.save()` / `keras.models.load_model`.

`frozen_parts` and `freeze_parts` keep freezing *inside* a layer across
`model.save()` / `keras.models.load_model`: Keras serialises a layer's own
`trainable` flag but neither the flags of the sub-layers it builds itself nor
per-variable flags, so `TransformerEncoderBlock` and `BertEmbeddings` record
their frozen sub-parts in their config (`frozen_parts`) and freeze them again
when they are built (`freeze_after_build`, which also freezes the sub-layers
of a layer rebuilt with `trainable=False`). `set_trainable` sets a flag on a
whole layer tree, which `layer.trainable = value` does not always do.
"""


def _children(layer):
    return list(layer._flatten_layers(include_self=False, recursive=False))


def set_trainable(layer, value):
    """Sets `trainable` on `layer` and on every layer and variable below it.

    `layer.trainable = value` is not enough: on the TensorFlow backend Keras
    skips the assignment (and so the propagation to the sub-layers) when the
    flag already has that value, so `model.trainable = True` leaves a frozen
    sub-layer of a trainable layer frozen, and a layer rebuilt with
    `trainable=False` cannot push the flag into the sub-layers it builds by
    assigning it again. Here every layer's own setter runs, innermost first,
    so layers that keep some variables frozen whatever the flag (the LoRA
    bases of a `TransformerEncoderBlock`) have the last word.
    """
    for node in reversed(list(layer._flatten_layers(include_self=True, recursive=True))):
        type(node).trainable.fset(node, value)


def frozen_parts(layer, exempt=()):
    """The frozen sub-parts of a trainable `layer`, as paths relative to it.

    A path names a sub-layer by its layer names ("attention",
    "attention/key") when every variable under it is frozen, or one variable
    ("output/bias") when only part of a sub-layer is; together the paths
    cover exactly the frozen variables, with as few entries as possible.
    Variables in `exempt` (frozen by the layer itself whatever the flags,
    such as LoRA base kernels) are left out and never make a path. Empty
    when the layer itself is not trainable: its own `trainable` flag, which
    Keras serialises, says it all.
    """
    if not layer.trainable:
        return []
    exempt = {id(v) for v in exempt}

    def visit(node, prefix):
        parts = []
        children = _children(node)
        inner = {id(v) for child in children for v in child.weights}
        for v in node.weights:  # the node's own variables
            if id(v) not in inner and id(v) not in exempt and not v.trainable:
                parts.append(prefix + v.name)
        for child in children:
            flags = [v.trainable for v in child.weights if id(v) not in exempt]
            if flags and not any(flags):
                parts.append(prefix + child.name)
            elif not all(flags):
                parts.extend(visit(child, f"{prefix}{child.name}/"))
        return parts

    return visit(layer, "")


def freeze_after_build(layer, parts=()):
    """The end of a `build` that creates sub-layers: a layer built with
    `trainable=False` (as `from_config` builds a frozen one) freezes every
    sub-layer it has built, which Keras does not do; a trainable one freezes
    its recorded `parts` (see `frozen_parts`)."""
    if layer.trainable:
        freeze_parts(layer, parts)
    else:
        set_trainable(layer, False)


def freeze_parts(layer, parts):
    """Freezes the variables under each path of `frozen_parts(layer)`.

    Raises a ValueError naming the path when `layer` has no such sub-layer or
    variable (a config written for a different layer).
    """
    for part in parts:
        node, names = layer, part.split("/")
        for name in names[:-1]:
            matches = [c for c in _children(node) if c.name == name]
            node = matches[0] if len(matches) == 1 else None
            if node is None:
                break
        variables = []
        if node is not None:
            matches = [c for c in _children(node) if c.name == names[-1]]
            inner = {id(v) for child in _children(node) for v in child.weights}
            own = [v for v in node.weights if id(v) not in inner and v.name == names[-1]]
            variables = matches[0].weights if len(matches) == 1 else [] if matches else own
        if not variables:
            raise ValueError(f"layer {layer.name!r}: frozen part {part!r} names no single sub-layer or variable "
                             "of it")
        for v in variables:
            v.trainable = False
