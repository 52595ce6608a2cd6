"""BERT model configuration: read and write official and Hugging Face config files.

`BertConfig` holds the hyper-parameters of a BERT-style encoder. It reads the
official google-research/bert `bert_config.json` (its 11 keys) and the
Hugging Face `config.json` of a BERT model, validates them, and writes either
format back.

Example:
>>> config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
...                     num_attention_heads=4, intermediate_size=64)
>>> config.head_size
8
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
_INT_KEYS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
    "type_vocab_size",
)
_PROB_KEYS = ("hidden_dropout_prob", "attention_probs_dropout_prob")


@dataclasses.dataclass
class BertConfig:
    """Hyper-parameters of a BERT encoder, with the official key names.

    Args:
        vocab_size: number of WordPiece ids.
        hidden_size: width of every layer's output.
        num_hidden_layers: number of transformer blocks.
        num_attention_heads: heads per attention layer; must divide hidden_size.
        intermediate_size: width of the feed-forward inner layer.
        hidden_act: feed-forward activation, one of `ACTIVATIONS`. "gelu" is the
            exact erf form; "gelu_new" (and its aliases) the tanh approximation.
        hidden_dropout_prob: dropout on embeddings and sub-layer outputs.
        attention_probs_dropout_prob: dropout on attention probabilities.
        max_position_embeddings: longest sequence the position table covers.
        type_vocab_size: number of segment (token type) ids.
        initializer_range: stddev of the truncated-normal initialiser.
        layer_norm_eps: layer-norm epsilon (not in official files: 1e-12 there).
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

    def __post_init__(self):
        self.validate()

    @property
    def head_size(self):
        return self.hidden_size // self.num_attention_heads

    def validate(self, source="BertConfig"):
        """Raises ValueError naming `source` and the offending key."""

        def fail(key, why):
            raise ValueError(f"{source}: invalid `{key}`: {why}")

        for key in _INT_KEYS:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int):
                fail(key, f"expected a positive integer, got {value!r}")
            if value <= 0:
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

    # ------------------------------------------------------------------ dicts
    @classmethod
    def from_dict(cls, data, source="<dict>"):
        """Builds a config from an official or a Hugging Face config dict.

        A dict with `model_type` (or `architectures`) is read as Hugging Face:
        its extra keys are ignored, `layer_norm_eps` is kept, and a
        `position_embedding_type` other than "absolute" is refused. Otherwise
        all 11 official keys are required.
        """
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a JSON object, got {type(data).__name__}")
        is_hf = "model_type" in data or "architectures" in data
        if is_hf:
            model_type = data.get("model_type", "bert")
            if model_type != "bert":
                raise ValueError(f"{source}: invalid `model_type`: expected 'bert', got {model_type!r}")
            position_type = data.get("position_embedding_type", "absolute")
            if position_type != "absolute":
                raise ValueError(
                    f"{source}: invalid `position_embedding_type`: only 'absolute' is supported, "
                    f"got {position_type!r}"
                )
        missing = [key for key in OFFICIAL_KEYS if key not in data]
        if missing:
            raise ValueError(f"{source}: missing key(s) {missing}")
        kwargs = {key: data[key] for key in OFFICIAL_KEYS}
        if "layer_norm_eps" in data:
            kwargs["layer_norm_eps"] = data["layer_norm_eps"]
        kwargs.setdefault("layer_norm_eps", 1e-12)
        # Bypass __init__ so that validation errors name the file, not the class.
        config = object.__new__(cls)
        config.__dict__.update(kwargs)
        config.validate(source)
        return config

    def to_dict(self, format="official"):
        """Returns the official 11-key dict, or a Hugging Face `config.json` dict."""
        data = {key: getattr(self, key) for key in OFFICIAL_KEYS}
        if format == "official":
            return data
        if format == "hf":
            data.update(
                model_type="bert",
                architectures=["BertModel"],
                layer_norm_eps=self.layer_norm_eps,
                pad_token_id=0,
                position_embedding_type="absolute",
            )
            return data
        raise ValueError(f"format must be 'official' or 'hf', got {format!r}")

    # ------------------------------------------------------------------ files
    @classmethod
    def from_json_file(cls, path):
        """Reads an official `bert_config.json` or a HF `config.json`."""
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
        return cls.from_dict(data, source=path)

    def to_json_file(self, path, format="official"):
        """Writes the config atomically (`kzoo.io.write_text`: a temporary file, then a rename onto `path`), on
        any `tf.io.gfile` file system."""
        text = json.dumps(self.to_dict(format), indent=2, sort_keys=True) + "\n"
        return kzoo_io.write_text(os.fspath(path), text)
