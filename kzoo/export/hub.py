"""Export a BERT-style encoder and its preprocessing as TF Hub-style SavedModels.

The layout and APIs follow the TF Hub BERT models (the "Text embeddings with Transformer
Encoders" SavedModel API that TF Model Garden's `export_tfhub_lib.py` writes): the
preprocessing and the encoder are two SavedModels, published on TF Hub as two models with
their own handles and versions (e.g. `bert_en_uncased_preprocess/3` and
`bert_en_uncased_L-12_H-768_A-12/4`). `export_hub_encoder` therefore writes

    <export_root>/preprocess/<version>/   (saved_model.pb, variables/, assets/<tokenizer files>)
    <export_root>/encoder/<version>/      (saved_model.pb, variables/, assets/<tokenizer files>)

each a standalone SavedModel root (what `hub.KerasLayer`, `keras.layers.TFSMLayer`,
`tf.saved_model.load` and TF Serving take), under integer version folders written
atomically on any `tf.io.gfile` file system, `gs://` included
(`kzoo.export.versions.write_version`). Both get the same version number (the
next one free in either), so a pair that belongs together shares its number. An export
that fails removes the half of the pair it had written; one that is killed between the two
leaves `preprocess/<v>` without `encoder/<v>`, and the next export takes `v + 1` for both.

Every family kzoo tokenizes exports this way; what differs is the tokenizer in the graph, the
special ids and the packing layout (`BertPacker.from_tokenizer`), and the asset attributes:

| tokenizer (families) | packing | asset attributes (files in assets/) |
|---|---|---|
| `BertTokenizer` (BERT, ELECTRA, DistilBERT) | `[CLS] a [SEP] b [SEP]`, types 0/1 | `vocab_file` (vocab.txt) |
| `AlbertTokenizer` (ALBERT) | `[CLS] a [SEP] b [SEP]`, types 0/1 | `sp_model_file` (spiece.model) |
| `XLMRobertaTokenizer` (XLM-R) | `<s> a </s></s> b </s>`, types 0 | `sp_model_file` (sentencepiece.bpe.model) |
| `RobertaTokenizer` (RoBERTa) | `<s> a </s></s> b </s>`, types 0 | `bpe_vocab_file` (vocab.json), `bpe_merges_file` (merges.txt) |

`vocab_file` and `sp_model_file` are the names TF Hub's BERT and ALBERT models use; byte-level
BPE has no TF Hub precedent, and its files get names of their own (`bpe_...`) so that code that
reads `vocab_file` as a one-token-a-line vocab.txt fails loudly instead of misreading JSON. Every
export also has `tokenizer_record` (assets/kzoo_tokenizer.json, `kzoo.text.saving`'s record), so
`kzoo.text.saving.read_tokenizer(<version folder>/assets)` rebuilds the exact tokenizer.
The ids are the in-graph tokenizer's: XLM-R's are its SentencePiece model's ids plus one
(fairseq's mapping), so code that runs `sp_model_file` itself must add the same offset.

Preprocessing SavedModel (`tf.saved_model.load(path)` gives `preprocess`):
  - `preprocess(strings)`: tf.string [batch] -> dict of int32 [batch, seq_length]
    `input_word_ids`, `input_mask`, `input_type_ids` (`seq_length` given at export; one
    segment: the tokenizer's ids of the whole text, packed as
    `kzoo.text.BertPacker.from_tokenizer(tokenizer, seq_length)` packs them). Also the
    `serving_default` signature (input `text`).
  - `preprocess.tokenize(strings)`: tf.string [batch] -> int32 RaggedTensor
    [batch, (words), (pieces)] as TF Hub's: the words are the tokenizer's `split_words`
    (`BertTokenizer`: `basic_tokenize`; the other families: the runs between whitespace),
    each tokenized alone by its `tokenize_words` (RoBERTa: with a space in front, as
    transformers' `add_prefix_space=True, is_split_into_words=True`). For WordPiece
    `.merge_dims(-2, -1)` gives `BertTokenizer`'s [batch, (wordpieces)]; for the others it can
    differ from the tokenizer's ids of the whole text (RoBERTa's first word and runs of
    spaces, e.g.), which is what `preprocess(strings)` packs.
    `preprocess.tokenize.get_special_tokens_dict()`: int32 scalars `vocab_size`,
    `start_of_sequence_id` (`[CLS]` / `<s>`), `end_of_segment_id` (`[SEP]` / `</s>`),
    `padding_id`, `mask_id`, the tokenizer's.
  - `preprocess.bert_pack_inputs(segments, seq_length=<default>)`: a list of 1 or 2 int32
    RaggedTensors [batch, (tokens)] or [batch, (words), (tokens)] -> the packed dict,
    [batch, seq_length], in the family's layout (table above); `seq_length` is an int32
    scalar tensor (a Python int works too); truncation as `BertPacker` (round robin for
    pairs).
  - the asset attributes of the table, `preprocess.tokenizer_record`, and
    `preprocess.do_lower_case` (the tokenizer's `lower_case`; False for RoBERTa and XLM-R).

Encoder SavedModel (`encoder = tf.saved_model.load(path)`):
  - `encoder(inputs, training=False)`: dict of int32 [batch, seq] `input_word_ids`,
    `input_mask`, `input_type_ids` -> dict `pooled_output` float32 [batch, hidden],
    `sequence_output` float32 [batch, seq, hidden], `encoder_outputs` (list, one
    [batch, seq, hidden] per block), `default` (= `pooled_output`); `training=True` turns
    dropout on.
  - `encoder.serve(inputs)` / `encoder.serve_training(inputs)`: the same with training
    False / True, for `keras.layers.TFSMLayer(path, call_endpoint="serve",
    call_training_endpoint="serve_training", trainable=True)`.
  - `encoder.variables`, `encoder.trainable_variables`, `encoder.non_trainable_variables`.
  - `encoder.mlm(inputs)` (only when exported with `pretrainer=`): the encoder inputs plus
    int32 `masked_lm_positions` [batch, P] -> the encoder outputs plus `mlm_logits`
    float32 [batch, P, vocab_size]; `training=` as above.
  - signature `serving_default`: the three int32 inputs -> `pooled_output`,
    `sequence_output` (TF Serving signatures cannot return the `encoder_outputs` list).
  - exported from a sentence encoder (`kzoo.models.sentence_encoder`): also `embeddings`
    float32 [batch, hidden] (its pooling and normalisation), in the outputs and in
    `serving_default`, and `default` = `embeddings`.
  - the same asset attributes (`encoder.vocab_file`, `encoder.sp_model_file`, ...),
    `encoder.tokenizer_record` and `encoder.do_lower_case`, as TF Hub's encoders keep them.
"""

import contextlib
import json
import os
import tempfile
from typing import NamedTuple

import tensorflow as tf
import tensorflow_text as tf_text

from kzoo import io as kzoo_io
from kzoo.data.conll import split_words, tokenize_words
from kzoo.export.precision import check_serving_dtype, serving_copy
from kzoo.export.versions import next_version, write_version
from kzoo.models.encoder import INPUT_NAMES
from kzoo.text import BertPacker, BertTokenizer, RobertaTokenizer, SentencePieceTokenizer
from kzoo.text.saving import RECORD, write_tokenizer
from kzoo.text.tokenizer import StringTokenizer

POSITIONS = "masked_lm_positions"
LAYOUTS = ("bert", "roberta")


class HubExport(NamedTuple):
    """The two version folders `export_hub_encoder` wrote."""

    preprocess: str
    encoder: str


def pack_segments(segments, seq_length, cls_id, sep_id, pad_id=0, layout="bert"):
    """`BertPacker`'s (or `RobertaPacker`'s) packing with `seq_length` a Python int or an int32
    scalar tensor.

    Args:
        segments: a list of 1 or 2 RaggedTensors [batch, (tokens)] or [batch, (words), (tokens)].
        layout: "bert" (`cls a sep b sep`, type ids 0 then 1) or "roberta" (`cls a sep sep b sep`,
            type ids all 0), a tokenizer's `packer_layout`.

    Returns:
        Dict of int32 [batch, seq_length] `input_word_ids`, `input_mask`, `input_type_ids`.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    segments = list(segments)
    if len(segments) not in (1, 2):
        raise ValueError(f"bert_pack_inputs packs one or two segments, got {len(segments)}")
    flat = []
    for segment in segments:
        if not isinstance(segment, tf.RaggedTensor):
            segment = tf.RaggedTensor.from_tensor(tf.convert_to_tensor(segment))
        if segment.ragged_rank > 1:
            segment = segment.merge_dims(-2, -1)
        flat.append(tf.cast(segment, tf.int32))
    seq_length = tf.cast(seq_length, tf.int32) if tf.is_tensor(seq_length) else int(seq_length)
    separators = len(flat) if layout == "bert" or len(flat) == 1 else 3  # roberta: a </s></s> b </s>
    budget = seq_length - 1 - separators
    trimmed = tf_text.RoundRobinTrimmer(max_seq_length=budget).trim(flat)
    if layout == "roberta" and len(trimmed) == 2:  # the second segment starts with one more </s>
        first, second = trimmed
        extra = tf.RaggedTensor.from_tensor(tf.fill([second.nrows(), 1], tf.constant(sep_id, tf.int32)),
                                            row_splits_dtype=second.row_splits.dtype)
        trimmed = [first, tf.concat([extra, second], axis=1)]
    word_ids, type_ids = tf_text.combine_segments(trimmed, cls_id, sep_id)
    if layout == "roberta":
        type_ids = tf.zeros_like(word_ids)
    if isinstance(seq_length, int):
        shape = [None, seq_length]
    else:
        shape = tf.stack([tf.cast(word_ids.nrows(), tf.int32), seq_length])
    return {
        "input_word_ids": word_ids.to_tensor(pad_id, shape=shape),
        "input_mask": tf.ones_like(word_ids).to_tensor(0, shape=shape),
        "input_type_ids": tf.cast(type_ids, tf.int32).to_tensor(0, shape=shape),
    }


def _float32(outputs):
    return tf.nest.map_structure(lambda t: tf.cast(t, tf.float32) if t.dtype.is_floating else t, outputs)


def _input_spec(with_positions=False):
    names = INPUT_NAMES + ((POSITIONS,) if with_positions else ())
    return {name: tf.TensorSpec([None, None], tf.int32, name=name) for name in names}


def _asset_paths(tokenizer, folder):
    """Writes the tokenizer's files into `folder` (`kzoo.text.saving.write_tokenizer`) and returns
    {attribute: path} for the SavedModels' assets (the module docstring's table)."""
    if not isinstance(tokenizer, (BertTokenizer, SentencePieceTokenizer, RobertaTokenizer)):
        raise ValueError(f"export_hub_encoder exports kzoo's BertTokenizer, AlbertTokenizer, XLMRobertaTokenizer, "
                         f"SentencePieceTokenizer and RobertaTokenizer, got {type(tokenizer).__name__}")
    write_tokenizer(tokenizer, folder)
    with open(os.path.join(folder, RECORD), encoding="utf-8") as f:
        record = json.load(f)
    if isinstance(tokenizer, BertTokenizer):
        names = {"vocab_file": record["vocab_file"]}
    elif isinstance(tokenizer, SentencePieceTokenizer):
        names = {"sp_model_file": record["model_file"]}
    else:
        names = {"bpe_vocab_file": record["vocab_file"], "bpe_merges_file": record["merges_file"]}
    names["tokenizer_record"] = RECORD
    return {attribute: os.path.join(folder, name) for attribute, name in names.items()}


def _add_tokenizer_attributes(root, tokenizer, assets):
    """The asset attributes, `do_lower_case`, and the tokenizer's resources (if any) on `root`."""
    for attribute, path in assets.items():
        setattr(root, attribute, tf.saved_model.Asset(path))
    lower_case = bool(getattr(tokenizer, "lower_case", False))
    root.do_lower_case = tf.Variable(lower_case, trainable=False, name="do_lower_case")
    if tokenizer.resources:
        root.tokenizer_resources = list(tokenizer.resources)


def _word_prefix(tokenizer):
    """What `tokenize_words` puts in front of each word before tokenizing it alone: "" (the
    `StringTokenizer` rule, BERT's and SentencePiece's), " " (`RobertaTokenizer`'s), or None for a
    tokenizer whose `tokenize_words` does something else."""
    method = getattr(type(tokenizer), "tokenize_words", None)
    if method is StringTokenizer.tokenize_words:
        return ""
    if method is RobertaTokenizer.tokenize_words:
        return " "
    return None


def _preprocess_module(tokenizer, seq_length, assets):
    root = tf.__internal__.tracking.AutoTrackable()
    packer = BertPacker.from_tokenizer(tokenizer, seq_length)
    layout = getattr(tokenizer, "packer_layout", "bert")
    ids = dict(cls_id=tokenizer.cls_token_id, sep_id=tokenizer.sep_token_id, pad_id=tokenizer.pad_token_id,
               layout=layout)
    string_spec = tf.TensorSpec([None], tf.string)
    # The tokenizer's graph, traced once: the endpoints below call this function, so the SavedModel
    # holds the tokenizer's constants (WordPiece, SentencePiece, BPE tables) once.
    token_ids = tf.function(lambda strings: tokenizer(strings), input_signature=[string_spec], autograph=False)
    prefix = _word_prefix(tokenizer)

    def tokenize(strings):  # [batch, (words), (pieces)], each word alone
        words = split_words(tokenizer, strings)
        if prefix is None:
            return tokenize_words(tokenizer, words)
        flat = words.flat_values
        return words.with_flat_values(token_ids(tf.strings.join([prefix, flat]) if prefix else flat))

    root.tokenize = tf.__internal__.tracking.AutoTrackable()
    root.tokenize.__call__ = tf.function(tokenize, input_signature=[string_spec], autograph=False)
    if isinstance(tokenizer, BertTokenizer):  # WordPiece: the words' pieces, merged, are the text's
        root.__call__ = tf.function(lambda strings: packer(root.tokenize.__call__(strings).merge_dims(-2, -1)),
                                    input_signature=[string_spec], autograph=False)
    else:  # the ids of the running text (RoBERTa's first word has no space in front, e.g.)
        root.__call__ = tf.function(lambda strings: packer(token_ids(strings)), input_signature=[string_spec],
                                    autograph=False)
    special = {
        "vocab_size": tokenizer.vocab_size,
        "start_of_sequence_id": tokenizer.cls_token_id,
        "end_of_segment_id": tokenizer.sep_token_id,
        "padding_id": tokenizer.pad_token_id,
        "mask_id": tokenizer.mask_token_id,
    }
    root.tokenize.get_special_tokens_dict = tf.__internal__.tracking.AutoTrackable()
    root.tokenize.get_special_tokens_dict.__call__ = tf.function(
        lambda: {k: tf.constant(v, tf.int32) for k, v in special.items()}, input_signature=[])

    @tf.function(autograph=False)
    def bert_pack_inputs(inputs, seq_length=seq_length):
        return pack_segments(inputs, seq_length, **ids)

    root.bert_pack_inputs = tf.__internal__.tracking.AutoTrackable()
    root.bert_pack_inputs.__call__ = bert_pack_inputs
    for ragged_rank in (1, 2):
        for count in (1, 2):
            specs = [tf.RaggedTensorSpec([None] * (ragged_rank + 1), tf.int32, ragged_rank=ragged_rank)
                     for _ in range(count)]
            bert_pack_inputs.get_concrete_function(specs, seq_length=tf.TensorSpec([], tf.int32))
    _add_tokenizer_attributes(root, tokenizer, assets)
    serving = tf.function(lambda text: root.__call__(text), input_signature=[tf.TensorSpec([None], tf.string,
                                                                                           name="text")])
    return root, {"serving_default": serving.get_concrete_function()}


def _encoder_module(encoder, pretrainer, tokenizer, assets, pooling=None):
    root = tf.__internal__.tracking.AutoTrackable()
    root.variables = list(encoder.variables)
    root.trainable_variables = list(encoder.trainable_variables)
    root.non_trainable_variables = list(encoder.non_trainable_variables)

    def encode(inputs, training):
        outputs = encoder({name: inputs[name] for name in INPUT_NAMES}, training=training)
        result = {"sequence_output": outputs["sequence_output"], "pooled_output": outputs["pooled_output"],
                  "encoder_outputs": list(outputs["encoder_outputs"]), "default": outputs["pooled_output"]}
        if pooling is not None:  # a sentence encoder: its embedding is the default output
            result["embeddings"] = result["default"] = pooling(
                outputs["sequence_output"], inputs["input_mask"], pooled=outputs["pooled_output"])
        return _float32(result)

    root.__call__ = tf.function(lambda inputs, training=False: encode(inputs, training), autograph=False)
    for training in (False, True):
        root.__call__.get_concrete_function(_input_spec(), training=training)
    # the endpoints below call the traced __call__, so the encoder's graph is not traced again
    root.serve = tf.function(lambda inputs: root.__call__(inputs, training=False), input_signature=[_input_spec()],
                             autograph=False)
    root.serve_training = tf.function(lambda inputs: root.__call__(inputs, training=True),
                                      input_signature=[_input_spec()], autograph=False)

    @tf.function(input_signature=[*_input_spec().values()], autograph=False)
    def serving_default(input_word_ids, input_mask, input_type_ids):
        outputs = root.__call__({"input_word_ids": input_word_ids, "input_mask": input_mask,
                                 "input_type_ids": input_type_ids}, training=False)
        keys = ("pooled_output", "sequence_output") + (("embeddings",) if pooling is not None else ())
        return {key: outputs[key] for key in keys}

    if pretrainer is not None:
        head = pretrainer.masked_lm

        def mlm(inputs, training):
            result = dict(root.__call__({name: inputs[name] for name in INPUT_NAMES}, training=training))
            logits = head(tf.cast(result["sequence_output"], encoder.compute_dtype), inputs[POSITIONS],
                          training=training)
            result["mlm_logits"] = tf.cast(logits, tf.float32)
            return result

        root.mlm = tf.__internal__.tracking.AutoTrackable()
        root.mlm.variables = list(encoder.variables) + list(head.variables)
        root.mlm.trainable_variables = list(encoder.trainable_variables) + list(head.trainable_variables)
        root.mlm.__call__ = tf.function(lambda inputs, training=False: mlm(inputs, training), autograph=False)
        for training in (False, True):
            root.mlm.__call__.get_concrete_function(_input_spec(True), training=training)
    _add_tokenizer_attributes(root, tokenizer, assets)
    return root, {"serving_default": serving_default.get_concrete_function()}


def export_hub_encoder(encoder, tokenizer, export_root, seq_length=None, pretrainer=None, version=None,
                       compute_dtype=None):
    """Writes TF Hub-style preprocessing and encoder SavedModels (see the module docstring).

    Args:
        encoder: a kzoo encoder `keras.Model` (`kzoo.models.bert_encoder`, any family's), or
            a model holding exactly one. A sentence encoder (`kzoo.models.sentence_encoder`)
            exports its encoder with the embedding added: `embeddings` float32 [batch, dim]
            among the outputs and in `serving_default`, and `default` = `embeddings` (the
            output TF Hub's sentence-embedding models put their embedding in);
            `pooled_output` stays the encoder's.
        tokenizer: its kzoo tokenizer (`kzoo.text.BertTokenizer`, `AlbertTokenizer`,
            `XLMRobertaTokenizer`, `RobertaTokenizer`; `Pretrained.tokenizer`); its files become
            the assets (vocab.txt; spiece.model or sentencepiece.bpe.model; vocab.json and
            merges.txt; plus kzoo_tokenizer.json) and its family sets the packing layout.
        export_root: writes `<export_root>/preprocess/<version>` and
            `<export_root>/encoder/<version>`.
        seq_length: the length the preprocessing model packs to by default (None: 128; for a
            sentence encoder, the length it was trained with, as `export_sentence_encoder`).
        pretrainer: a `kzoo.models.bert_pretrainer` on this encoder: adds the `mlm`
            sub-object (its masked-LM head) to the encoder SavedModel.
        version: integer version of both; default: the next one free in both folders.
        compute_dtype: None (the model as it computes), "float32" or "bfloat16": the encoder's
            projections multiply in bfloat16, everything else in float32, outputs unchanged in
            dtype (`kzoo.export.precision.serving_copy`; the SavedModel stores those kernels in
            bfloat16). Not with `pretrainer` (the MLM head is for further training). For CPUs with
            AVX512-BF16 / AMX, TPUs and recent GPUs.

    Returns:
        `HubExport(preprocess=<path>, encoder=<path>)`, the two version folders.
    """
    from kzoo.export.sentence import sentence_seq_length
    from kzoo.models.sentence import find_pooling
    from kzoo.models.walk import find_encoder

    check_serving_dtype(compute_dtype)
    if pretrainer is not None and compute_dtype is not None:
        raise ValueError("compute_dtype is for serving exports; export with pretrainer (for further training) "
                         "in the model's own precision")
    encoder = serving_copy(encoder, compute_dtype)
    found = find_encoder(encoder)
    pooling = find_pooling(encoder) if found is not encoder else None
    if seq_length is None:
        seq_length = sentence_seq_length(encoder) if pooling is not None else 128
    encoder = found
    if pretrainer is not None:
        if not hasattr(pretrainer, "masked_lm"):
            raise ValueError("pretrainer must be a kzoo BertPretrainer (with a masked_lm head)")
        if pretrainer.encoder is not encoder:
            raise ValueError(f"pretrainer {pretrainer.name!r} is built on another encoder than {encoder.name!r}")
    if seq_length < 3:
        raise ValueError(f"seq_length must be >= 3, got {seq_length}")
    export_root = os.fspath(export_root)
    roots = {kind: os.path.join(export_root, kind) for kind in HubExport._fields}
    if version is None:
        version = max(next_version(root) for root in roots.values())
    with tempfile.TemporaryDirectory() as tmp:
        assets = _asset_paths(tokenizer, os.path.join(tmp, "assets"))
        modules = {"preprocess": _preprocess_module(tokenizer, seq_length, assets),
                   "encoder": _encoder_module(encoder, pretrainer, tokenizer, assets, pooling)}
        paths = {}
        try:
            for kind, (module, signatures) in modules.items():
                def write(path, module=module, signatures=signatures):
                    tf.saved_model.save(module, path, signatures=signatures)

                paths[kind] = write_version(roots[kind], write, version)
        except BaseException:
            for path in paths.values():  # no half pair (uncommitted first, then deleted)
                with contextlib.suppress(Exception):
                    kzoo_io.remove_directory(path)
            raise
    return HubExport(**paths)
