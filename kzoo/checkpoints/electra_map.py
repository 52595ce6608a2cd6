"""ELECTRA's assignment map, in google-research/electra's official checkpoint names.

An official ELECTRA checkpoint (`run_pretraining.py`) holds both networks:

- the discriminator, the encoder kzoo loads: `electra/embeddings/
  {word,token_type,position}_embeddings` ([*, embedding_size]),
  `electra/embeddings/LayerNorm/*`, `electra/embeddings_project/*` (only when
  embedding_size != hidden_size), `electra/encoder/layer_N/...` (BERT's block
  names); no pooler;
- its replaced-token-detection head `discriminator_predictions/dense/*` and
  `discriminator_predictions/dense_1/*`;
- the generator, which shares `electra/embeddings/*`: `generator/
  embeddings_project/*`, `generator/encoder/layer_N/...` and its masked-LM
  head `generator_predictions/dense/*`, `generator_predictions/LayerNorm/*`,
  `generator_predictions/output_bias` (logits against the shared word table).

Loading an encoder uses the first group and reports the heads and the
generator as unused; a `kzoo.models.ElectraPretrainer` (pass its
`discriminator` as `encoder=`) takes all of them, so pretraining continues
from the checkpoint. The archives ship no config file: `config_from_checkpoint`
and `generator_options` read the sizes off the variable shapes, with
ELECTRA's rule for what shapes do not show (`util/training_utils.
get_bert_config`: heads = max(1, hidden_size // 64)).

Hugging Face names (`electra.embeddings_project`, `electra.encoder.layer.N...`,
`discriminator_predictions.dense_prediction`, `generator_predictions.*`,
`generator_lm_head.bias`) translate to these.
"""

import re

from kzoo.checkpoints.entries import (Entry, FamilyMap, block_entries, dense_entries, embedding_entries,
                                      norm_entries, single, strip_prefix, tf_style_name)
from kzoo.models.walk import encoder_parts

WORD_EMBEDDINGS = "electra/embeddings/word_embeddings"
GENERATOR = "generator/"
_HF_HEADS = {
    "discriminator_predictions.dense_prediction.weight": ("discriminator_predictions/dense_1/kernel", True),
    "discriminator_predictions.dense_prediction.bias": ("discriminator_predictions/dense_1/bias", False),
    "generator_lm_head.bias": ("generator_predictions/output_bias", False),
}
_LAYER = re.compile(r"encoder/layer_(\d+)/")


def encoder_entries(encoder):
    parts = encoder_parts(encoder)
    entries = embedding_entries("electra/embeddings/", parts.embeddings)
    if parts.projection is not None:
        entries += dense_entries("electra/embeddings_project", parts.projection)
    for i, (block,) in enumerate(parts.block_groups):
        entries += block_entries(f"electra/encoder/layer_{i}/", block)
    return entries


def head_entries(model, encoder=None):
    """The discriminator head and the generator of a `kzoo.models.ElectraPretrainer`
    in `model` (none when it has none)."""
    from kzoo.models.electra import ElectraPretrainer

    entries = []
    for pretrainer in single(model, ElectraPretrainer, "ELECTRA pretrainers"):
        entries += dense_entries("discriminator_predictions/dense", pretrainer.rtd_dense)
        entries += dense_entries("discriminator_predictions/dense_1", pretrainer.rtd_logit)
        if pretrainer.generator_projection is not None:
            entries += dense_entries("generator/embeddings_project", pretrainer.generator_projection)
        for i, block in enumerate(pretrainer.generator_blocks):
            entries += block_entries(f"generator/encoder/layer_{i}/", block)
        head = pretrainer.generator_head
        entries += dense_entries("generator_predictions/dense", head.transform)
        entries += norm_entries("generator_predictions/LayerNorm", head.transform_layer_norm)
        entries.append(Entry("generator_predictions/output_bias", head.output_bias))
    return entries


def official_name(hf_name):
    """(official name, transpose?) for a HF ELECTRA weight name, or None."""
    if hf_name in _HF_HEADS:
        return _HF_HEADS[hf_name]
    name = strip_prefix(hf_name, "electra.")
    if name.startswith(("embeddings.", "embeddings_project.", "encoder.")):
        return tf_style_name(name, "electra/")
    if name.startswith(("discriminator_predictions.dense.", "generator_predictions.")):
        return tf_style_name(name)
    return None


def _network_sizes(shapes, scope, source):
    """(hidden, layers, intermediate) of the encoder under `scope` ("electra/", "generator/")."""
    layers = {int(m.group(1)) for name in shapes if name.startswith(scope)
              for m in [_LAYER.match(name[len(scope):])] if m}
    if not layers:
        return None
    if sorted(layers) != list(range(len(layers))):
        raise ValueError(f"{source}: {scope}encoder layers {sorted(layers)} are not 0..{len(layers) - 1}")
    try:
        hidden = shapes[f"{scope}encoder/layer_0/attention/self/query/kernel"][-1]
        intermediate = shapes[f"{scope}encoder/layer_0/intermediate/dense/kernel"][-1]
    except KeyError as e:
        raise ValueError(f"{source}: ELECTRA checkpoint without {e.args[0]}: cannot read its sizes") from e
    return int(hidden), len(layers), int(intermediate)


def _heads(hidden):
    return max(1, hidden // 64)  # util/training_utils.get_bert_config and run_pretraining.get_generator_config


def config_from_checkpoint(shapes, source="<checkpoint>"):
    """The discriminator's `BertConfig` (family "electra") read off an official
    ELECTRA checkpoint's variable shapes ({name: shape}, as
    `tf.train.load_checkpoint(p).get_variable_to_shape_map()`).

    Sizes come from the shapes; the number of heads from ELECTRA's rule
    (hidden_size // 64, at least 1); the rest are ELECTRA's defaults (exact
    GELU, dropout 0.1, LayerNorm epsilon 1e-12).
    """
    try:
        vocab_size, embedding_size = shapes[WORD_EMBEDDINGS]
        max_positions = shapes["electra/embeddings/position_embeddings"][0]
        type_vocab_size = shapes["electra/embeddings/token_type_embeddings"][0]
    except KeyError as e:
        raise ValueError(f"{source}: not an ELECTRA checkpoint: no {e.args[0]}") from e
    sizes = _network_sizes(shapes, "electra/", source)
    if sizes is None:
        raise ValueError(f"{source}: ELECTRA checkpoint without electra/encoder/layer_* variables")
    hidden, layers, intermediate = sizes
    from kzoo.configs import BertConfig

    return BertConfig(vocab_size=int(vocab_size), hidden_size=hidden, num_hidden_layers=layers,
                      num_attention_heads=_heads(hidden), intermediate_size=intermediate,
                      max_position_embeddings=int(max_positions), type_vocab_size=int(type_vocab_size),
                      family="electra", embedding_size=int(embedding_size))


def generator_options(shapes, source="<checkpoint>"):
    """`kzoo.models.electra_pretrainer` keyword arguments that rebuild the
    checkpoint's generator (hidden size, layers, feed-forward width and
    ELECTRA's heads rule), or None when it holds no generator."""
    sizes = _network_sizes(shapes, GENERATOR, source)
    if sizes is None:
        return None
    hidden, layers, intermediate = sizes
    return dict(generator_hidden_size=hidden, generator_num_layers=layers, generator_intermediate_size=intermediate,
                generator_num_heads=_heads(hidden))


MAP = FamilyMap("electra", WORD_EMBEDDINGS, True, encoder_entries, head_entries, official_name)
