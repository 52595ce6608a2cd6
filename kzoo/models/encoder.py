"""`bert_encoder`: a BERT-style encoder as a functional `keras.Model`."""

import keras

from kzoo import configs
from kzoo.layers import BertEmbeddings, BertPooler, TransformerEncoderBlock

INPUT_NAMES = ("input_word_ids", "input_mask", "input_type_ids")


def encoder_inputs(seq_length=None):
    """The TF Hub BERT input dict: three int32 [batch, seq_length] tensors."""
    return {name: keras.Input(shape=(seq_length,), dtype="int32", name=name) for name in INPUT_NAMES}


def bert_encoder(
    config,
    norm_first=False,
    position_embedding="learned",
    seq_length=None,
    dropout=None,
    attention_dropout=None,
    name="bert_encoder",
    adapter_type=None,
    adapter_size=64,
    adapter_reduction_factor=None,
    adapter_activation="gelu",
    lora_rank=0,
    lora_alpha=None,
    lora_targets=("query", "value"),
):
    """Builds a BERT encoder from a `BertConfig`.

    Inputs are the TF Hub BERT dict of int32 [batch, seq] tensors
    (`input_word_ids`, `input_mask`, `input_type_ids`). Outputs are a dict:
    `sequence_output` [batch, seq, hidden], `pooled_output` [batch, hidden]
    (tanh dense over the first token) and `encoder_outputs`, one
    [batch, seq, hidden] tensor per block (the raw block outputs; with
    `norm_first=True` `sequence_output` is the last of them after the final
    LayerNorm).

    Args:
        config: a `kzoo.configs.BertConfig`.
        norm_first: pre-LN blocks and a final LayerNorm when True; post-LN
            (original BERT) when False.
        position_embedding: "learned" (BERT's table) or "sinusoidal".
        seq_length: static sequence length of the inputs, or None (dynamic).
        dropout, attention_dropout: override the config's dropout rates.
        name: model name.
        adapter_type: None, "houlsby" (adapters after the attention and the
            feed-forward sub-layers of every block) or "pfeiffer" (after the
            feed-forward sub-layer only); see `TransformerEncoderBlock`.
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
    >>> out["pooled_output"].shape
    (2, 16)
    """
    if not isinstance(config, configs.BertConfig):
        raise TypeError(f"config must be a kzoo.configs.BertConfig, got {type(config).__name__}")
    if position_embedding == "learned" and seq_length and seq_length > config.max_position_embeddings:
        raise ValueError(
            f"seq_length {seq_length} exceeds max_position_embeddings {config.max_position_embeddings}"
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

    inputs = encoder_inputs(seq_length)
    x = BertEmbeddings(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        max_position_embeddings=config.max_position_embeddings,
        type_vocab_size=config.type_vocab_size,
        position_embedding=position_embedding,
        initializer_range=config.initializer_range,
        layer_norm_eps=config.layer_norm_eps,
        dropout=dropout,
        name="embeddings",
    )(inputs["input_word_ids"], inputs["input_type_ids"])

    encoder_outputs = []
    for i in range(config.num_hidden_layers):
        x = TransformerEncoderBlock(
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
            name=f"transformer_layer_{i}",
        )(x, padding_mask=inputs["input_mask"])
        encoder_outputs.append(x)
    if norm_first:
        x = keras.layers.LayerNormalization(epsilon=config.layer_norm_eps, name="final_layer_norm")(x)
    pooled = BertPooler(config.hidden_size, config.initializer_range, name="pooler")(x)
    outputs = {"sequence_output": x, "pooled_output": pooled, "encoder_outputs": encoder_outputs}
    return keras.Model(inputs, outputs, name=name)
