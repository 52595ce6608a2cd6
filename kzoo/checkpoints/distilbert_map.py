"""DistilBERT's assignment map (Hugging Face folders only).

The canonical names are the TensorFlow spelling of the HF names:
`distilbert/embeddings/{word,position}_embeddings` (no token types),
`distilbert/embeddings/LayerNorm/*`, per block `distilbert/transformer/
layer_N/attention/{q_lin,k_lin,v_lin,out_lin}/*`, `.../sa_layer_norm/*`,
`.../ffn/{lin1,lin2}/*`, `.../output_layer_norm/*`.

The encoder's `pooled_output` is DistilBertForSequenceClassification's
`pre_classifier` dense (+ ReLU) over the first token: `pre_classifier/*` is
part of the encoder map but optional (only sequence-classification
checkpoints have it; elsewhere it is new, even in a strict load). A
`ClassificationHead` in the model (`kzoo.models.bert_classifier`'s, or a
token classifier's; when the model has exactly one) takes `classifier/*`, and a `MaskedLMHead`
DistilBertForMaskedLM's `vocab_transform/*`, `vocab_layer_norm/*` and
`vocab_projector/bias` (`vocab_projector.weight` is the tied word table).
"""

from kzoo.checkpoints.entries import (Entry, FamilyMap, block_entries, dense_entries, embedding_entries,
                                      norm_entries, single, strip_prefix, tf_style_name)
from kzoo.layers import ClassificationHead, MaskedLMHead
from kzoo.models.walk import encoder_parts

WORD_EMBEDDINGS = "distilbert/embeddings/word_embeddings"
DISTILBERT_BLOCK = {
    "query": "attention/q_lin",
    "key": "attention/k_lin",
    "value": "attention/v_lin",
    "attention_output": "attention/out_lin",
    "attention_norm": "sa_layer_norm",
    "intermediate": "ffn/lin1",
    "output": "ffn/lin2",
    "output_norm": "output_layer_norm",
}
_TOP_LEVEL = ("pre_classifier.", "classifier.", "vocab_transform.", "vocab_layer_norm.")


def encoder_entries(encoder):
    parts = encoder_parts(encoder)
    entries = embedding_entries("distilbert/embeddings/", parts.embeddings)
    for i, (block,) in enumerate(parts.block_groups):
        entries += block_entries(f"distilbert/transformer/layer_{i}/", block, DISTILBERT_BLOCK)
    for pooler in parts.poolers:
        entries += dense_entries("pre_classifier", pooler.dense, optional=True)
    return entries


def head_entries(model, encoder=None):
    entries = []
    heads = [l for l in model._flatten_layers(include_self=True, recursive=True) if isinstance(l, ClassificationHead)]
    if len(heads) == 1 and heads[0].built:  # several task heads: none is *the* classifier
        entries += dense_entries("classifier", heads[0].dense)
    for head in single(model, MaskedLMHead, "masked-LM heads"):
        entries += dense_entries("vocab_transform", head.transform)
        entries += norm_entries("vocab_layer_norm", head.transform_layer_norm)
        entries.append(Entry("vocab_projector/bias", head.output_bias))
    return entries


def canonical_name(hf_name):
    """(canonical name, transpose?) for a HF DistilBERT weight name, or None."""
    name = strip_prefix(hf_name, "distilbert.")
    if name.startswith(("embeddings.", "transformer.")):
        return tf_style_name(name, "distilbert/")
    if name.startswith(_TOP_LEVEL):
        return tf_style_name(name)
    if name == "vocab_projector.bias":
        return "vocab_projector/bias", False
    return None


MAP = FamilyMap("distilbert", WORD_EMBEDDINGS, False, encoder_entries, head_entries, canonical_name)
