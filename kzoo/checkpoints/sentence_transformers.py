"""What a sentence-transformers folder says about its embedding: pooling, normalisation, length.

A sentence-transformers model folder is a Hugging Face folder (the transformer's weights,
config and tokenizer files) plus:

- `modules.json`: the pipeline, a list of modules in order, each with `type` (e.g.
  `sentence_transformers.models.Transformer`, `...Pooling`, `...Normalize`) and `path`
  (the module's sub-folder, "" for the transformer at the top);
- `<pooling path>/config.json`: `pooling_mode_cls_token`, `pooling_mode_mean_tokens`,
  `pooling_mode_max_tokens`, and the modes kzoo does not implement
  (`pooling_mode_mean_sqrt_len_tokens`, `pooling_mode_weightedmean_tokens`,
  `pooling_mode_lasttoken`);
- `sentence_bert_config.json`: `max_seq_length`, the truncation length in tokens counting the
  special tokens, and `do_lower_case` (lower-case the text before the tokenizer).

`read_sentence_transformers(folder)` turns these into `SentenceSettings`, refusing (with the
file and field named) what kzoo cannot reproduce exactly: several pooling modes at once
(sentence-transformers concatenates them), the modes above, `do_lower_case` true, and modules
other than Transformer, Pooling and Normalize (a `Dense` projection, e.g.).
"""

import dataclasses
import json
import os

from kzoo import io as kzoo_io

TRANSFORMER, POOLING, NORMALIZE = (f"sentence_transformers.models.{n}" for n in ("Transformer", "Pooling",
                                                                                  "Normalize"))
_MODES = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean", "pooling_mode_max_tokens": "max"}
_UNSUPPORTED_MODES = ("pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens",
                      "pooling_mode_lasttoken")


@dataclasses.dataclass(frozen=True)
class SentenceSettings:
    """How a checkpoint's sentence embedding was trained.

    Attributes:
        pooling: "mean", "cls" or "max" (`kzoo.layers.SentencePooling`).
        normalize: whether the pipeline ends in an L2 normalisation.
        max_seq_length: truncation length in tokens, specials included (None: not given).
        folder: where they were read from.
    """

    pooling: str
    normalize: bool
    max_seq_length: int = None
    folder: str = None


def _read(path, what):
    try:
        return json.loads(kzoo_io.read_text(path))
    except FileNotFoundError:
        raise ValueError(f"{path}: not found ({what})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def read_sentence_transformers(folder):
    """`SentenceSettings` of a sentence-transformers folder, or None when `folder` has no
    `modules.json` (a plain Hugging Face or official checkpoint). Raises ValueError naming
    the file and field of anything kzoo cannot reproduce exactly."""
    folder = os.fspath(folder)
    modules_file = kzoo_io.join(folder, "modules.json")
    if not kzoo_io.exists(modules_file):
        return None
    modules = _read(modules_file, "the sentence-transformers pipeline")
    if not isinstance(modules, list) or not all(isinstance(m, dict) and "type" in m for m in modules):
        raise ValueError(f"{modules_file}: expected a list of modules, each with a 'type'")
    types = [m["type"] for m in modules]
    unknown = [t for t in types if t not in (TRANSFORMER, POOLING, NORMALIZE)]
    if unknown:
        raise ValueError(f"{modules_file}: module {unknown[0]!r} is not supported (kzoo reproduces Transformer, "
                         "Pooling and Normalize pipelines)")
    if types[:2] != [TRANSFORMER, POOLING] or types[2:] not in ([], [NORMALIZE]):
        raise ValueError(f"{modules_file}: expected Transformer, Pooling and an optional Normalize, in that "
                         f"order; got {[t.rsplit('.', 1)[-1] for t in types]}")
    pooling_file = kzoo_io.join(folder, *[p for p in (modules[1].get("path"), "config.json") if p])
    pooling_config = _read(pooling_file, "the Pooling module's configuration")
    for key in _UNSUPPORTED_MODES:
        if pooling_config.get(key):
            raise ValueError(f"{pooling_file}: {key} is true; kzoo pools with cls, mean or max only")
    chosen = [mode for key, mode in _MODES.items() if pooling_config.get(key)]
    if len(chosen) != 1:
        raise ValueError(f"{pooling_file}: exactly one of {sorted(_MODES)} must be true, got "
                         f"{[k for k in _MODES if pooling_config.get(k)] or 'none'}"
                         + (" (sentence-transformers concatenates several; kzoo does not)" if chosen else ""))
    settings_file = kzoo_io.join(folder, "sentence_bert_config.json")
    max_seq_length, lower = None, False
    if kzoo_io.exists(settings_file):
        settings = _read(settings_file, "the Transformer module's settings")
        max_seq_length = settings.get("max_seq_length")
        if max_seq_length is not None and (isinstance(max_seq_length, bool) or not isinstance(max_seq_length, int)
                                           or max_seq_length < 3):
            raise ValueError(f"{settings_file}: max_seq_length must be an integer >= 3, got {max_seq_length!r}")
        lower = settings.get("do_lower_case", False)
        if lower not in (True, False):
            raise ValueError(f"{settings_file}: do_lower_case must be true or false, got {lower!r}")
        if lower:
            raise ValueError(f"{settings_file}: do_lower_case is true (sentence-transformers lower-cases the text "
                             "before its tokenizer); kzoo's exports do not, so the embeddings would differ")
    return SentenceSettings(pooling=chosen[0], normalize=types[2:] == [NORMALIZE], max_seq_length=max_seq_length,
                            folder=folder)
