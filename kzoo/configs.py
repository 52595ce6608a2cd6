"""Encoder configuration: read and write official and Hugging Face config files.

`BertConfig` holds the hyper-parameters of every BERT-style encoder kzoo
builds: BERT itself and the families next to it (`FAMILIES`): ALBERT,
ELECTRA, RoBERTa, XLM-RoBERTa, DistilBERT and DeBERTa-v2/v3. One class, one builder
(`kzoo.models.bert_encoder`): a `family` field says which encoder the config
describes, and a few structural fields carry what the families add to BERT
(`embedding_size`, `num_hidden_groups`, `inner_group_num`, `pad_token_id`,
`type_vocab_size=0`). What follows from the family alone (the pooler, the
embedding projection, the position ids) is read off properties
(`pooler`, `has_embedding_projection`, `position_padding_idx`).

Files read:

- official google-research/bert `bert_config.json` (its 11 keys);
- official google-research/albert `albert_config.json` (the 11 keys plus
  `embedding_size`, `num_hidden_groups`, `inner_group_num`; its "gelu" is
  the tanh approximation, read as "gelu_new");
- an ELECTRA config: google-research/electra ships none (its sizes come from
  `configure_pretraining.py` / `util/training_utils.get_bert_config`), so a
  `bert_config.json`-style file plus `embedding_size` is accepted (see also
  `kzoo.checkpoints.electra_map.config_from_checkpoint`);
- a Hugging Face `config.json` with `model_type` "bert", "albert",
  "electra", "roberta", "xlm-roberta", "distilbert" (DistilBERT's own key
  names: `dim`, `n_layers`, `n_heads`, `hidden_dim`, `activation`, ...) or
  "deberta-v2" (DeBERTa-v2 and v3; `DEBERTA_KEYS`, below).

DeBERTa-v2/v3 (family "deberta_v2", Hugging Face folders only: there is no
official TF1 format): disentangled attention over log-bucketed relative
positions (`kzoo.layers.DisentangledSelfAttention`), configured by the
fields `DEBERTA_KEYS` names, with HF's key names and defaults as in
DeBERTa-v3's config.json: `max_relative_positions` (-1: max_position_embeddings,
as the reference), `position_buckets`, `pos_att_type` (c2p and/or p2c;
"p2c|c2p" is read as in DebertaV2Config), `share_att_key`, `norm_rel_ebd`
("layer_norm" or "none") and `pooler_hidden_act` (the ContextPooler of
DebertaV2ForSequenceClassification). HF's `position_biased_input` is
`use_absolute_positions` (false in v3: no absolute position table), and v3's
`type_vocab_size` 0 means no token types. What kzoo does not implement is
refused naming the file and key: `relative_attention` false,
`conv_kernel_size` > 0 (deberta-v2-xlarge's and -xxlarge's convolution
after the first layer), `embedding_size` or `attention_head_size` or
`pooler_hidden_size` other than what hidden_size and the heads give.

Relative positions (Shaw, Uszkoreit and Vaswani 2018; family "bert" only):
`max_relative_position` (k > 0 turns them on), `relative_position_values`
and `use_absolute_positions` (`RELATIVE_KEYS`) are kzoo's extension of the
official `bert_config.json`: read when present, written only when they
differ from their defaults (so a plain BERT config keeps its 11 keys).
Hugging Face's `position_embedding_type` "relative_key" is a different
scheme (unclipped distances beside absolute positions): refused there, and a
relative config has no Hugging Face format.

Example:
>>> config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
...                     num_attention_heads=4, intermediate_size=64)
>>> config.head_size
8
>>> albert = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
...                     intermediate_size=64, hidden_act="gelu_new", family="albert", embedding_size=16,
...                     num_hidden_groups=2)
>>> [albert.layer_group(i) for i in range(4)], albert.pooler, albert.has_embedding_projection
([0, 0, 1, 1], 'dense', True)
"""

import dataclasses
import json
import os

from kzoo import io as kzoo_io

# Activations kzoo's encoder implements. "gelu" is the exact (erf) form, as in
# google-research/bert; the tanh approximation goes by the names HF uses.
EXACT_GELU = ("gelu",)
APPROXIMATE_GELU = ("gelu_new", "gelu_approximate", "gelu_pytorch_tanh", "gelu_fast")
ACTIVATIONS = EXACT_GELU + APPROXIMATE_GELU + ("relu", "silu", "swish", "tanh")

# The encoder families kzoo builds (the names `kzoo.checkpoints.load_pretrained` reports).
FAMILIES = ("bert", "albert", "electra", "roberta", "xlm_roberta", "distilbert", "deberta_v2")
# Families whose pretrained weights exist as official TF1 checkpoints; the others come as HF folders only.
OFFICIAL_FAMILIES = ("bert", "albert", "electra")
# Hugging Face `model_type` -> family.
HF_MODEL_TYPES = {"bert": "bert", "albert": "albert", "electra": "electra", "roberta": "roberta",
                  "xlm-roberta": "xlm_roberta", "distilbert": "distilbert", "deberta-v2": "deberta_v2"}
_HF_ARCHITECTURES = {"bert": "BertModel", "albert": "AlbertModel", "electra": "ElectraModel",
                     "roberta": "RobertaModel", "xlm_roberta": "XLMRobertaModel", "distilbert": "DistilBertModel",
                     "deberta_v2": "DebertaV2Model"}
# Families without token types when type_vocab_size is 0.
NO_TOKEN_TYPE_FAMILIES = ("distilbert", "deberta_v2")

# The keys of an official bert_config.json, all required there.
OFFICIAL_KEYS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "max_position_embeddings",
    "type_vocab_size",
    "initializer_range",
)
# The keys only ALBERT's official albert_config.json has (AlbertConfig's defaults when absent).
ALBERT_KEYS = ("embedding_size", "num_hidden_groups", "inner_group_num")
_ALBERT_DEFAULTS = {"embedding_size": 128, "num_hidden_groups": 1, "inner_group_num": 1}
# DistilBERT's config.json names -> kzoo's (all required there).
DISTILBERT_KEYS = {
    "vocab_size": "vocab_size",
    "dim": "hidden_size",
    "n_layers": "num_hidden_layers",
    "n_heads": "num_attention_heads",
    "hidden_dim": "intermediate_size",
    "activation": "hidden_act",
    "dropout": "hidden_dropout_prob",
    "attention_dropout": "attention_probs_dropout_prob",
    "max_position_embeddings": "max_position_embeddings",
    "initializer_range": "initializer_range",
}
_INT_KEYS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
    "type_vocab_size",
    "num_hidden_groups",
    "inner_group_num",
)
_PROB_KEYS = ("hidden_dropout_prob", "attention_probs_dropout_prob")
# kzoo's relative-position keys of an official bert_config.json (optional there) and their defaults.
RELATIVE_KEYS = {"max_relative_position": 0, "relative_position_values": True, "use_absolute_positions": True}
# DeBERTa-v2/v3's keys (HF config.json names) and kzoo's defaults, DeBERTa-v3's values; other families keep them.
DEBERTA_KEYS = {"max_relative_positions": -1, "position_buckets": 256, "pos_att_type": ("p2c", "c2p"),
                "share_att_key": True, "norm_rel_ebd": "layer_norm", "pooler_hidden_act": "gelu"}
# DebertaV2Config's own defaults where a config.json lacks a key (they differ from v3's values).
_DEBERTA_HF_DEFAULTS = {"max_relative_positions": -1, "position_buckets": -1, "pos_att_type": (),
                        "share_att_key": False, "norm_rel_ebd": "none", "pooler_hidden_act": "gelu"}
DEBERTA_ATTENTION_TYPES = ("c2p", "p2c")
NORM_REL_EBD = ("layer_norm", "none")
# Pooler activations Keras resolves by these names exactly as transformers' ACT2FN ("gelu": erf).
POOLER_ACTIVATIONS = ("gelu", "tanh", "relu")


@dataclasses.dataclass
class BertConfig:
    """Hyper-parameters of a BERT-style encoder, with the official key names.

    Args:
        vocab_size: number of token ids.
        hidden_size: width of every layer's output.
        num_hidden_layers: number of transformer layers (for ALBERT: layers
            applied, not distinct blocks).
        num_attention_heads: heads per attention layer; must divide hidden_size.
        intermediate_size: width of the feed-forward inner layer.
        hidden_act: feed-forward activation, one of `ACTIVATIONS`. "gelu" is the
            exact erf form; "gelu_new" (and its aliases) the tanh approximation.
        hidden_dropout_prob: dropout on embeddings and sub-layer outputs.
        attention_probs_dropout_prob: dropout on attention probabilities.
        max_position_embeddings: rows of the position table (RoBERTa's count
            the `pad_token_id + 1` rows before the first position: 514 for
            512 tokens).
        type_vocab_size: number of segment (token type) ids; 0 (DistilBERT
            and DeBERTa-v3 only) means no token-type table: `input_type_ids` are ignored.
        initializer_range: stddev of the truncated-normal initialiser.
        layer_norm_eps: layer-norm epsilon (not in official files: 1e-12 there).
        family: one of `FAMILIES`; decides the pooler, the embedding
            projection and the position ids (see the properties).
        embedding_size: width of the embedding tables (ALBERT, ELECTRA);
            None means hidden_size. ALBERT always projects the embeddings to
            hidden_size (`embedding_hidden_mapping_in`), ELECTRA when the
            widths differ (`embeddings_project`).
        num_hidden_groups: ALBERT: number of distinct (shared) block groups;
            layer i uses group `int(i / (num_hidden_layers / num_hidden_groups))`.
        inner_group_num: ALBERT: blocks per group, applied in turn at every
            layer that uses the group.
        pad_token_id: the padding id; RoBERTa and XLM-R compute position ids
            from it (`position_padding_idx`).
        max_relative_position: k of Shaw et al.'s relative-position
            attention (family "bert" only): every attention layer learns
            relative-position embeddings for the distances clipped to
            [-k, k] (see `kzoo.layers.RelativeMultiHeadAttention`); 0 (the
            default) turns them off.
        relative_position_values: with `max_relative_position` > 0, whether
            the relative embeddings are added to the values too (a^V, as in
            the paper and MEAD's `rpr_value_on`), not only to the keys (a^K).
        use_absolute_positions: False drops the absolute position table from
            the embeddings (then `max_position_embeddings` bounds nothing:
            any sequence length runs). Needs `max_relative_position` > 0, or
            family "deberta_v2" (HF's `position_biased_input`; false in v3).
        max_relative_positions: DeBERTa: the largest relative distance the
            log buckets resolve (-1 or any value < 1: max_position_embeddings,
            as the reference; `relative_max_distance`).
        position_buckets: DeBERTa: relative distances are log-bucketed into
            [-position_buckets, position_buckets) (the shared relative table
            has 2 * position_buckets rows); <= 0: no buckets, distances
            clipped to [-max_relative_positions, max_relative_positions).
        pos_att_type: DeBERTa: the position terms of the attention, a tuple
            of "c2p" (content-to-position) and/or "p2c" (position-to-content).
        share_att_key: DeBERTa: project the relative embeddings with each
            layer's query / key projections (True, v3); False gives every
            layer its own `pos_key_proj` (c2p) and `pos_query_proj` (p2c).
        norm_rel_ebd: DeBERTa: "layer_norm" (the shared relative table goes
            through `encoder.LayerNorm`, v3) or "none".
        pooler_hidden_act: DeBERTa: activation of the ContextPooler (the
            encoder's `pooled_output`: dense + activation over the first
            token), one of `POOLER_ACTIVATIONS`.
    """

    vocab_size: int
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    family: str = "bert"
    embedding_size: int = None
    num_hidden_groups: int = 1
    inner_group_num: int = 1
    pad_token_id: int = 0
    max_relative_position: int = 0
    relative_position_values: bool = True
    use_absolute_positions: bool = True
    max_relative_positions: int = -1
    position_buckets: int = 256
    pos_att_type: tuple = ("p2c", "c2p")
    share_att_key: bool = True
    norm_rel_ebd: str = "layer_norm"
    pooler_hidden_act: str = "gelu"

    def __post_init__(self):
        if isinstance(self.pos_att_type, list):
            self.pos_att_type = tuple(self.pos_att_type)
        self.validate()

    @property
    def head_size(self):
        return self.hidden_size // self.num_attention_heads

    # ------------------------------------------------------ family properties
    @property
    def embedding_width(self):
        """Width of the embedding tables (and of the embeddings' LayerNorm)."""
        return self.hidden_size if self.embedding_size is None else self.embedding_size

    @property
    def has_embedding_projection(self):
        """Whether a dense layer maps the embeddings to hidden_size: always
        for ALBERT (HF's AlbertModel always has `embedding_hidden_mapping_in`;
        the official code whenever the widths differ, which every released
        ALBERT does), for ELECTRA when the widths differ."""
        if self.family == "albert":
            return True
        return self.family == "electra" and self.embedding_width != self.hidden_size

    @property
    def pooler(self):
        """What `pooled_output` is: "dense" (tanh dense over the first token:
        BERT, ALBERT, RoBERTa, XLM-R), "first_token" (ELECTRA: the first
        token's hidden state itself, its `get_pooled_output`) or
        "pre_classifier" (DistilBERT: ReLU dense over the first token, the
        `pre_classifier` of its sequence classifier) or "context" (DeBERTa:
        the ContextPooler of its sequence classifier, a dense with
        `pooler_hidden_act` over the first token)."""
        return {"electra": "first_token", "distilbert": "pre_classifier", "deberta_v2": "context"}.get(
            self.family, "dense")

    @property
    def position_padding_idx(self):
        """RoBERTa / XLM-R: the padding id position ids are counted from
        (fairseq's `make_positions`); None for sequential positions."""
        return self.pad_token_id if self.family in ("roberta", "xlm_roberta") else None

    @property
    def relative_positions(self):
        """Whether the attention layers use Shaw et al.'s relative positions."""
        return self.max_relative_position > 0

    @property
    def relative_max_distance(self):
        """DeBERTa: `max_relative_positions` resolved (< 1: max_position_embeddings)."""
        return self.max_relative_positions if self.max_relative_positions >= 1 else self.max_position_embeddings

    @property
    def relative_span(self):
        """DeBERTa: the attention span of the relative table (`pos_ebd_size` in the reference):
        position_buckets when > 0, else the resolved max_relative_positions; the table has twice as many rows."""
        return self.position_buckets if self.position_buckets > 0 else self.relative_max_distance

    @property
    def disentangled_attention(self):
        """The `kzoo.layers.DisentangledSelfAttention` options of a DeBERTa config (None for other families):
        what `TransformerEncoderBlock(disentangled_attention=...)` takes."""
        if self.family != "deberta_v2":
            return None
        return {"position_buckets": self.position_buckets, "max_relative_positions": self.relative_max_distance,
                "pos_att_type": list(self.pos_att_type), "share_att_key": self.share_att_key}

    @property
    def max_sequence_length(self):
        """The longest input the position table covers; None without an
        absolute position table (`use_absolute_positions=False`): no limit."""
        if not self.use_absolute_positions:
            return None
        if self.position_padding_idx is None:
            return self.max_position_embeddings
        return self.max_position_embeddings - self.position_padding_idx - 1

    def layer_group(self, layer_index):
        """The shared block group layer `layer_index` uses (ALBERT's rule;
        the layer itself for other families)."""
        if self.family != "albert":
            return layer_index
        return int(layer_index / (self.num_hidden_layers / self.num_hidden_groups))

    # ------------------------------------------------------------- validation
    def validate(self, source="BertConfig"):
        """Raises ValueError naming `source` and the offending key."""

        def fail(key, why):
            raise ValueError(f"{source}: invalid `{key}`: {why}")

        if self.family not in FAMILIES:
            fail("family", f"expected one of {list(FAMILIES)}, got {self.family!r}")
        for key in _INT_KEYS:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int):
                fail(key, f"expected a positive integer, got {value!r}")
            if value <= 0 and not (key == "type_vocab_size" and self.family in NO_TOKEN_TYPE_FAMILIES
                                   and value == 0):
                fail(key, f"must be positive, got {value}")
        for key in _PROB_KEYS:
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                fail(key, f"expected a probability in [0, 1), got {value!r}")
        for key in ("initializer_range", "layer_norm_eps"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or value <= 0:
                fail(key, f"must be a positive number, got {value!r}")
        if self.hidden_act not in ACTIVATIONS:
            fail("hidden_act", f"unknown activation {self.hidden_act!r}; expected one of {list(ACTIVATIONS)}")
        if self.hidden_size % self.num_attention_heads:
            fail(
                "num_attention_heads",
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                f"{self.num_attention_heads}",
            )
        if self.embedding_size is not None:
            if isinstance(self.embedding_size, bool) or not isinstance(self.embedding_size, int) or (
                    self.embedding_size <= 0):
                fail("embedding_size", f"expected a positive integer or None, got {self.embedding_size!r}")
            if self.family not in ("albert", "electra") and self.embedding_size != self.hidden_size:
                fail("embedding_size", f"only ALBERT and ELECTRA have factorised embeddings; {self.family} needs "
                                       f"None or hidden_size {self.hidden_size}, got {self.embedding_size}")
        if self.family != "albert":
            for key in ("num_hidden_groups", "inner_group_num"):
                if getattr(self, key) != 1:
                    fail(key, f"only ALBERT shares blocks; {self.family} needs 1, got {getattr(self, key)}")
        elif self.num_hidden_groups > self.num_hidden_layers:
            fail("num_hidden_groups", f"{self.num_hidden_groups} groups for {self.num_hidden_layers} layers: some "
                                      "would never be used")
        if self.family == "distilbert" and self.type_vocab_size != 0:
            fail("type_vocab_size", f"DistilBERT has no token types: expected 0, got {self.type_vocab_size}")
        if isinstance(self.pad_token_id, bool) or not isinstance(self.pad_token_id, int) or self.pad_token_id < 0:
            fail("pad_token_id", f"expected a non-negative integer, got {self.pad_token_id!r}")
        k = self.max_relative_position
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            fail("max_relative_position", f"expected a non-negative integer (0: no relative positions), got {k!r}")
        for key in ("relative_position_values", "use_absolute_positions"):
            if not isinstance(getattr(self, key), bool):
                fail(key, f"expected true or false, got {getattr(self, key)!r}")
        if self.family != "bert":
            for key, default in RELATIVE_KEYS.items():
                if key == "use_absolute_positions" and self.family == "deberta_v2":
                    continue  # DeBERTa's position_biased_input
                if getattr(self, key) != default:
                    fail(key, f"relative positions are implemented for family 'bert' only; {self.family} needs "
                              f"{json.dumps(default)}, got {json.dumps(getattr(self, key))}")
        self._validate_deberta(fail)
        if not self.use_absolute_positions and not k and self.family != "deberta_v2":
            fail("use_absolute_positions", "false leaves the encoder without any position information: set "
                                           "max_relative_position > 0 too")
        if self.position_padding_idx is not None and self.max_sequence_length < 1:
            fail("max_position_embeddings", f"{self.max_position_embeddings} rows leave no position after the "
                                            f"pad_token_id + 1 = {self.pad_token_id + 1} offset")

    def _validate_deberta(self, fail):
        if self.family != "deberta_v2":
            for key, default in DEBERTA_KEYS.items():
                if getattr(self, key) != default:
                    fail(key, f"a DeBERTa key (family 'deberta_v2' only); {self.family} needs {default!r}, "
                              f"got {getattr(self, key)!r}")
            return
        for key in ("max_relative_positions", "position_buckets"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int):
                fail(key, f"expected an integer, got {value!r}")
        types = self.pos_att_type
        if not isinstance(types, tuple) or any(t not in DEBERTA_ATTENTION_TYPES for t in types) or (
                len(set(types)) != len(types)):
            fail("pos_att_type", f"kzoo implements the attention types {list(DEBERTA_ATTENTION_TYPES)} (each at "
                                 f"most once), got {types!r}")
        for key in ("share_att_key", "use_absolute_positions"):
            if not isinstance(getattr(self, key), bool):
                fail(key, f"expected true or false, got {getattr(self, key)!r}")
        if self.norm_rel_ebd not in NORM_REL_EBD:
            fail("norm_rel_ebd", f"expected one of {list(NORM_REL_EBD)}, got {self.norm_rel_ebd!r}")
        if self.pooler_hidden_act not in POOLER_ACTIVATIONS:
            fail("pooler_hidden_act", f"expected one of {list(POOLER_ACTIVATIONS)}, got {self.pooler_hidden_act!r}")
        if self.embedding_size is not None and self.embedding_size != self.hidden_size:
            fail("embedding_size", f"DeBERTa's embed_proj (embedding_size != hidden_size) is not implemented; "
                                   f"expected {self.hidden_size}, got {self.embedding_size}")
        mid = self.position_buckets // 2
        if self.position_buckets > 0 and (mid < 1 or self.relative_max_distance - 1 <= mid):
            fail("position_buckets", f"{self.position_buckets} buckets need max_relative_positions (resolved: "
                                     f"{self.relative_max_distance}) - 1 > position_buckets // 2 = {mid}, and "
                                     "position_buckets >= 2")

    # ------------------------------------------------------------------ dicts
    @classmethod
    def from_dict(cls, data, source="<dict>", family=None):
        """Builds a config from an official or a Hugging Face config dict.

        A dict with `model_type` (or `architectures`) is read as Hugging Face:
        its `model_type` gives the family (see `HF_MODEL_TYPES`), its extra
        keys are ignored, `layer_norm_eps` is kept, and a
        `position_embedding_type` other than "absolute" is refused. It must
        hold the 11 official keys (DistilBERT: its own 10, `DISTILBERT_KEYS`).
        Otherwise it is an official file, all 11 official keys required: an
        `albert_config.json` when it has `num_hidden_groups` or
        `inner_group_num`, an ELECTRA config when it has `embedding_size`, a
        `bert_config.json` else.

        Args:
            data: the parsed JSON object.
            source: the file name errors name.
            family: the family the caller knows the file describes (e.g.
                "electra" for a plain `bert_config.json` beside an ELECTRA
                checkpoint); a file that says otherwise is refused.
        """
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a JSON object, got {type(data).__name__}")
        if family is not None and family not in FAMILIES:
            raise ValueError(f"family must be one of {list(FAMILIES)}, got {family!r}")
        is_hf = "model_type" in data or "architectures" in data
        if is_hf:
            kwargs = cls._hf_kwargs(data, source, family)
        else:
            kwargs = cls._official_kwargs(data, source, family)
        # Bypass __init__ so that validation errors name the file, not the class.
        config = object.__new__(cls)
        config.__dict__.update({f.name: f.default for f in dataclasses.fields(cls) if f.name != "vocab_size"})
        config.__dict__.update(kwargs)
        config.validate(source)
        return config

    @staticmethod
    def _required(data, keys, source, what):
        missing = [key for key in keys if key not in data]
        if missing:
            raise ValueError(f"{source}: missing key(s) {missing}{what}")

    @classmethod
    def _hf_kwargs(cls, data, source, family):
        model_type = data.get("model_type", "bert")
        if model_type not in HF_MODEL_TYPES:
            raise ValueError(f"{source}: invalid `model_type`: expected one of {list(HF_MODEL_TYPES)}, "
                             f"got {model_type!r}")
        found = HF_MODEL_TYPES[model_type]
        if family is not None and found != family:
            raise ValueError(f"{source}: invalid `model_type`: expected a config of family {family!r}, "
                             f"got {model_type!r}")
        if found == "distilbert":
            cls._required(data, DISTILBERT_KEYS, source, " (DistilBERT's config.json names)")
            kwargs = {ours: data[theirs] for theirs, ours in DISTILBERT_KEYS.items()}
            kwargs.update(family="distilbert", type_vocab_size=0, layer_norm_eps=1e-12,  # fixed in DistilBERT
                          pad_token_id=data.get("pad_token_id", 0) or 0)
            return kwargs
        if found == "deberta_v2":
            return cls._deberta_kwargs(data, source)
        position_type = data.get("position_embedding_type", "absolute")
        if position_type != "absolute":
            raise ValueError(
                f"{source}: invalid `position_embedding_type`: only 'absolute' is supported, got {position_type!r}"
            )
        cls._required(data, OFFICIAL_KEYS, source, "")
        kwargs = {key: data[key] for key in OFFICIAL_KEYS}
        kwargs["family"] = found
        kwargs["layer_norm_eps"] = data.get("layer_norm_eps", 1e-12)
        if found in ("roberta", "xlm_roberta"):
            kwargs["pad_token_id"] = data.get("pad_token_id", 1)
        elif data.get("pad_token_id") is not None:
            kwargs["pad_token_id"] = data["pad_token_id"]
        if found == "albert":
            kwargs.update({key: data.get(key, default) for key, default in _ALBERT_DEFAULTS.items()})
        if found == "electra":
            kwargs["embedding_size"] = data.get("embedding_size", 128)  # ElectraConfig's default
        return kwargs

    @classmethod
    def _deberta_kwargs(cls, data, source):
        """A `model_type` "deberta-v2" config.json (DeBERTa-v2 and v3): DebertaV2Config's defaults for the keys
        it lacks; refuses (file + key) what kzoo does not implement."""

        def refuse(key, why):
            raise ValueError(f"{source}: invalid `{key}`: {why}")

        cls._required(data, OFFICIAL_KEYS, source, " (DeBERTa-v2's config.json names)")
        kwargs = {key: data[key] for key in OFFICIAL_KEYS}
        kwargs.update(family="deberta_v2", layer_norm_eps=data.get("layer_norm_eps", 1e-7),
                      pad_token_id=data.get("pad_token_id", 0) or 0)
        if data.get("relative_attention", False) is not True:
            refuse("relative_attention", "kzoo's deberta_v2 encoder is the relative-attention DeBERTa (every "
                                         f"released v2 and v3 model): expected true, got "
                                         f"{json.dumps(data.get('relative_attention', False))} (absent means false)")
        if (data.get("conv_kernel_size") or 0) > 0:
            refuse("conv_kernel_size", f"the convolution layer (deberta-v2-xlarge / -xxlarge) is not implemented; "
                                       f"expected 0 or absent, got {data['conv_kernel_size']!r}")
        head_size = kwargs["hidden_size"] // kwargs["num_attention_heads"] if kwargs["num_attention_heads"] else None
        for key, want in (("embedding_size", kwargs["hidden_size"]), ("attention_head_size", head_size),
                          ("pooler_hidden_size", kwargs["hidden_size"])):
            if data.get(key) is not None and data[key] != want:
                refuse(key, f"only {want} (what hidden_size and num_attention_heads give) is implemented, "
                            f"got {data[key]!r}")
        kwargs.update({key: data.get(key, default) for key, default in _DEBERTA_HF_DEFAULTS.items()})
        types = kwargs["pos_att_type"]
        if types is None:
            types = ()
        if isinstance(types, str):  # "p2c|c2p", as DebertaV2Config reads it
            types = [t.strip() for t in types.lower().split("|")]
        kwargs["pos_att_type"] = tuple(types) if isinstance(types, (list, tuple)) else types
        norm = kwargs["norm_rel_ebd"]
        parts = [p.strip() for p in norm.lower().split("|")] if isinstance(norm, str) else [norm]
        if any(p not in NORM_REL_EBD for p in parts):  # the reference reads "a|b" and tests "layer_norm" in it
            refuse("norm_rel_ebd", f"expected one of {list(NORM_REL_EBD)} ('|'-joined), got {norm!r}")
        kwargs["norm_rel_ebd"] = "layer_norm" if "layer_norm" in parts else "none"
        kwargs["use_absolute_positions"] = data.get("position_biased_input", True)
        return kwargs

    @classmethod
    def _official_kwargs(cls, data, source, family):
        found = "bert"
        if any(key in data for key in ("num_hidden_groups", "inner_group_num")):
            found = "albert"
        elif "embedding_size" in data:
            found = "electra"
        if family is not None and family != found:
            if family not in OFFICIAL_FAMILIES:
                raise ValueError(f"{source}: {family} has no official config format: expected a Hugging Face "
                                 "config.json (with model_type)")
            if found != "bert":  # a plain bert_config.json may describe ELECTRA (or ALBERT)
                raise ValueError(f"{source}: expected a config of family {family!r}, but its keys make it {found!r}")
            found = family
        cls._required(data, OFFICIAL_KEYS, source, "")
        kwargs = {key: data[key] for key in OFFICIAL_KEYS}
        kwargs["family"] = found
        if "layer_norm_eps" in data:
            kwargs["layer_norm_eps"] = data["layer_norm_eps"]
        kwargs.update({key: data[key] for key in RELATIVE_KEYS if key in data})
        if found == "albert":
            kwargs.update({key: data.get(key, default) for key, default in _ALBERT_DEFAULTS.items()})
            if kwargs["hidden_act"] == "gelu":  # google-research/albert's gelu is the tanh approximation
                kwargs["hidden_act"] = "gelu_new"
        if found == "electra":
            kwargs["embedding_size"] = data.get("embedding_size")  # None: hidden_size, as ELECTRA's code
        return kwargs

    def to_dict(self, format="official"):
        """Returns the official dict (bert_config.json's 11 keys; ALBERT and
        ELECTRA add theirs, relative positions `RELATIVE_KEYS`), or a Hugging
        Face `config.json` dict.

        RoBERTa, XLM-R and DistilBERT have no official format (only "hf").
        """
        if format not in ("official", "hf"):
            raise ValueError(f"format must be 'official' or 'hf', got {format!r}")
        family = self.family
        if format == "official":
            if family not in OFFICIAL_FAMILIES:
                raise ValueError(f"{family} has no official config format; write it with format='hf'")
            data = {key: getattr(self, key) for key in OFFICIAL_KEYS}
            if family == "albert":
                if self.hidden_act == "gelu":
                    raise ValueError("ALBERT's official config has only the tanh GELU (written 'gelu'): hidden_act "
                                     "'gelu' (exact) cannot be written; use format='hf'")
                if self.hidden_act in APPROXIMATE_GELU:
                    data["hidden_act"] = "gelu"
                data.update({key: getattr(self, key) for key in ALBERT_KEYS}, embedding_size=self.embedding_width)
            elif family == "electra" and self.embedding_size is not None:
                data["embedding_size"] = self.embedding_size
            if any(getattr(self, key) != default for key, default in RELATIVE_KEYS.items()):
                data.update({key: getattr(self, key) for key in RELATIVE_KEYS})
            return data
        if self.relative_positions or (not self.use_absolute_positions and family != "deberta_v2"):
            raise ValueError("Hugging Face's BertModel has no clipped (Shaw et al.) relative positions: a config with "
                             "max_relative_position > 0 has only the official format (format='official')")
        if family == "deberta_v2":
            data = {key: getattr(self, key) for key in OFFICIAL_KEYS}
            data.update({key: getattr(self, key) for key in DEBERTA_KEYS}, pos_att_type=list(self.pos_att_type))
            data.update(model_type="deberta-v2", architectures=[_HF_ARCHITECTURES[family]],
                        layer_norm_eps=self.layer_norm_eps, pad_token_id=self.pad_token_id, relative_attention=True,
                        position_biased_input=self.use_absolute_positions, pooler_hidden_size=self.hidden_size)
            return data
        if family == "distilbert":
            data = {theirs: getattr(self, ours) for theirs, ours in DISTILBERT_KEYS.items()}
            data.update(model_type="distilbert", architectures=["DistilBertModel"], pad_token_id=self.pad_token_id,
                        sinusoidal_pos_embds=False)
            return data
        data = {key: getattr(self, key) for key in OFFICIAL_KEYS}
        model_type = {v: k for k, v in HF_MODEL_TYPES.items()}[family]
        data.update(
            model_type=model_type,
            architectures=[_HF_ARCHITECTURES[family]],
            layer_norm_eps=self.layer_norm_eps,
            pad_token_id=self.pad_token_id,
            position_embedding_type="absolute",
        )
        if family == "albert":
            data.update({key: getattr(self, key) for key in ALBERT_KEYS}, embedding_size=self.embedding_width)
        if family == "electra":
            data["embedding_size"] = self.embedding_width
        return data

    # ------------------------------------------------------------------ files
    @classmethod
    def from_json_file(cls, path, family=None):
        """Reads an official `bert_config.json` / `albert_config.json` /
        ELECTRA config or a HF `config.json` (see `from_dict`)."""
        path = os.fspath(path)
        try:
            text = kzoo_io.read_text(path)
        except OSError as e:
            raise ValueError(f"{path}: cannot read BERT config: {e.strerror or e}") from e
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: cannot read BERT config: not UTF-8 text ({e.reason})") from e
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}): {e.msg}") from e
        return cls.from_dict(data, source=path, family=family)

    def to_json_file(self, path, format="official"):
        """Writes the config atomically (`kzoo.io.write_text`: a temporary file, then a rename onto `path`), on
        any `tf.io.gfile` file system."""
        text = json.dumps(self.to_dict(format), indent=2, sort_keys=True) + "\n"
        return kzoo_io.write_text(os.fspath(path), text)
