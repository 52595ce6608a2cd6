"""The tokenizer and packer of a checkpoint folder, chosen from the files it has.

| family | tokenizer | files | packer |
|---|---|---|---|
| bert, electra, distilbert | `BertTokenizer` (WordPiece) | vocab.txt | `BertPacker` `[CLS] a [SEP] b [SEP]` |
| albert | `AlbertTokenizer` (SentencePiece) | spiece.model (HF) or 30k-clean.model (official) | `BertPacker` |
| xlm_roberta | `XLMRobertaTokenizer` (SentencePiece) | sentencepiece.bpe.model | `RobertaPacker` `<s> a </s></s> b </s>` |
| roberta | `RobertaTokenizer` (byte-level BPE) | vocab.json + merges.txt | `RobertaPacker` |
| deberta_v2 (DeBERTa-v2 and v3) | `DebertaV2Tokenizer` (SentencePiece) | spm.model | `BertPacker` |

A folder that has only `tokenizer.json` is refused with the files it lacks: kzoo does not
convert a `tokenizers` pipeline (its normalizer, pre-tokenizer and model may differ from the
family's reference rules).

Example:
>>> tokenizer = tokenizer_from_folder("albert_base_v2/")  # doctest: +SKIP
>>> packer = packer_from_tokenizer(tokenizer, seq_length=128)  # doctest: +SKIP
>>> features = packer((tokenizer(["a question"]), tokenizer(["a passage"])))  # doctest: +SKIP
"""

import json
import os

from kzoo.text.bpe import RobertaTokenizer
from kzoo.text.deberta import DebertaV2Tokenizer
from kzoo.text.packing import BertPacker
from kzoo.text.sentencepiece import AlbertTokenizer, XLMRobertaTokenizer
from kzoo.text.tokenizer import BertTokenizer

FAMILIES = ("bert", "albert", "electra", "roberta", "xlm_roberta", "distilbert", "deberta_v2")
# config.json's model_type (and a few spellings) -> family; DeBERTa-v3 checkpoints say "deberta-v2"
_ALIASES = {"xlm-roberta": "xlm_roberta", "xlmr": "xlm_roberta", "xlm_roberta": "xlm_roberta",
            "deberta-v2": "deberta_v2", "deberta-v3": "deberta_v2", "deberta_v3": "deberta_v2"}
WORDPIECE_FAMILIES = ("bert", "electra", "distilbert")  # vocab.txt + BertTokenizer
_ALBERT_MODELS = ("spiece.model", "30k-clean.model")
_DEBERTA_MODEL = DebertaV2Tokenizer.model_file_name  # spm.model


def _family_name(family):
    name = _ALIASES.get(str(family).lower(), str(family).lower())
    if name not in FAMILIES:
        raise ValueError(f"family {family!r} is not one of {', '.join(FAMILIES)}")
    return name


def _read_json(folder, name):
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except ValueError as e:
        raise ValueError(f"{path} is not JSON: {e}") from None
    return value if isinstance(value, dict) else None


def _files(folder):
    return sorted(os.listdir(folder))


def infer_family(folder):
    """The family of a checkpoint folder: config.json's `model_type`, albert_config.json /
    bert_config.json, else the tokenizer files (vocab.txt -> "bert", spiece.model -> "albert",
    spm.model -> "deberta_v2", sentencepiece.bpe.model -> "xlm_roberta", vocab.json + merges.txt ->
    "roberta")."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise ValueError(f"{folder!r} is not a folder")
    config = _read_json(folder, "config.json")
    if config and isinstance(config.get("model_type"), str):
        model_type = config["model_type"].lower()
        try:
            return _family_name(model_type)
        except ValueError:
            raise ValueError(f"{os.path.join(folder, 'config.json')}: model_type {config['model_type']!r} is not a "
                             f"kzoo family ({', '.join(FAMILIES)})") from None
    if os.path.isfile(os.path.join(folder, "albert_config.json")):
        return "albert"
    if os.path.isfile(os.path.join(folder, "bert_config.json")):
        return "bert"
    have = set(_files(folder))
    if "vocab.txt" in have:
        return "bert"
    if have & set(_ALBERT_MODELS):
        return "albert"
    if _DEBERTA_MODEL in have:
        return "deberta_v2"
    if "sentencepiece.bpe.model" in have:
        return "xlm_roberta"
    if {"vocab.json", "merges.txt"} <= have:
        return "roberta"
    raise ValueError(f"{folder}: cannot tell the family: no config.json model_type, no albert_config.json or "
                     f"bert_config.json, and no tokenizer files (vocab.txt, spiece.model, spm.model, "
                     f"sentencepiece.bpe.model, "
                     f"vocab.json + merges.txt); it has: {', '.join(_files(folder)) or 'nothing'}")


def _missing(folder, family, needed):
    have = _files(folder)
    note = ""
    if "tokenizer.json" in have:
        note = (" (tokenizer.json alone is not enough: kzoo rebuilds the family's reference tokenizer from the "
                "original files and does not convert a `tokenizers` pipeline)")
    return ValueError(f"{folder}: the {family} tokenizer needs {needed}, which the folder lacks{note}; "
                      f"it has: {', '.join(have) or 'nothing'}")


def tokenizer_from_folder(folder, family=None, lower_case=None):
    """The in-graph tokenizer of a checkpoint folder.

    Args:
        folder: a Hugging Face or official checkpoint folder.
        family: one of `FAMILIES` (config.json's "xlm-roberta" spelling is accepted); None reads
            it with `infer_family`.
        lower_case: WordPiece, ALBERT and DeBERTa: lower-case or not; None reads `do_lower_case`
            from tokenizer_config.json, else ALBERT lower-cases (every released ALBERT is uncased),
            DeBERTa does not (no released DeBERTa-v2/v3 does) and WordPiece guesses from the folder
            name ("cased" without "uncased" -> False). RoBERTa and XLM-R never lower-case: True is
            an error. DeBERTa's `split_by_punct` comes from tokenizer_config.json (default False).

    Returns:
        `BertTokenizer`, `AlbertTokenizer`, `XLMRobertaTokenizer`, `DebertaV2Tokenizer` or
        `RobertaTokenizer`.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise ValueError(f"{folder!r} is not a folder")
    family = infer_family(folder) if family is None else _family_name(family)
    tokenizer_config = _read_json(folder, "tokenizer_config.json") or {}
    configured_lower = tokenizer_config.get("do_lower_case")
    configured_lower = configured_lower if isinstance(configured_lower, bool) else None
    if family in ("roberta", "xlm_roberta") and lower_case:
        raise ValueError(f"{folder}: the {family} tokenizer does not lower-case (lower_case={lower_case!r})")
    if family in WORDPIECE_FAMILIES:
        path = os.path.join(folder, "vocab.txt")
        if not os.path.isfile(path):
            raise _missing(folder, family, "vocab.txt (WordPiece)")
        if lower_case is None:
            lower_case = configured_lower
        if lower_case is None:
            name = os.path.basename(os.path.abspath(folder)).lower()
            lower_case = not ("cased" in name and "uncased" not in name)
        return BertTokenizer(path, lower_case=lower_case)
    if family == "albert":
        for name in _ALBERT_MODELS:
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                break
        else:
            raise _missing(folder, family, " or ".join(_ALBERT_MODELS) + " (SentencePiece)")
        if lower_case is None:
            lower_case = True if configured_lower is None else configured_lower
        keep_accents = tokenizer_config.get("keep_accents")
        return AlbertTokenizer(path, lower_case=lower_case,
                               keep_accents=keep_accents if isinstance(keep_accents, bool) else False)
    if family == "deberta_v2":
        path = os.path.join(folder, _DEBERTA_MODEL)
        if not os.path.isfile(path):
            raise _missing(folder, family, f"{_DEBERTA_MODEL} (SentencePiece)")
        if lower_case is None:
            lower_case = bool(configured_lower)
        split_by_punct = tokenizer_config.get("split_by_punct")
        return DebertaV2Tokenizer(path, lower_case=lower_case,
                                  split_by_punct=split_by_punct if isinstance(split_by_punct, bool) else False)
    if family == "xlm_roberta":
        path = os.path.join(folder, "sentencepiece.bpe.model")
        if not os.path.isfile(path):
            raise _missing(folder, family, "sentencepiece.bpe.model (SentencePiece)")
        return XLMRobertaTokenizer(path)
    vocab, merges = os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt")
    absent = [os.path.basename(p) for p in (vocab, merges) if not os.path.isfile(p)]
    if absent:
        raise _missing(folder, family, " and ".join(absent) + " (byte-level BPE)")
    add_prefix_space = tokenizer_config.get("add_prefix_space")
    return RobertaTokenizer(vocab, merges, add_prefix_space=add_prefix_space if isinstance(add_prefix_space, bool)
                            else False)


def packer_from_tokenizer(tokenizer, seq_length, dynamic_length=False):
    """The packer of a tokenizer's family (`BertPacker` or `RobertaPacker`) with its special ids;
    the same as `BertPacker.from_tokenizer(tokenizer, seq_length, dynamic_length=...)`."""
    return BertPacker.from_tokenizer(tokenizer, seq_length, dynamic_length=dynamic_length)
