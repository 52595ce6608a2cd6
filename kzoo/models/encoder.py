"""`bert_encoder`: a BERT-style encoder of any family as a functional `keras.Model`.

One builder for every family kzoo knows (`kzoo.configs.FAMILIES`); the
config's `family` and structural fields say what differs from BERT:

==============  ==============================================================
family          what the builder does differently
==============  ==============================================================
bert            embeddings, `transformer_layer_{i}` blocks, tanh `pooler`
albert          tables at `embedding_size`, `embedding_projection` dense to
                hidden; `num_hidden_groups * inner_group_num` distinct blocks
                `transformer_group_{g}_inner_{j}`, each *called* at every layer
                that uses its group (layer i: group
                `int(i / (num_hidden_layers / num_hidden_groups))`): one set of
                variables per group, shared across depth; tanh `pooler`
electra         tables at `embedding_size`, `embedding_projection` when it
                differs from hidden; `pooler` without weights (the first
                token's hidden state, ELECTRA's `get_pooled_output`)
roberta,        position ids counted from `pad_token_id` (RoBERTa's), one
xlm_roberta     segment id; tanh `pooler`
distilbert      no segment table (`input_type_ids` accepted and ignored);
                `pooler` = ReLU dense over the first token (the
                `pre_classifier` of DistilBertForSequenceClassification)
deberta_v2      DeBERTa-v2/v3: every block's attention is a
                `DisentangledSelfAttention` (content-to-content plus the
                config's c2p / p2c terms over log-bucketed relative
                positions); the embeddings hold the relative table all blocks
                share ([2 * position_buckets, hidden], with its LayerNorm:
                HF's `encoder.rel_embeddings`, `encoder.LayerNorm`) and hand
                it to every block; no absolute positions in v3
                (`use_absolute_positions` = HF's `position_biased_input`
                false: any length runs) and no segment table when
                type_vocab_size is 0; padding positions are zeroed after the
                embeddings' LayerNorm and padding queries masked, as the
                reference; `pooler` = the ContextPooler of
                DebertaV2ForSequenceClassification (dense +
                `pooler_hidden_act`, GELU, over the first token)
==============  ==============================================================

BERT's config may turn on Shaw et al.'s relative-position attention
(`BertConfig.max_relative_position` k > 0, `relative_position_values`):
every block's attention is then a `kzoo.layers.RelativeMultiHeadAttention`
with its own [2k+1, head_size] relative key (and value) embeddings; with
`use_absolute_positions=False` the embeddings have no position table and the
encoder runs at any sequence length.

The input and output contract is the same for all: so every task model,
adapter, LoRA, freezing group, layer-wise rate, strategy and exporter works on
any family unchanged.
"""

import keras

from kzoo import configs
from kzoo.layers import BertEmbeddings, BertPooler, TransformerEncoderBlock
from kzoo.models.walk import EMBEDDING_PROJECTION

INPUT_NAMES = ("input_word_ids", "input_mask", "input_type_ids")


def encoder_inputs(seq_length=None):
    """The TF Hub BERT input dict: three int32 [batch, seq_length] tensors."""
    return {name: keras.Input(shape=(seq_length,), dtype="int32", name=name) for name in INPUT_NAMES}


def bert_encoder(
    config,
    norm_first=False,
    position_embedding=None,
    seq_length=None,
    dropout=None,
    attention_dropout=None,
    name=None,
    adapter_type=None,
    adapter_size=64,
    adapter_reduction_factor=None,
    adapter_activation="gelu",
    lora_rank=0,
    lora_alpha=None,
    lora_targets=("query", "value"),
):
    """Builds an encoder of `config.family` from a `BertConfig`.

    Inputs are the TF Hub BERT dict of int32 [batch, seq] tensors
    (`input_word_ids`, `input_mask`, `input_type_ids`). Outputs are a dict:
    `sequence_output` [batch, seq, hidden], `pooled_output` [batch, hidden]
    (see `BertConfig.pooler`: a tanh dense over the first token for BERT,
    ALBERT, RoBERTa and XLM-R; the first token itself for ELECTRA; ReLU
    `pre_classifier` dense for DistilBERT; the GELU ContextPooler dense for
    DeBERTa) and `encoder_outputs`, one
    [batch, seq, hidden] tensor per layer (the raw block outputs; for ALBERT
    one per layer applied, the output of its group's last inner block; with
    `norm_first=True` `sequence_output` is the last of them after the final
    LayerNorm). The module docstring lists what each family changes.

    Args:
        config: a `kzoo.configs.BertConfig` of any family.
        norm_first: pre-LN blocks and a final LayerNorm when True; post-LN
            (original BERT) when False.
        position_embedding: "learned" (BERT's table), "sinusoidal" or "none"
            (no absolute positions). None (the default): "learned", or
            "none" when `config.use_absolute_positions` is False (the only
            value such a config allows; "none" needs such a config).
        seq_length: static sequence length of the inputs, or None (dynamic).
        dropout, attention_dropout: override the config's dropout rates.
        name: model name (default "<family>_encoder", e.g. "bert_encoder").
        adapter_type: None, "houlsby" (adapters after the attention and the
            feed-forward sub-layers of every block) or "pfeiffer" (after the
            feed-forward sub-layer only); see `TransformerEncoderBlock`.
            ALBERT's shared blocks share their adapters too.
        adapter_size: adapter bottleneck width.
        adapter_reduction_factor: when given, the bottleneck width is
            `hidden_size // adapter_reduction_factor` (overrides
            `adapter_size`).
        adapter_activation: adapter bottleneck activation.
        lora_rank: LoRA rank in every block (0: no LoRA).
        lora_alpha: LoRA scale numerator (None: the rank).
        lora_targets: projections LoRA adapts in every block, among "query",
            "key", "value", "attention_output", "intermediate", "output".

    Adapters and LoRA are the identity at initialisation, so a pretrained
    checkpoint loaded into an adapted encoder gives the pretrained outputs;
    use `kzoo.models.adaptation.enable_parameter_efficient_training` to
    train only them (and the task head).

    Example:
    >>> config = configs.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2,
    ...                             num_attention_heads=2, intermediate_size=32)
    >>> encoder = bert_encoder(config)
    >>> ids = keras.ops.ones((2, 4), "int32")
    >>> out = encoder({"input_word_ids": ids, "input_mask": ids, "input_type_ids": ids * 0})
    >>> tuple(out["pooled_output"].shape)
    (2, 16)
    >>> albert = configs.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=4, num_attention_heads=2,
    ...                             intermediate_size=32, family="albert", embedding_size=8)
    >>> encoder = bert_encoder(albert)
    >>> len(encoder(encoder.input)["encoder_outputs"]), len(encoder.get_layer("transformer_group_0_inner_0").weights)
    (4, 16)
    """
    if not isinstance(config, configs.BertConfig):
        raise TypeError(f"config must be a kzoo.configs.BertConfig, got {type(config).__name__}")
    if position_embedding is None:
        position_embedding = "learned" if config.use_absolute_positions else "none"
    if (position_embedding == "none") == config.use_absolute_positions:
        raise ValueError(
            f"position_embedding={position_embedding!r} contradicts the config's use_absolute_positions="
            f"{str(config.use_absolute_positions).lower()}: 'none' (no absolute position table) goes with "
            "use_absolute_positions=false (and max_relative_position > 0), 'learned' or 'sinusoidal' with true"
        )
    if position_embedding == "learned" and seq_length and seq_length > config.max_sequence_length:
        raise ValueError(
            f"seq_length {seq_length} exceeds max_position_embeddings {config.max_position_embeddings}"
            + ("" if config.position_padding_idx is None else
               f" less the pad_token_id + 1 = {config.position_padding_idx + 1} rows RoBERTa's positions skip")
        )
    if adapter_reduction_factor is not None:
        if (not isinstance(adapter_reduction_factor, (int, float)) or isinstance(adapter_reduction_factor, bool)
                or adapter_reduction_factor <= 0):
            raise ValueError(f"adapter_reduction_factor must be positive, got {adapter_reduction_factor!r}")
        adapter_size = int(config.hidden_size // adapter_reduction_factor)
        if adapter_size < 1:
            raise ValueError(f"adapter_reduction_factor {adapter_reduction_factor} leaves no bottleneck "
                             f"(hidden_size {config.hidden_size})")
    dropout = config.hidden_dropout_prob if dropout is None else dropout
    attention_dropout = config.attention_probs_dropout_prob if attention_dropout is None else attention_dropout
    init = keras.initializers.TruncatedNormal(stddev=config.initializer_range)

    inputs = encoder_inputs(seq_length)
    deberta = config.family == "deberta_v2"
    embedded = BertEmbeddings(
        vocab_size=config.vocab_size,
        hidden_size=config.embedding_width,
        max_position_embeddings=config.max_position_embeddings,
        type_vocab_size=config.type_vocab_size,
        position_embedding=position_embedding,
        initializer_range=config.initializer_range,
        layer_norm_eps=config.layer_norm_eps,
        dropout=dropout,
        padding_idx=config.position_padding_idx,
        relative_embeddings=2 * config.relative_span if deberta else 0,
        relative_layer_norm=config.norm_rel_ebd == "layer_norm",
        mask_padding=deberta,
        name="embeddings",
    )(inputs["input_word_ids"], inputs["input_type_ids"], **(dict(padding_mask=inputs["input_mask"]) if deberta else {}))
    # DeBERTa: the relative table every block's attention shares.
    x, relative = embedded if deberta else (embedded, None)
    if config.has_embedding_projection:
        x = keras.layers.Dense(config.hidden_size, kernel_initializer=init, name=EMBEDDING_PROJECTION)(x)

    def block(name):
        return TransformerEncoderBlock(
            num_heads=config.num_attention_heads,
            intermediate_size=config.intermediate_size,
            activation=config.hidden_act,
            dropout=dropout,
            attention_dropout=attention_dropout,
            layer_norm_eps=config.layer_norm_eps,
            norm_first=norm_first,
            initializer_range=config.initializer_range,
            adapter_type=adapter_type,
            adapter_size=adapter_size,
            adapter_activation=adapter_activation,
            lora_rank=lora_rank,
            lora_alpha=lora_alpha,
            lora_targets=lora_targets,
            max_relative_position=config.max_relative_position,
            relative_position_values=config.relative_position_values,
            disentangled_attention=config.disentangled_attention,
            name=name,
        )

    if config.family == "albert":  # shared: each block layer is called at every layer of its group
        groups = [[block(f"transformer_group_{g}_inner_{j}") for j in range(config.inner_group_num)]
                  for g in range(config.num_hidden_groups)]
    else:
        groups = [[block(f"transformer_layer_{i}")] for i in range(config.num_hidden_layers)]
    encoder_outputs = []
    for i in range(config.num_hidden_layers):
        for layer in groups[config.layer_group(i)]:
            if relative is None:
                x = layer(x, padding_mask=inputs["input_mask"])
            else:
                x = layer(x, padding_mask=inputs["input_mask"], relative_embeddings=relative)
        encoder_outputs.append(x)
    if norm_first:
        x = keras.layers.LayerNormalization(epsilon=config.layer_norm_eps, name="final_layer_norm")(x)
    pooler = {"dense": dict(), "first_token": dict(dense=False), "pre_classifier": dict(activation="relu"),
              "context": dict(activation=config.pooler_hidden_act)}
    pooled = BertPooler(config.hidden_size, config.initializer_range, name="pooler", **pooler[config.pooler])(x)
    outputs = {"sequence_output": x, "pooled_output": pooled, "encoder_outputs": encoder_outputs}
    return keras.Model(inputs, outputs, name=name or f"{config.family}_encoder")


def _family_encoder(family):
    def build(config, **kwargs):
        if not isinstance(config, configs.BertConfig) or config.family != family:
            got = config.family if isinstance(config, configs.BertConfig) else type(config).__name__
            raise ValueError(f"{family}_encoder needs a {family} BertConfig (family={family!r}), got {got!r}")
        return bert_encoder(config, **kwargs)

    build.__name__ = build.__qualname__ = f"{family}_encoder"
    build.__doc__ = (f"`bert_encoder` for a `BertConfig` of family {family!r} (checked); same arguments and "
                     "outputs.")
    return build


albert_encoder = _family_encoder("albert")
electra_encoder = _family_encoder("electra")
roberta_encoder = _family_encoder("roberta")
xlm_roberta_encoder = _family_encoder("xlm_roberta")
distilbert_encoder = _family_encoder("distilbert")
deberta_v2_encoder = _family_encoder("deberta_v2")
