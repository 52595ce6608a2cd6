"""Parameter-efficient fine-tuning: train adapters / LoRA, merge, save small files.

Build the encoder with adapters and/or LoRA (`bert_encoder(...,
adapter_type="houlsby", lora_rank=8)`, or the same keywords through
`kzoo.checkpoints.load_pretrained`), put a task head on it, then:

- `enable_parameter_efficient_training(model)` freezes the pretrained encoder
  except the adapters, the LoRA factors and (optionally) the LayerNorms and
  the pooler; the task head stays trainable.
- `save_adaptation_weights(model, path)` stores only what was trained, in
  one small `.npz` file; `load_adaptation_weights` applies it to a freshly
  built model holding the same pretrained weights.
- `merge_lora(model)` folds every LoRA update into its base kernel and
  returns a plain model (no LoRA variables, no extra matmuls) for serving.

Variables are named in these files by their place in the layer tree (layer
names from the model down, then the variable's name), not by
`variable.path`: Keras uniquifies automatic layer names per process
(`dense`, `dense_1`, ...), so an unnamed head would be `dense_3/kernel` in
one model and `dense_7/kernel` in the next. In the tree names an automatic
name loses its counter (`dense_7` -> `dense`) and siblings that would then
collide are numbered in tracking order (`dense`, `dense#1`).
"""

import io
import os
import re

import keras
import numpy as np

from kzoo import io as kzoo_io
from kzoo.models.walk import find_encoder
from kzoo.layers import BertPooler, BottleneckAdapter, LowRankAdapter, TransformerEncoderBlock
from kzoo.layers.trainability import set_trainable


def enable_parameter_efficient_training(model, train_layer_norms=True, train_pooler=True):
    """Makes only the adaptation parameters of `model` trainable.

    Trainable afterwards: every `BottleneckAdapter` and LoRA factor (A, B) of
    the encoder, every LayerNorm of the encoder (embeddings, blocks, a pre-LN
    final one) when `train_layer_norms`, the pooler when `train_pooler`, and
    every variable outside the encoder (the task head). Everything else in
    the encoder is frozen; LoRA base kernels and biases are frozen in any
    case. Call it before `compile()` (or rebuild the train function).

    The freezing is part of the model's config (each block's and the
    embeddings' `frozen_parts`, the `trainable` flag of a layer frozen as a
    whole), so a model saved with `model.save("m.keras")` reloads with
    `keras.models.load_model` with the same `trainable_weights`, in the same
    order, and its optimizer state.

    Args:
        model: a keras.Model holding one kzoo encoder built with adapters
            and/or LoRA (the encoder itself, a classifier, ...).
        train_layer_norms: also train the encoder's LayerNorms (Houlsby et al.
            train them with the adapters).
        train_pooler: also train the encoder's pooler.

    Returns:
        `model.trainable_weights` after the change.

    Example:
    >>> from kzoo import configs, models
    >>> config = configs.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
    ...                             num_attention_heads=2, intermediate_size=32)
    >>> model = models.bert_classifier(config, num_classes=2, adapter_type="pfeiffer", adapter_size=4)
    >>> trainable = enable_parameter_efficient_training(model, train_layer_norms=False, train_pooler=False)
    >>> sorted(v.path for v in trainable)
    ['classifier/logits/bias', 'classifier/logits/kernel', 'transformer_layer_0/ffn_adapter/down/bias', \
'transformer_layer_0/ffn_adapter/down/kernel', 'transformer_layer_0/ffn_adapter/up/bias', \
'transformer_layer_0/ffn_adapter/up/kernel']
    """
    encoder = find_encoder(model)
    layers = list(encoder._flatten_layers(include_self=False, recursive=True))
    adapted = [l for l in layers if isinstance(l, (BottleneckAdapter, LowRankAdapter))]
    if not adapted:
        raise ValueError(
            f"encoder {encoder.name!r} has neither adapters nor LoRA: build it with adapter_type='houlsby' / "
            "'pfeiffer' and/or lora_rank > 0 (kzoo.models.bert_encoder or kzoo.checkpoints.load_pretrained)"
        )
    train = list(adapted)
    if train_layer_norms:
        train += [l for l in layers if isinstance(l, keras.layers.LayerNormalization)]
    if train_pooler:
        train += [l for l in layers if isinstance(l, BertPooler)]
    train_ids = {id(v) for l in train for v in l.weights}

    set_trainable(model, True)  # every flag on, layers' and variables' (LoRA bases stay frozen) ...
    for v in encoder.weights:  # ... then freeze the encoder but for the adaptation parameters
        v.trainable = id(v) in train_ids
    for block in (l for l in layers if isinstance(l, TransformerEncoderBlock)):
        block._freeze_lora_bases()
    # What a .keras file keeps: a layer of the encoder frozen as a whole (the pooler without
    # train_pooler, ...) by its own `trainable` flag; the partly frozen blocks and embeddings
    # by their `frozen_parts` config, which they derive from the variable flags set above.
    for layer in encoder.layers:
        if layer.weights and not any(v.trainable for v in layer.weights):
            set_trainable(layer, False)
    return model.trainable_weights


def merge_lora(model):
    """Returns a new model without LoRA whose kernels include the LoRA updates.

    The model is rebuilt from its config with `lora_rank=0` in every
    `TransformerEncoderBlock` (nested models included); every weight is
    copied, and each LoRA target's kernel becomes `W + (alpha / rank) * A @ B`.
    Adapters are kept as they are. The new model computes the same function
    (up to float rounding) with no LoRA variables and no extra matmuls, for
    serving or export. It is not compiled. Its variables keep their
    trainable flags (they are part of the config it is rebuilt from: see
    `enable_parameter_efficient_training`); the folded kernels, frozen as
    LoRA bases, are trainable again unless the original froze them too.

    Example:
    >>> merged = merge_lora(classifier)  # doctest: +SKIP
    >>> merged.save("served.keras")  # doctest: +SKIP
    """
    layers = _layer_keys(model)
    blocks = {k: l for k, l in layers.items() if isinstance(l, TransformerEncoderBlock) and l.lora_layers()}
    if not blocks:
        raise ValueError(f"model {model.name!r} has no LoRA (no TransformerEncoderBlock with lora_rank > 0)")
    serialized = keras.saving.serialize_keras_object(model)
    serialized.pop("compile_config", None)
    _drop_lora(serialized)
    merged = keras.saving.deserialize_keras_object(serialized)

    source = _variable_keys(model)
    target = _variable_keys(merged)
    absent = [k for k in target if k not in source]
    if absent:
        raise ValueError(f"merge_lora: the rebuilt model has variables the original lacks: {absent[:5]}")
    for key, variable in target.items():
        if tuple(variable.shape) != tuple(source[key].shape):
            raise ValueError(f"merge_lora: {key} has shape {tuple(source[key].shape)} in the original, "
                             f"{tuple(variable.shape)} once rebuilt")
        variable.assign(source[key])
    merged_layers = _layer_keys(merged)
    for key, block in blocks.items():
        new_block = merged_layers[key]
        for target_name, lora in block.lora_layers().items():
            base = block.projection(target_name).kernel
            delta = np.asarray(lora.delta_kernel(), "float64")
            value = np.asarray(base, "float64") + delta
            new_block.projection(target_name).kernel.assign(value.astype(base.dtype))
    return merged


def _drop_lora(config):
    """Sets lora_rank=0 in every TransformerEncoderBlock of a serialized model, in place."""
    if isinstance(config, dict):
        name = str(config.get("registered_name") or config.get("class_name") or "")
        inner = config.get("config")
        if name.split(">")[-1] == "TransformerEncoderBlock" and isinstance(inner, dict):
            inner["lora_rank"] = 0
        for value in config.values():
            _drop_lora(value)
    elif isinstance(config, (list, tuple)):
        for value in config:
            _drop_lora(value)


def save_adaptation_weights(model, path):
    """Writes every currently trainable variable of `model` to one `.npz` file.

    After `enable_parameter_efficient_training` these are the adapters, the
    LoRA factors, the trained LayerNorms and pooler, and the task head: a
    small fraction of the model. Arrays are keyed by stable tree names (see
    the module docstring). The file is written to a temporary name beside
    `path` and renamed over it, so a crash never leaves a half-written file.

    Returns:
        `path`.

    Example:
    >>> enable_parameter_efficient_training(classifier)  # doctest: +SKIP
    >>> classifier.fit(train_ds, epochs=3)  # doctest: +SKIP
    >>> save_adaptation_weights(classifier, "intents.adaptation.npz")  # doctest: +SKIP
    """
    path = os.fspath(path)
    names = {id(v): k for k, v in _variable_keys(model).items()}
    trainable = model.trainable_weights
    if not trainable:
        raise ValueError(f"model {model.name!r} has no trainable variable to save")
    arrays = {names[id(v)]: np.asarray(keras.ops.convert_to_numpy(v)) for v in trainable}
    with kzoo_io.atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return path


def load_adaptation_weights(model, path):
    """Assigns the arrays of a `save_adaptation_weights` file to `model`.

    `model` must hold the same architecture (and, for the intended outputs,
    the same pretrained weights) as the saved one, prepared with
    `enable_parameter_efficient_training` with the same options. Every name
    and shape is checked before anything is assigned: a variable in the file
    that the model lacks, a trainable variable of the model that the file
    lacks, or a shape mismatch raises a ValueError naming the file and the
    variable, and leaves the model unchanged.

    Returns:
        The names loaded.

    Example:
    >>> model = kzoo.models.bert_classifier(load_pretrained("minilm", adapter_type="houlsby").encoder, 6)  # doctest: +SKIP
    >>> enable_parameter_efficient_training(model)  # doctest: +SKIP
    >>> load_adaptation_weights(model, "intents.adaptation.npz")  # doctest: +SKIP
    """
    path = os.fspath(path)
    try:
        with np.load(io.BytesIO(kzoo_io.read_bytes(path)), allow_pickle=False) as data:
            stored = {k: data[k] for k in data.files}
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read adaptation weights: {e}") from e
    variables = _variable_keys(model)
    names = {id(v): k for k, v in variables.items()}
    problems = []
    for key in stored:
        if key not in variables:
            problems.append(f"unexpected variable {key} (shape {list(stored[key].shape)}): the model has none "
                            "of that name")
        elif tuple(stored[key].shape) != tuple(variables[key].shape):
            problems.append(f"wrong shape for {key}: file has {list(stored[key].shape)}, model variable "
                            f"{variables[key].path} needs {list(variables[key].shape)}")
    for v in model.trainable_weights:
        if names[id(v)] not in stored:
            problems.append(f"missing variable {names[id(v)]} (trainable in the model, shape {list(v.shape)})")
    if problems:
        raise ValueError(
            f"{path}: adaptation weights do not fit model {model.name!r} (prepare it with "
            "enable_parameter_efficient_training with the options used for training): " + "; ".join(problems)
        )
    for key, value in stored.items():
        variables[key].assign(value.astype(variables[key].dtype))
    return sorted(stored)


# Stable names ---------------------------------------------------------------


def _snake_case(name):
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def _stable_name(layer):
    """The layer's name without Keras' per-process counter when it is an automatic name."""
    base = _snake_case(type(layer).__name__)
    if re.fullmatch(rf"{re.escape(base)}(_\d+)?", layer.name):
        return base
    return layer.name


def _walk(model):
    """Yields (layer key, layer) for every layer below `model`, each once, in tracking order."""
    seen = set()

    def visit(layer, prefix):
        counts = {}
        for child in layer._flatten_layers(include_self=False, recursive=False):
            if id(child) in seen:
                continue
            seen.add(id(child))
            name = _stable_name(child)
            n = counts.get(name, 0)
            counts[name] = n + 1
            key = prefix + (name if n == 0 else f"{name}#{n}")
            yield key, child
            yield from visit(child, key + "/")

    seen.add(id(model))
    yield "", model
    yield from visit(model, "")


def _layer_keys(model):
    return dict(_walk(model))


def _variable_keys(model):
    """{stable name: variable} for every weight of `model`, each variable once."""
    out, seen = {}, set()
    for key, layer in _walk(model):
        inner = {id(v) for child in layer._flatten_layers(include_self=False, recursive=True) for v in child.weights}
        for v in layer.weights:
            if id(v) in seen or id(v) in inner:
                continue
            seen.add(id(v))
            name = f"{key}/{v.name}" if key else v.name
            if name in out:
                raise ValueError(f"two variables of model {model.name!r} share the name {name}")
            out[name] = v
    for v in model.weights:  # a variable no layer below the model owns: name it by its path
        if id(v) not in seen:
            seen.add(id(v))
            out[f"~{v.path}"] = v
    return out
