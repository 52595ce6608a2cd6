"""A tokenizer written into a folder and read back: the record a fine-tuned model_dir keeps.

`write_tokenizer(tokenizer, folder)` writes the tokenizer's own files under the names its family's
checkpoints use, plus `kzoo_tokenizer.json`, a small record of which class reads them and with which
options; `read_tokenizer(folder)` rebuilds the same tokenizer (same ids) from them:

| tokenizer | files | `kzoo_tokenizer.json` |
|---|---|---|
| `BertTokenizer` | vocab.txt | {"vocab_file": "vocab.txt", "lower_case": ...} (+ "class" and options) |
| `AlbertTokenizer` | spiece.model | {"class": "AlbertTokenizer", "model_file": ..., "options": {lower_case, ...}} |
| `XLMRobertaTokenizer` | sentencepiece.bpe.model | {"class": "XLMRobertaTokenizer", "model_file": ...} |
| `DebertaV2Tokenizer` | spm.model | {"class": "DebertaV2Tokenizer", "model_file": ..., "options": {lower_case, split_by_punct}} |
| `SentencePieceTokenizer` | spiece.model | {..., "options": {"special_tokens": ...}} |
| `RobertaTokenizer` | vocab.json, merges.txt | {"class": "RobertaTokenizer", "vocab_file": ..., "merges_file": ..., "options": ...} |

The record is not named `tokenizer.json`, which is the file of transformers' fast tokenizers: a
folder kzoo writes (a pretraining output is a Hugging Face folder) stays readable by
`transformers.AutoTokenizer`. kzoo's earlier record, `tokenizer.json` with {"vocab_file",
"lower_case"} (WordPiece), is still read when there is no `kzoo_tokenizer.json`.
The folder may be local or on any `tf.io.gfile` file system; every file is written atomically
(`kzoo.io`), the record last, so a reader that finds the record finds the files it names.
"""

import json

from kzoo import io as kzoo_io
from kzoo.text.bpe import RobertaTokenizer
from kzoo.text.deberta import DebertaV2Tokenizer
from kzoo.text.sentencepiece import AlbertTokenizer, SentencePieceTokenizer, XLMRobertaTokenizer
from kzoo.text.tokenizer import BertTokenizer

RECORD = "kzoo_tokenizer.json"
LEGACY_RECORD = "tokenizer.json"  # kzoo before the families: WordPiece only
_CLASSES = {cls.__name__: cls for cls in (BertTokenizer, AlbertTokenizer, XLMRobertaTokenizer,
                                          DebertaV2Tokenizer, SentencePieceTokenizer, RobertaTokenizer)}
# get_config keys that are the base layer's, or the files' contents, not options
_NOT_OPTIONS = {"name", "trainable", "dtype", "model_proto", "vocabulary", "merges"}


def _options(tokenizer):
    return {k: v for k, v in tokenizer.get_config().items() if k not in _NOT_OPTIONS}


def write_tokenizer(tokenizer, folder):
    """Writes `tokenizer`'s files and `<folder>/kzoo_tokenizer.json` (see the module docstring);
    returns the record's path. `tokenizer` is one of kzoo's in-graph tokenizers."""
    name = type(tokenizer).__name__
    if _CLASSES.get(name) is not type(tokenizer):
        raise ValueError(f"cannot save a {name}: kzoo saves {', '.join(_CLASSES)}")
    kzoo_io.makedirs(folder)
    options = _options(tokenizer)
    record = {"class": name}
    if isinstance(tokenizer, BertTokenizer):
        kzoo_io.write_text(kzoo_io.join(folder, "vocab.txt"), "".join(t + "\n" for t in tokenizer.vocabulary))
        record.update({"vocab_file": "vocab.txt", "lower_case": bool(options.pop("lower_case"))})
    elif isinstance(tokenizer, SentencePieceTokenizer):
        model_file = type(tokenizer).model_file_name  # spiece.model, sentencepiece.bpe.model, spm.model
        kzoo_io.write_bytes(kzoo_io.join(folder, model_file), tokenizer.model_proto)
        record["model_file"] = model_file
    else:
        kzoo_io.write_text(kzoo_io.join(folder, "vocab.json"), json.dumps(tokenizer.vocabulary, ensure_ascii=False))
        kzoo_io.write_text(kzoo_io.join(folder, "merges.txt"),
                           "#version: 0.2\n" + "".join(m + "\n" for m in tokenizer.merges))
        record.update({"vocab_file": "vocab.json", "merges_file": "merges.txt"})
    record["options"] = options
    return kzoo_io.write_json(kzoo_io.join(folder, RECORD), record, indent=2, ensure_ascii=False)


def _field(record, key, path):
    value = record.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{path}: field {key!r} must name a file in the folder, got {value!r}")
    return value


def _read(folder, name, path, binary=False):
    file = kzoo_io.join(folder, name)
    try:
        return kzoo_io.read_bytes(file) if binary else kzoo_io.read_text(file)
    except FileNotFoundError:
        raise ValueError(f"{path} names {name}, which {folder} lacks") from None


def record_path(folder):
    """The path of the tokenizer record in `folder`: `kzoo_tokenizer.json`, else kzoo's earlier
    `tokenizer.json` when it is one (a WordPiece record, not transformers' tokenizer file); None
    when there is neither."""
    path = kzoo_io.join(folder, RECORD)
    if kzoo_io.exists(path):
        return path
    legacy = kzoo_io.join(folder, LEGACY_RECORD)
    if kzoo_io.exists(legacy):
        try:
            record = json.loads(kzoo_io.read_text(legacy))
        except ValueError:
            return None
        if isinstance(record, dict) and "vocab_file" in record and "model" not in record:
            return legacy
    return None


def read_tokenizer(folder):
    """The tokenizer `write_tokenizer` (or kzoo's earlier WordPiece-only record) saved in `folder`."""
    path = record_path(folder)
    if path is None:
        raise ValueError(f"{kzoo_io.join(folder, RECORD)} not found: {folder} holds no tokenizer written by kzoo")
    try:
        record = json.loads(kzoo_io.read_text(path))
    except ValueError as e:
        raise ValueError(f"{path} is not JSON: {e}") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path}: expected a JSON object")
    name = record.get("class", "BertTokenizer")
    cls = _CLASSES.get(name)
    if cls is None:
        raise ValueError(f"{path}: field 'class' is {name!r}; kzoo reads {', '.join(_CLASSES)}")
    options = record.get("options", {})
    if not isinstance(options, dict):
        raise ValueError(f"{path}: field 'options' must be an object, got {options!r}")
    if cls is BertTokenizer:
        lines = _read(folder, _field(record, "vocab_file", path), path).split("\n")
        if lines and not lines[-1]:
            lines.pop()
        # as BertTokenizer reads a vocab.txt: one token a line, stripped
        return BertTokenizer(vocabulary=[line.strip() for line in lines],
                             lower_case=bool(record.get("lower_case", True)), **options)
    if issubclass(cls, SentencePieceTokenizer):
        return cls(model_proto=_read(folder, _field(record, "model_file", path), path, binary=True), **options)
    vocab_name = _field(record, "vocab_file", path)
    try:
        vocabulary = json.loads(_read(folder, vocab_name, path))
    except ValueError as e:
        raise ValueError(f"{kzoo_io.join(folder, vocab_name)} is not JSON: {e}") from None
    lines = _read(folder, _field(record, "merges_file", path), path).split("\n")
    merges = [line for line in lines[1 if lines and lines[0].startswith("#version") else 0:] if line.strip()]
    return RobertaTokenizer(vocabulary=vocabulary, merges=merges, **options)
