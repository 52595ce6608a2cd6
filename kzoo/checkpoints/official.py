"""Load official TF1 checkpoints (google-research/bert, /albert, /electra) into kzoo models.

Keras 3's `load_weights` refuses TF1 name-based checkpoints, so the values are
read with `tf.train.load_checkpoint` and assigned through kzoo's explicit
assignment map of the encoder's family (`kzoo.checkpoints.mapping`). Unlike
the official `get_assignment_map_from_checkpoint`, nothing is skipped
silently: the report lists every checkpoint name that was not used and every
model variable that got no value.
"""

import os

import numpy as np
import tensorflow as tf

from kzoo import io as kzoo_io
from kzoo.checkpoints import mapping
from kzoo.checkpoints.assign import WORD_EMBEDDINGS, assign
from kzoo.models.walk import find_encoder

CHECKPOINT_NAME = "bert_model.ckpt"


def resolve_prefix(path):
    """Accepts a checkpoint prefix or a folder holding exactly one checkpoint."""
    path = os.fspath(path)
    if os.path.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest:
            return latest
        indexes = sorted(f[: -len(".index")] for f in os.listdir(path) if f.endswith(".index"))
        if len(indexes) == 1:
            return os.path.join(path, indexes[0])
        raise ValueError(f"{path}: expected one TF checkpoint (*.index) in the folder, found {len(indexes)}")
    if not os.path.exists(path + ".index"):
        raise ValueError(f"{path}: no TF checkpoint at this prefix ({path}.index does not exist)")
    return path


def load_official(model, ckpt_prefix, strict=False, encoder=None):
    """Loads an official checkpoint into the kzoo encoder inside `model`.

    The encoder's family (`kzoo.models.encoder_family`) picks the map:
    google-research/bert's names for BERT, /albert's for ALBERT, /electra's
    for ELECTRA (an ELECTRA checkpoint's generator and heads are unused
    unless `model` is a `kzoo.models.ElectraPretrainer`). RoBERTa, XLM-R and
    DistilBERT have no official TF1 checkpoints: load their HF folders.

    Args:
        model: any keras.Model containing one kzoo encoder (an encoder,
            a classifier, a pretrainer, ...).
        ckpt_prefix: checkpoint prefix (`.../bert_model.ckpt`) or its folder.
        strict: raise when an encoder variable is left unloaded.
        encoder: the encoder sub-model, when `model` holds several.

    Returns:
        A `LoadReport` (loaded / unused / missing), already logged.

    Example:
    >>> report = load_official_bert(classifier, "uncased_L-12_H-768_A-12/bert_model.ckpt")  # doctest: +SKIP
    >>> report.missing  # doctest: +SKIP
    ['classifier/logits/kernel', 'classifier/logits/bias']
    """
    prefix = resolve_prefix(ckpt_prefix)
    family = mapping.family_map(encoder if encoder is not None else find_encoder(model))
    if not family.official:
        raise ValueError(f"{prefix}: {family.family} has no official TF1 checkpoint format: load its Hugging Face "
                         "folder (kzoo.checkpoints.hf.load_hf, or load_pretrained)")
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as e:
        raise ValueError(f"{prefix}: cannot read TF checkpoint: {e}") from e
    names = sorted(reader.get_variable_to_shape_map())
    scope = _scope(names, family.word_embeddings)
    stored, unmapped = {}, []
    for name in names:
        if name.startswith(scope):
            official = name[len(scope):]
            stored[official] = (name, lambda name=name: reader.get_tensor(name))
        else:
            unmapped.append(name)
    report = assign(model, stored, unmapped, prefix, strict=strict, encoder=encoder)
    report.log()
    return report


load_official_bert = load_official  # its first name; it loads every official family


def _scope(names, word_embeddings=WORD_EMBEDDINGS):
    """The name prefix before `bert/` (`electra/`): empty, or e.g. `module/` for TF Hub exports."""
    for name in names:
        if name.endswith(word_embeddings):
            return name[: -len(word_embeddings)]
    return ""


def official_arrays(model, encoder=None):
    """{official name: numpy array in the official layout} for the encoder and
    the pretraining heads (when present) in `model` (BERT, ALBERT or ELECTRA)."""
    encoder = encoder if encoder is not None else find_encoder(model)
    family = mapping.family_map(encoder)
    if not family.official:
        raise ValueError(f"{family.family} has no official TF1 checkpoint format")
    entries = family.encoder_entries(encoder) + family.head_entries(model, encoder)
    return {e.name: e.to_official(np.asarray(e.variable.numpy(), dtype=np.float32)) for e in entries}


def save_official_bert(model, ckpt_prefix, encoder=None):
    """Writes the encoder (and pretraining heads) of `model` as an official
    google-research/bert checkpoint (TF1 names, official layouts); an ALBERT
    or ELECTRA encoder under google-research/albert's or /electra's names.

    The result loads with `load_official_bert` / `load_pretrained` (with a
    `bert_config.json` beside it) and with google-research/bert's own
    `init_from_checkpoint`. An encoder with relative positions
    (`BertConfig.max_relative_position` > 0) also writes its relative key and
    value embeddings (`bert/encoder/layer_N/attention/self/
    relative_positions_{keys,values}/embeddings`, kzoo's names: see
    `kzoo.checkpoints.bert_map`); write its config beside it with
    `BertConfig.to_json_file`, whose official dict carries the relative keys.
    Adapters and LoRA are not official names: merge LoRA first
    (`kzoo.models.merge_lora`); adapter weights are not written.

    `ckpt_prefix` may be local or on any `tf.io.gfile` file system
    (`gs://...`). The checkpoint is written complete into a temporary folder
    beside it; then any previous checkpoint at `ckpt_prefix` is invalidated
    (its `.index` removed), the new data file and then the new `.index` are
    renamed into place (`kzoo.io.rename_file`), and last TensorFlow's
    `checkpoint` state file naming it is written (atomically), as TensorFlow
    commits its own checkpoints. So a reader never finds a half-written or
    mixed checkpoint at `ckpt_prefix`: a kill in the middle leaves no index
    there (no checkpoint at all) rather than a new index over old data.

    Args:
        model: a keras.Model containing one kzoo BERT encoder.
        ckpt_prefix: e.g. `<folder>/bert_model.ckpt`.
        encoder: the encoder sub-model, when `model` holds several.

    Returns:
        The prefix written.
    """
    ckpt_prefix = os.fspath(ckpt_prefix)
    folder, name = os.path.split(ckpt_prefix)
    folder = folder or "."
    arrays = official_arrays(model, encoder)
    names = sorted(arrays)
    kzoo_io.makedirs(folder)
    stage = kzoo_io.join(folder, kzoo_io.temporary_name(name))
    kzoo_io.makedirs(stage)
    try:
        tmp = kzoo_io.join(stage, name)
        tf.raw_ops.SaveV2(prefix=tmp, tensor_names=names, shape_and_slices=[""] * len(names),
                          tensors=[tf.constant(arrays[n]) for n in names])
        shards = [f for f in kzoo_io.listdir(stage) if f.startswith(name + ".data-")]
        kzoo_io.remove(ckpt_prefix + ".index")  # the old checkpoint (if any) stops being one
        for shard in shards:
            kzoo_io.rename_file(kzoo_io.join(stage, shard), ckpt_prefix + shard[len(name):])
        kzoo_io.rename_file(tmp + ".index", ckpt_prefix + ".index")
    finally:
        kzoo_io.rmtree(stage)
    kzoo_io.write_text(kzoo_io.join(folder, "checkpoint"),
                       f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n')
    return ckpt_prefix
