"""DeBERTa-v2/v3's assignment map (Hugging Face folders only).

Microsoft released DeBERTa as PyTorch weights; there is no official TF1
checkpoint format (and kzoo writes none). The canonical names are the
TensorFlow spelling of the HF names (`kzoo.checkpoints.entries.
tf_style_name`), under `deberta/`:

- `deberta/embeddings/word_embeddings`, `deberta/embeddings/LayerNorm/*`
  (plus `token_type_embeddings` when type_vocab_size > 0 and
  `position_embeddings` when position_biased_input is true, both absent in
  v3);
- the relative table all layers share, `deberta/encoder/rel_embeddings`
  ([2 * position_buckets, hidden]) and its `deberta/encoder/LayerNorm/*`
  (norm_rel_ebd "layer_norm"), held by kzoo's `BertEmbeddings`
  (`relative_embeddings`, `relative_layer_norm`);
- per layer `deberta/encoder/layer_N/attention/self/{query_proj,key_proj,
  value_proj}/*` (and `pos_key_proj`, `pos_query_proj` when share_att_key is
  false), `.../attention/output/dense/*`, `.../attention/output/LayerNorm/*`,
  `.../intermediate/dense/*`, `.../output/dense/*`, `.../output/LayerNorm/*`;
- `pooler/dense/*`: the ContextPooler of DebertaV2ForSequenceClassification
  (and ...ForMultipleChoice), kzoo's `pooled_output` dense. Optional: a
  DebertaV2Model or masked-LM folder (the released checkpoints) has none,
  and it is then new (reported missing), even in a strict load, as
  DistilBERT's `pre_classifier`.

Heads: a `ClassificationHead` in the model (when it has exactly one) takes
`classifier/*`; a `MaskedLMHead` takes the masked-LM head under either of
its names: DebertaV2ForMaskedLM's legacy head (`legacy=True`, transformers'
default) `cls.predictions.transform.dense.*`, `cls.predictions.transform.
LayerNorm.*`, `cls.predictions.bias` (`cls.predictions.decoder.*` are tied
to the word table and that bias), or the original checkpoints' and
`legacy=False`'s `lm_predictions.lm_head.dense.*`, `lm_predictions.lm_head.
LayerNorm.*`, `lm_predictions.lm_head.bias`; both are dense + hidden_act +
LayerNorm, then logits against the word table plus a bias, as kzoo's
`MaskedLMHead`. The released v3 checkpoints' replaced-token-detection head
(`mask_predictions.*`) is reported unused.
"""

from kzoo.checkpoints.entries import (Entry, FamilyMap, block_entries, dense_entries, embedding_entries,
                                      norm_entries, single, strip_prefix, tf_style_name)
from kzoo.layers import ClassificationHead, MaskedLMHead
from kzoo.models.walk import encoder_parts

WORD_EMBEDDINGS = "deberta/embeddings/word_embeddings"
RELATIVE_EMBEDDINGS = "deberta/encoder/rel_embeddings"
RELATIVE_LAYER_NORM = "deberta/encoder/LayerNorm"
DEBERTA_BLOCK = {
    "query": "attention/self/query_proj",
    "key": "attention/self/key_proj",
    "value": "attention/self/value_proj",
    "attention_output": "attention/output/dense",
    "attention_norm": "attention/output/LayerNorm",
    "intermediate": "intermediate/dense",
    "output": "output/dense",
    "output_norm": "output/LayerNorm",
}
# share_att_key false: each layer's own projections of the relative table.
POSITION_PROJECTIONS = {"pos_key_dense": "attention/self/pos_key_proj", "pos_query_dense": "attention/self/pos_query_proj"}
# Both spellings of the masked-LM head -> kzoo's canonical (BERT-like) names.
MLM_HEAD = "cls/predictions"
_HF_MLM = {
    "cls.predictions.transform.dense.weight": (f"{MLM_HEAD}/transform/dense/kernel", True),
    "cls.predictions.transform.dense.bias": (f"{MLM_HEAD}/transform/dense/bias", False),
    "cls.predictions.transform.LayerNorm.weight": (f"{MLM_HEAD}/transform/LayerNorm/gamma", False),
    "cls.predictions.transform.LayerNorm.bias": (f"{MLM_HEAD}/transform/LayerNorm/beta", False),
    "cls.predictions.bias": (f"{MLM_HEAD}/output_bias", False),
    "cls.predictions.decoder.bias": (f"{MLM_HEAD}/output_bias", False),
    "lm_predictions.lm_head.dense.weight": (f"{MLM_HEAD}/transform/dense/kernel", True),
    "lm_predictions.lm_head.dense.bias": (f"{MLM_HEAD}/transform/dense/bias", False),
    "lm_predictions.lm_head.LayerNorm.weight": (f"{MLM_HEAD}/transform/LayerNorm/gamma", False),
    "lm_predictions.lm_head.LayerNorm.bias": (f"{MLM_HEAD}/transform/LayerNorm/beta", False),
    "lm_predictions.lm_head.bias": (f"{MLM_HEAD}/output_bias", False),
}


def encoder_entries(encoder):
    parts = encoder_parts(encoder)
    embeddings = parts.embeddings
    entries = embedding_entries("deberta/embeddings/", embeddings)
    if embeddings.relative_embeddings is not None:
        entries.append(Entry(RELATIVE_EMBEDDINGS, embeddings.relative_embeddings.embeddings))
        if embeddings.relative_layer_norm is not None:
            entries += norm_entries(RELATIVE_LAYER_NORM, embeddings.relative_layer_norm)
    for i, (block,) in enumerate(parts.block_groups):
        prefix = f"deberta/encoder/layer_{i}/"
        entries += block_entries(prefix, block, DEBERTA_BLOCK)
        for attribute, name in POSITION_PROJECTIONS.items():
            dense = getattr(block.attention, attribute, None)
            if dense is not None:
                entries += dense_entries(prefix + name, dense, "split_out", "split_out")
    for pooler in parts.poolers:  # optional: only the sequence-classification (multiple-choice) folders have it
        if pooler.dense is not None:
            entries += dense_entries("pooler/dense", pooler.dense, optional=True)
    return entries


def head_entries(model, encoder=None):
    """DebertaV2ForSequenceClassification's `classifier` -> the one `ClassificationHead` in `model`; the
    masked-LM head (either spelling) -> a `MaskedLMHead`."""
    entries = []
    heads = [l for l in model._flatten_layers(include_self=True, recursive=True) if isinstance(l, ClassificationHead)]
    if len(heads) == 1 and heads[0].built:  # several task heads: none is *the* classifier
        entries += dense_entries("classifier", heads[0].dense)
    for head in single(model, MaskedLMHead, "masked-LM heads"):
        entries += dense_entries(f"{MLM_HEAD}/transform/dense", head.transform)
        entries += norm_entries(f"{MLM_HEAD}/transform/LayerNorm", head.transform_layer_norm)
        entries.append(Entry(f"{MLM_HEAD}/output_bias", head.output_bias))
    return entries


def canonical_name(hf_name):
    """(canonical name, transpose?) for a HF DeBERTa-v2/v3 weight name, or None."""
    if hf_name in _HF_MLM:
        return _HF_MLM[hf_name]
    name = strip_prefix(hf_name, "deberta.")
    if name.startswith(("embeddings.", "encoder.")):
        return tf_style_name(name, "deberta/")
    if name.startswith(("pooler.dense.", "classifier.")):
        return tf_style_name(name)
    return None


MAP = FamilyMap("deberta_v2", WORD_EMBEDDINGS, False, encoder_entries, head_entries, canonical_name)
