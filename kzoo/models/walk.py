"""Helpers that walk a model to the kzoo pieces inside it."""

import keras

from kzoo.layers import BertEmbeddings


def find_encoder(model):
    """Returns the (sub-)model that directly holds a kzoo BertEmbeddings layer."""
    found = []
    for layer in [model] + list(model._flatten_layers(include_self=False, recursive=True)):
        if isinstance(layer, keras.Model) and any(isinstance(l, BertEmbeddings) for l in layer.layers):
            found.append(layer)
    if not found:
        raise ValueError(f"model {model.name!r} contains no kzoo BERT encoder (no BertEmbeddings layer)")
    if len(found) > 1:
        names = [m.name for m in found]
        raise ValueError(f"model {model.name!r} contains {len(found)} BERT encoders {names}; pass encoder=")
    return found[0]
