"""RoBERTa's and XLM-RoBERTa's assignment map (Hugging Face folders only).

Neither family has official TF1 checkpoints (fairseq trained them), so the
canonical names are the TensorFlow spelling of the HF names, under
`roberta/` (XLM-R's HF weights use the same `roberta.` prefix):
`roberta/embeddings/{word,token_type,position}_embeddings`,
`roberta/embeddings/LayerNorm/*`, `roberta/encoder/layer_N/...` (BERT's block
names), `roberta/pooler/dense/*`, and the masked-LM head `lm_head/dense/*`,
`lm_head/layer_norm/*`, `lm_head/bias` (`lm_head.decoder.weight` is the tied
word table, reported unused).

The pooler is optional (new when absent, even in a strict load): HF's
RobertaModel has one, but the released roberta-base / xlm-roberta-base
weights (converted from fairseq, saved from the masked-LM model) do not, so
there `pooled_output` starts random, as it does in transformers.
"""

from kzoo.checkpoints.entries import (Entry, FamilyMap, block_entries, dense_entries, embedding_entries,
                                      norm_entries, single, strip_prefix, tf_style_name)
from kzoo.layers import MaskedLMHead
from kzoo.models.walk import encoder_parts

WORD_EMBEDDINGS = "roberta/embeddings/word_embeddings"


def encoder_entries(encoder):
    parts = encoder_parts(encoder)
    entries = embedding_entries("roberta/embeddings/", parts.embeddings)
    for i, (block,) in enumerate(parts.block_groups):
        entries += block_entries(f"roberta/encoder/layer_{i}/", block)
    for pooler in parts.poolers:  # optional: the released (fairseq-converted) checkpoints have none
        entries += dense_entries("roberta/pooler/dense", pooler.dense, optional=True)
    return entries


def head_entries(model, encoder=None):
    """RobertaForMaskedLM's `lm_head` -> a `MaskedLMHead` in `model`."""
    entries = []
    for head in single(model, MaskedLMHead, "masked-LM heads"):
        entries += dense_entries("lm_head/dense", head.transform)
        entries += norm_entries("lm_head/layer_norm", head.transform_layer_norm)
        entries.append(Entry("lm_head/bias", head.output_bias))
    return entries


def canonical_name(hf_name):
    """(canonical name, transpose?) for a HF RoBERTa / XLM-R weight name, or None."""
    name = strip_prefix(hf_name, "roberta.")
    if name.startswith(("embeddings.", "encoder.", "pooler.")):
        return tf_style_name(name, "roberta/")
    if name in ("lm_head.bias", "lm_head.decoder.bias"):
        return "lm_head/bias", False
    if name.startswith(("lm_head.dense.", "lm_head.layer_norm.")):
        return tf_style_name(name)
    return None


MAP = FamilyMap("roberta", WORD_EMBEDDINGS, False, encoder_entries, head_entries, canonical_name)
