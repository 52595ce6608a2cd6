"""In-graph SentencePiece tokenizers: ALBERT (with its own preprocessing) and XLM-RoBERTa (fairseq ids).

SentencePiece itself runs as a tf-text op that stock TF Serving links, on the bytes of the model
file: `FastSentencepieceTokenizer` (a constant model, no resource) for unigram models, which gives
the ids of the sentencepiece library (0.2.x) and of transformers' `tokenizers` Unigram, also where
two segmentations score the same ("555" -> "5" "55"); `SentencepieceTokenizer` (the library tf-text
bundles, a resource) for other model types (BPE), because the fast op would treat them as unigram.
The bundled library breaks such ties the other way ("55" "5": 3,611 of 20,000 strings of repeated
digits and letters differ on the test ALBERT model), so it is not used for unigram models.
Around it they rebuild, as TensorFlow ops, what the reference tokenizers do in Python:

`AlbertTokenizer` equals the slow, SentencePiece-based ALBERT tokenizer (transformers 4's
`AlbertTokenizer`, which is google-research/albert's `tokenization.py` plus quote normalisation):
1. invalid UTF-8 becomes U+FFFD (`tf.strings.unicode_transcode(errors="replace")`, as Python's
   `bytes.decode("utf-8", "replace")` does);
2. `preprocess_text`: `" ".join(text.strip().split())` (every `str.isspace` character),
   `` `` `` and `''` -> `"` (`normalize_quotes`; google-research/albert itself does not do this),
   unless `keep_accents`: NFKD (`tf_text.normalize_utf8`) and deletion of every character with a
   non-zero canonical combining class (`unicodedata.combining`), then Python's `str.lower()` when
   `lower_case` (ICU's lower case as in `BertTokenizer`, with the same per-code-point patch for
   letters TF's older Unicode data leaves upper-case);
3. `encode_pieces`: SentencePiece pieces, and every piece that ends in a digit (`str.isdigit`)
   and a comma is re-encoded without its "▁" and the comma, the re-encoding's leading "▁" dropped
   when the piece had none, and the comma appended (`split_digit_comma`);
4. `PieceToId` (an exact constant lookup of the piece string: a piece not in the model is `<unk>`).
The RE2 character classes of step 2 come from Python's `unicodedata` (the tables the reference
consults). Residual: NFKD runs in tf-text's ICU, whose Unicode data is newer than Python 3.11's,
so code points Python calls unassigned may decompose (TF 2.21: U+1CCD6..U+1CCEF -> A..Z).
transformers 5 loads a different ALBERT tokenizer (`tokenizers`' Unigram behind a normalizer
chain; measured in `tests/text/test_sentencepiece.py`): it has no digit-comma rule, lower-cases
"Σ" to "σ" everywhere (Python: "ς" at the end of a word), does not split on U+000B and
U+001C..U+001F, and picks its own among equal-score segmentations.

`XLMRobertaTokenizer` equals fairseq's and transformers 4's XLM-R tokenizer: the SentencePiece
ids plus one (fairseq's dictionary puts `<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3 first),
SentencePiece's `<unk>` -> 3, `<mask>` after the last piece; no lower-casing. transformers 5's
(`tokenizers`) splits at U+0085 where SentencePiece keeps it, and breaks ties its own way.

DeBERTa-v2/v3's tokenizer (`spm.model`, `[MASK]` after the pieces) is `kzoo.text.deberta.DebertaV2Tokenizer`,
built on `SentencePieceTokenizer`.

Neither recognises special-token strings (`[MASK]`, `<mask>`) inside the text: like
`BertTokenizer` they tokenize text, and a caller that wants a mask splits the text around it.

Example:
>>> tokenizer = AlbertTokenizer("spiece.model")  # doctest: +SKIP
>>> tokenizer(["Hello, world!"]).to_list()  # doctest: +SKIP
[[10975, 15, 126, 187]]
"""

import base64
import functools
import os
import unicodedata

import keras
import tensorflow as tf
import tensorflow_text as tf_text

from kzoo.text.bpe import _StringTable
from kzoo.text.tokenizer import StringTokenizer, _lowercase_gaps, _re2_class, _utf8_lower

SPIECE_UNDERLINE = "\u2581"
_UNIGRAM, _UNKNOWN_PIECE = 1, 2  # TrainerSpec.ModelType.UNIGRAM, SentencePiece.Type.UNKNOWN


def _varint(buffer, position):
    value, shift = 0, 0
    while True:
        if position >= len(buffer) or shift > 63:
            raise ValueError("truncated varint")
        byte = buffer[position]
        position += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, position


def _protobuf_fields(buffer):
    """(field number, wire type, value) of a serialised protobuf message; value is an int (varint)
    or bytes (length-delimited and fixed-width fields)."""
    position = 0
    while position < len(buffer):
        key, position = _varint(buffer, position)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, position = _varint(buffer, position)
        elif wire_type in (1, 5):
            size = 8 if wire_type == 1 else 4
            value, position = buffer[position:position + size], position + size
        elif wire_type == 2:
            size, position = _varint(buffer, position)
            value, position = buffer[position:position + size], position + size
        else:
            raise ValueError(f"unsupported wire type {wire_type}")
        if position > len(buffer) or number == 0:
            raise ValueError("truncated message")
        yield number, wire_type, value


def _parse_model(proto):
    """What the tokenizers need from a SentencePiece ModelProto (sentencepiece_model.proto):
    [(piece, type)], the model type and the trainer flags the fast op does not implement."""
    pieces, trainer = [], {}
    for number, wire_type, value in _protobuf_fields(proto):
        if number == 1 and wire_type == 2:  # repeated SentencePiece pieces
            piece, piece_type = None, 1
            for n, w, v in _protobuf_fields(value):
                if n == 1 and w == 2:
                    piece = v.decode("utf-8")
                elif n == 3 and w == 0:
                    piece_type = v
            if piece is None:
                raise ValueError(f"piece {len(pieces)} has no text")
            pieces.append((piece, piece_type))
        elif number == 2 and wire_type == 2:  # TrainerSpec
            trainer = {n: v for n, w, v in _protobuf_fields(value) if w == 0}
    if not pieces:
        raise ValueError("no pieces")
    # TrainerSpec: model_type = 3 (default UNIGRAM), treat_whitespace_as_suffix = 24, byte_fallback = 35
    return pieces, trainer.get(3, _UNIGRAM), bool(trainer.get(24, 0)), bool(trainer.get(35, 0))


@functools.lru_cache(maxsize=None)
def _albert_classes():
    """RE2 classes (space, combining, digit) from Python's `unicodedata` / `str` methods."""
    space, combining, digit = [], [], []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        char = chr(cp)
        if char.isspace():
            space.append(cp)
        if unicodedata.combining(char):
            combining.append(cp)
        if char.isdigit():
            digit.append(cp)
    return {"space": _re2_class(space), "combining": _re2_class(combining), "digit": _re2_class(digit)}


def _read_model(model_file, model_proto, owner):
    """The bytes of a SentencePiece model, from exactly one of a path and the bytes."""
    if (model_file is None) == (model_proto is None):
        raise ValueError(f"{owner}: give exactly one of `model_file` (a path to a SentencePiece .model) "
                         "and `model_proto` (its bytes)")
    if model_file is not None:
        if not isinstance(model_file, (str, os.PathLike)):
            raise ValueError(f"{owner}: `model_file` is a path, got {type(model_file).__name__}; "
                             "pass the model's bytes as `model_proto=`")
        model_file = os.fspath(model_file)
        if not os.path.isfile(model_file):
            raise ValueError(f"{owner}: model_file {model_file!r} does not exist or is not a file")
        with open(model_file, "rb") as f:
            return f.read(), f"model_file {model_file!r}"
    if isinstance(model_proto, str):  # get_config's base64 text
        model_proto = base64.b64decode(model_proto)
    return bytes(model_proto), "model_proto"


@keras.saving.register_keras_serializable(package="kzoo")
class SentencePieceTokenizer(StringTokenizer):
    """SentencePiece ids in the graph, with the model's own ids (no preprocessing, no remapping).

    The base of `AlbertTokenizer` and `XLMRobertaTokenizer`; usable on its own for a model whose
    ids are the SentencePiece ids and whose tokenizer does nothing before SentencePiece. `backend`
    says which op runs: "fast" (`FastSentencepieceTokenizer`, unigram models) or "library"
    (`SentencepieceTokenizer`, other model types); see the module docstring.

    Args:
        model_file: path of a SentencePiece model (`spiece.model`, `sentencepiece.bpe.model`).
        model_proto: the model's bytes instead (`get_config` stores them, base64, so a saved
            layer reloads without the file). Give exactly one of the two.
        special_tokens: {role: piece} for the roles `cls`, `sep`, `pad`, `mask`, `unk`, `bos`,
            `eos` the model has; subclasses set them.

    Strings [batch] in, int32 ids RaggedTensor [batch, (tokens)] out, without special tokens.
    """

    packer_layout = "bert"
    model_file_name = "spiece.model"  # the file `kzoo.text.saving.write_tokenizer` writes the model to

    def __init__(self, model_file=None, model_proto=None, special_tokens=None, **kwargs):
        super().__init__(**kwargs)
        proto, self._source = _read_model(model_file, model_proto, type(self).__name__)
        self.model_proto = proto
        try:
            pieces, model_type, suffix_whitespace, byte_fallback = _parse_model(proto)
            if model_type == _UNIGRAM and not (suffix_whitespace or byte_fallback):
                self.backend = "fast"
                self._fast = tf_text.FastSentencepieceTokenizer(proto)
            else:
                self.backend = "library"
                self._sp = tf_text.SentencepieceTokenizer(model=proto, out_type=tf.int32)
        except (tf.errors.OpError, ValueError, UnicodeDecodeError, RuntimeError) as e:
            raise ValueError(f"{type(self).__name__}: {self._source} is not a SentencePiece model: {e}") from None
        self.pieces = tuple(piece for piece, _ in pieces)
        self._piece_ids = {}
        for index, piece in enumerate(self.pieces):
            self._piece_ids.setdefault(piece, index)
        unknown = [index for index, (_, piece_type) in enumerate(pieces) if piece_type == _UNKNOWN_PIECE]
        self._sp_unk_id = unknown[0] if unknown else 0
        self._piece_table = _StringTable(list(self._piece_ids), list(self._piece_ids.values()), self._source)
        with tf.init_scope():
            self._piece_tensor = tf.constant(self.pieces)
        self._special_tokens = dict(special_tokens or {})
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True
        self.built = True

    @property
    def resources(self):
        """(tf-text's `SentencepieceTokenizer`,) for the "library" backend, which holds a resource
        (see `StringTokenizer.resources`); () for the "fast" one."""
        return (self._sp,) if self.backend == "library" else ()

    # -- vocabulary --------------------------------------------------------------------------
    @property
    def vocabulary(self):
        """The token of every id, in id order."""
        return self.pieces

    @property
    def vocab_size(self):
        return len(self.vocabulary)

    def token_to_id(self, token):
        """The id of `token`; a `KeyError` naming it if it is not in the vocabulary."""
        if token not in self._piece_ids:
            raise KeyError(f"token {token!r} is not in the vocabulary of {self.name}")
        return self._piece_ids[token]

    def _special_token_id(self, role):
        token = self._special_tokens.get(role)
        if token is None:
            raise ValueError(f"{self.name} ({type(self).__name__}) has no {role} token")
        try:
            return self.token_to_id(token)
        except KeyError:
            raise ValueError(f"the vocabulary of {self.name} ({self._source}) lacks the special token "
                             f"{token!r}") from None

    @property
    def cls_token_id(self):
        return self._special_token_id("cls")

    @property
    def sep_token_id(self):
        return self._special_token_id("sep")

    @property
    def pad_token_id(self):
        return self._special_token_id("pad")

    @property
    def mask_token_id(self):
        return self._special_token_id("mask")

    @property
    def unk_token_id(self):
        return self._special_token_id("unk")

    @property
    def bos_token_id(self):
        return self._special_token_id("bos")

    @property
    def eos_token_id(self):
        return self._special_token_id("eos")

    @property
    def special_token_ids(self):
        """Sorted ids of the special tokens the tokenizer has (never produced by `call`)."""
        ids = set()
        for role in self._special_tokens:
            if role != "unk":
                ids.add(self._special_token_id(role))
        return sorted(ids)

    def ids_to_tokens(self, ids):
        """Token strings of int ids (a Tensor or RaggedTensor of any shape)."""
        return tf.gather(tf.constant(self.vocabulary), ids)

    # -- tokenization ------------------------------------------------------------------------
    def _preprocess(self, text):
        return text

    def _sentencepiece(self, text):
        """SentencePiece alone: strings [n] -> its int32 ids [n, (pieces)] (int64 row splits)."""
        if self.backend == "fast":
            ids = self._fast.tokenize(text)
        else:
            ids = self._sp.tokenize(text)
        return tf.cast(ids, tf.int32).with_row_splits_dtype(tf.int64)

    def _piece_to_id(self, pieces):
        """SentencePiece's `PieceToId`: a piece not in the model is the unknown piece's id."""
        return self._piece_table.lookup(pieces, self._sp_unk_id)

    def _encode(self, text):
        """Preprocessed strings [n] -> SentencePiece ids [n, (pieces)]."""
        return self._sentencepiece(text)

    def _map_ids(self, ids):
        return ids

    def _tokenize_rows(self, inputs):
        text = tf.strings.unicode_transcode(inputs, "UTF-8", "UTF-8", errors="replace",
                                            replacement_char=0xFFFD)
        ids = self._encode(self._preprocess(text))
        return ids.with_flat_values(tf.cast(self._map_ids(ids.flat_values), tf.int32))

    def get_config(self):
        config = super().get_config()
        config["model_proto"] = base64.b64encode(self.model_proto).decode("ascii")
        if type(self) is SentencePieceTokenizer:
            config["special_tokens"] = dict(self._special_tokens)
        return config


@keras.saving.register_keras_serializable(package="kzoo")
class AlbertTokenizer(SentencePieceTokenizer):
    """ALBERT's SentencePiece tokenizer with its preprocessing, as TensorFlow ops.

    Equal to the slow ALBERT tokenizer (see the module docstring for the pipeline and for how
    transformers 5's `AutoTokenizer` differs). `BertPacker` packs its ids (`[CLS] a [SEP] b [SEP]`).

    Args:
        model_file: path of the SentencePiece model (`spiece.model`, official `30k-clean.model`).
        lower_case: lower-case (`do_lower_case`; every released ALBERT is uncased).
        keep_accents: skip NFKD and the deletion of combining characters.
        normalize_quotes: `` `` `` and `''` -> `"` (transformers and XLNet do it; google-research/albert's
            `preprocess_text` does not).
        split_digit_comma: `encode_pieces`' rule for pieces that end in a digit and a comma.
        model_proto: the model's bytes instead of `model_file`.

    Example:
    >>> tokenizer = AlbertTokenizer("spiece.model")  # doctest: +SKIP
    >>> tokenizer.ids_to_tokens(tokenizer(["Pay 1,000,000 dollars."])).to_list()  # doctest: +SKIP
    [[b'\\xe2\\x96\\x81pay', b'\\xe2\\x96\\x811', b',', b'000', b',', b'000', b'\\xe2\\x96\\x81dollars', b'.']]
    """

    def __init__(self, model_file=None, lower_case=True, keep_accents=False, normalize_quotes=True,
                 split_digit_comma=True, model_proto=None, **kwargs):
        kwargs.pop("special_tokens", None)
        super().__init__(model_file=model_file, model_proto=model_proto,
                         special_tokens={"cls": "[CLS]", "sep": "[SEP]", "pad": "<pad>", "mask": "[MASK]",
                                         "unk": "<unk>"}, **kwargs)
        self.lower_case = lower_case
        self.keep_accents = keep_accents
        self.normalize_quotes = normalize_quotes
        self.split_digit_comma = split_digit_comma
        with tf.init_scope():
            gap_upper, gap_lower = _lowercase_gaps() if lower_case else ((), ())
            self._gap_upper = tf.constant(gap_upper, tf.int32)
            self._gap_lower = tf.constant(gap_lower, tf.int32)

    def _lower(self, text):
        """Python's `str.lower()`. ICU's lower case stops at U+0000 (the rest of the string is lost),
        so it runs on the parts between them; U+0000 is neither cased nor case-ignorable, so the
        final-sigma rule sees the same context."""
        parts = tf.strings.split(text, sep="\x00")  # [n, (parts)]
        lowered = self._lower_parts(parts.flat_values)
        position = tf.ragged.range(parts.row_lengths())
        is_last = tf.equal(position.flat_values, tf.gather(parts.row_lengths() - 1, position.value_rowids()))
        lowered = tf.strings.join([lowered, tf.where(is_last, "", "\x00")])
        return tf.strings.reduce_join(parts.with_flat_values(lowered), axis=1)

    def _lower_parts(self, text):
        text = _utf8_lower(text)
        if self._gap_upper.shape[0] == 0:
            return text
        chars = tf.strings.unicode_decode(text, "UTF-8")
        flat = chars.flat_values
        index = tf.minimum(tf.searchsorted(self._gap_upper, flat), self._gap_upper.shape[0] - 1)
        is_gap = tf.gather(self._gap_upper, index) == flat
        flat = tf.where(is_gap, tf.gather(self._gap_lower, index), flat)
        return tf.strings.unicode_encode(chars.with_flat_values(flat), "UTF-8")

    def preprocess(self, inputs):
        """`preprocess_text` alone: strings [n] -> the text SentencePiece sees."""
        return self._preprocess(tf.convert_to_tensor(inputs, tf.string))

    def _preprocess(self, text):
        classes = _albert_classes()
        text = tf.strings.regex_replace(text, classes["space"] + "+", " ")
        text = tf.strings.regex_replace(text, "^ | $", "")
        if self.normalize_quotes:
            text = tf.strings.regex_replace(text, "``|''", '"')
        if not self.keep_accents:
            text = tf_text.normalize_utf8(text, "NFKD")
            text = tf.strings.regex_replace(text, classes["combining"], "")
        if self.lower_case:
            text = self._lower(text)
        return text

    def _encode(self, text):
        ids = self._sentencepiece(text)  # [n, (pieces)]
        if not self.split_digit_comma:
            return ids
        kept = ids.flat_values
        flat = tf.gather(self._piece_tensor, kept)
        digit_comma = tf.strings.regex_full_match(flat, "(?s).*" + _albert_classes()["digit"] + ",")
        # Pieces "...d,": SentencePiece on the piece without "▁" and without the comma.
        positions = tf.where(digit_comma)[:, 0]
        split = tf.gather(flat, positions)
        body = tf.strings.regex_replace(tf.strings.regex_replace(split, ",$", ""), SPIECE_UNDERLINE, "")
        sub_ids = self._sentencepiece(body)  # [m, (k)]; every re-encoding has a piece: it holds a digit
        sub = sub_ids.with_flat_values(tf.gather(self._piece_tensor, sub_ids.flat_values))
        first = tf.gather(sub.flat_values, sub.row_splits[:-1])
        first_rows = sub.row_splits[:-1]
        strip = tf.logical_and(
            tf.logical_not(tf.strings.regex_full_match(split, "(?s)" + SPIECE_UNDERLINE + ".*")),
            tf.strings.regex_full_match(first, "(?s)" + SPIECE_UNDERLINE + ".*"))
        stripped = tf.strings.regex_replace(first, "^" + SPIECE_UNDERLINE, "")
        sub_flat = tf.tensor_scatter_nd_update(sub.flat_values, first_rows[:, tf.newaxis],
                                               tf.where(strip, stripped, first))
        keep = tf.tensor_scatter_nd_update(tf.ones_like(sub_flat, tf.bool), first_rows[:, tf.newaxis],
                                           tf.logical_not(tf.logical_and(strip, tf.equal(stripped, ""))))
        sub = tf.ragged.boolean_mask(sub.with_flat_values(sub_flat), sub.with_flat_values(keep))
        comma = tf.RaggedTensor.from_tensor(tf.fill([tf.shape(split)[0], 1], ","), row_splits_dtype=tf.int64)
        replaced = tf.concat([sub, comma], axis=1)  # [m, (k')]
        replaced_ids = replaced.with_flat_values(self._piece_to_id(replaced.flat_values))
        # Put the m re-encodings back in place of their pieces: one row per piece.
        n = tf.shape(flat, out_type=tf.int64)[0]
        others = tf.where(tf.logical_not(digit_comma))[:, 0]
        unchanged = tf.RaggedTensor.from_tensor(tf.gather(kept, others)[:, tf.newaxis], row_splits_dtype=tf.int64)
        rows = tf.concat([unchanged, replaced_ids], axis=0)
        order = tf.scatter_nd(tf.concat([others, positions], 0)[:, tf.newaxis], tf.range(n), [n])
        per_piece = tf.gather(rows, order)  # [pieces, (ids)]
        return ids.with_flat_values(per_piece).merge_dims(1, 2)

    def get_config(self):
        config = super().get_config()
        config.update({"lower_case": self.lower_case, "keep_accents": self.keep_accents,
                       "normalize_quotes": self.normalize_quotes, "split_digit_comma": self.split_digit_comma})
        return config


@keras.saving.register_keras_serializable(package="kzoo")
class XLMRobertaTokenizer(SentencePieceTokenizer):
    """XLM-RoBERTa's SentencePiece tokenizer with fairseq's ids, as TensorFlow ops.

    id = SentencePiece id + 1, SentencePiece's `<unk>` -> 3, with `<s>`=0, `<pad>`=1, `</s>`=2,
    `<unk>`=3 and `<mask>` = the last id (SentencePiece size + 1). No preprocessing (the model's
    own normalizer runs inside SentencePiece). Its packer is `RobertaPacker`
    (`<s> a </s></s> b </s>`, one token type, pad 1): `BertPacker.from_tokenizer` returns one.

    Args:
        model_file: path of `sentencepiece.bpe.model`; its pieces 0..2 must be `<unk>`, `<s>`, `</s>`.
        model_proto: the model's bytes instead.

    Example:
    >>> tokenizer = XLMRobertaTokenizer("sentencepiece.bpe.model")  # doctest: +SKIP
    >>> tokenizer(["Hello world"]).to_list()  # doctest: +SKIP
    [[35378, 8999]]
    """

    packer_layout = "roberta"
    model_file_name = "sentencepiece.bpe.model"
    FAIRSEQ_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")

    def __init__(self, model_file=None, model_proto=None, **kwargs):
        kwargs.pop("special_tokens", None)
        super().__init__(model_file=model_file, model_proto=model_proto,
                         special_tokens={"cls": "<s>", "bos": "<s>", "sep": "</s>", "eos": "</s>", "pad": "<pad>",
                                         "mask": "<mask>", "unk": "<unk>"}, **kwargs)
        if len(self.pieces) < 3 or self.pieces[:3] != ("<unk>", "<s>", "</s>"):
            raise ValueError(f"XLMRobertaTokenizer: {self._source} does not start with the pieces <unk>, <s>, </s> "
                             f"that fairseq's id mapping assumes (it starts with {list(self.pieces[:3])})")
        self._vocabulary = self.FAIRSEQ_SPECIALS + self.pieces[3:] + ("<mask>",)
        self._token_ids = {}
        for index, token in enumerate(self._vocabulary):
            self._token_ids.setdefault(token, index)

    @property
    def vocabulary(self):
        return self._vocabulary

    def token_to_id(self, token):
        if token not in self._token_ids:
            raise KeyError(f"token {token!r} is not in the vocabulary of {self.name}")
        return self._token_ids[token]

    def _map_ids(self, ids):
        return tf.where(tf.equal(ids, self._sp_unk_id), tf.constant(3, ids.dtype), ids + 1)
