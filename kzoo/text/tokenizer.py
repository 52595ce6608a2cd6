"""In-graph BERT WordPiece tokenizer, equal to google-research/bert's `FullTokenizer`.

The official tokenizer (`tokenization.py`: `BasicTokenizer` then `WordpieceTokenizer`) runs in
Python. This layer rebuilds it from TensorFlow and tf-text ops, so it runs eagerly, in
`tf.function`, in `tf.data` and inside an exported SavedModel, and gives the same ids:

1. drop invalid UTF-8 bytes (the official `convert_to_unicode` decodes with errors="ignore"):
   `tf.strings.unicode_transcode`;
2. `_clean_text`: delete U+0000, U+FFFD and every category-C character except tab, newline
   and carriage return; map every whitespace character (and U+2028/U+2029, on which Python's
   `str.split()` also splits) to a space: `tf.strings.regex_replace`;
3. `_tokenize_chinese_chars`: spaces around CJK ideographs: `tf.strings.regex_replace`;
4. lower case only: Python `str.lower()` (full mappings, final sigma) as ICU's
   `tf.strings.lower(encoding="utf-8")`, run after an ASCII-only lower so that a Turkish or
   Azeri process locale cannot turn "I" into dotless "ı"; NFD (`tf_text.normalize_utf8`); delete
   category Mn;
5. split on spaces and split off punctuation (ASCII 33-47, 58-64, 91-96, 123-126 and category P)
   as single tokens: `tf_text.regex_split`;
6. WordPiece, greedy longest match first with "##" continuations:
   `tf_text.FastWordpieceTokenizer(no_pretokenization=True)`, whose model is a constant (no
   lookup-table resource), so it traces into SavedModel signatures; a word longer than
   `max_input_chars_per_word` characters (code points, not bytes) becomes one `[UNK]`.

The RE2 character classes of steps 2, 4 and 5 are built from Python's `unicodedata` (the tables
the official code consults), not from RE2's `\\p{..}` tables, so categories, unassigned (Cn,
deleted) code points included, follow the running Python exactly; `tests/text/test_tokenizer.py`
checks every code point. (Python 3.11 has Unicode 14; the official code was run on older
Pythons, whose tables differ on recently assigned characters.)

Residual differences from the official code:
- Lower-casing uses the ICU inside TensorFlow, whose Unicode data is older (TF 2.21: Unicode 13).
  Letters it leaves upper-case that Python lower-cases to one character (TF 2.21: 40, e.g.
  U+2C2F, U+A7C0, Vithkuqi U+10570..U+10595) are patched per code point (`_lowercase_gaps`,
  measured when the layer is built). Open: ICU still treats those letters as uncased in the
  final-sigma test, so "Σ" right after one of them becomes "σ" where Python gives "ς".
- Under a Turkish/Azeri/Lithuanian process locale ICU lower-cases "İ" and dotted-i sequences
  differently from Python; accent stripping removes the difference.
- NFD uses tf-text's ICU; it differs from Python 3.11's `unicodedata` only on code points
  Python calls unassigned, which step 2 has already deleted.

Example:
>>> tokenizer = BertTokenizer(vocabulary=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
...                                       "the", "qu", "##ick", "fox", "!"])
>>> tokenizer(["The quick fox!", "Qu\\u00e9 fox"]).to_list()
[[5, 6, 7, 8, 9], [1, 8]]
"""

import functools
import os
import unicodedata

import keras
import tensorflow as tf
import tensorflow_text as tf_text

_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)
_ASCII_PUNCTUATION = frozenset([*range(33, 48), *range(58, 65), *range(91, 97), *range(123, 127)])


def _re2_class(code_points):
    """An RE2 character class matching exactly `code_points` (sorted ints)."""
    ranges = []
    for cp in code_points:
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    return "[" + "".join(
        f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in ranges
    ) + "]"


@functools.lru_cache(maxsize=None)
def _char_classes():
    """RE2 classes (drop, space, cjk, marks, punctuation) from Python's `unicodedata`."""
    drop, space, marks, punctuation = [], [], [], []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:  # surrogates never occur in valid UTF-8
            continue
        char = chr(cp)
        category = unicodedata.category(char)
        if cp in (0, 0xFFFD) or (category.startswith("C") and char not in "\t\n\r"):
            drop.append(cp)
        elif char.isspace():
            space.append(cp)
        if category == "Mn":
            marks.append(cp)
        if category.startswith("P") or cp in _ASCII_PUNCTUATION:
            punctuation.append(cp)
    cjk = [cp for start, end in _CJK_RANGES for cp in range(start, end + 1)]
    return {
        "drop": _re2_class(drop),
        "space": _re2_class(space),
        "cjk": _re2_class(sorted(cjk)),
        "marks": _re2_class(marks),
        "punctuation": _re2_class(punctuation),
    }


@functools.lru_cache(maxsize=None)
def _whitespace_class():
    """RE2 class of Python's `str.isspace` characters."""
    return _re2_class([cp for cp in range(0x110000) if chr(cp).isspace()])


def _utf8_lower(text):
    """ICU lower case after an ASCII one, which no process locale can change."""
    return tf.strings.lower(tf.strings.lower(text), encoding="utf-8")


@functools.lru_cache(maxsize=None)
def _lowercase_gaps():
    """(upper, lower) code points Python lower-cases to one character and TF's ICU leaves."""
    chars = (chr(cp) for cp in range(1, 0x110000) if not 0xD800 <= cp <= 0xDFFF)
    upper = [c for c in chars if len(c.lower()) == 1 and c.lower() != c]
    with tf.init_scope():
        lowered = _utf8_lower(tf.constant(upper)).numpy()
    gaps = [(ord(c), ord(c.lower())) for c, low in zip(upper, lowered) if low.decode() != c.lower()]
    return tuple(zip(*gaps)) if gaps else ((), ())


def _read_vocab_file(vocab_file):
    """Tokens of a vocab.txt, one a line, stripped as the official `load_vocab` does."""
    if not os.path.isfile(vocab_file):
        raise ValueError(f"vocab_file {vocab_file!r} does not exist or is not a file")
    with open(vocab_file, encoding="utf-8", newline="\n") as f:
        return [line.strip() for line in f]


def _validate_vocabulary(vocabulary, source, unk_token):
    if not vocabulary:
        raise ValueError(f"{source} is empty; expected one WordPiece token per line")
    seen = {}
    for index, token in enumerate(vocabulary):
        if not isinstance(token, str) or not token:
            raise ValueError(f"{source}: line {index + 1} is {token!r}; expected a non-empty token")
        if token in seen:
            raise ValueError(
                f"{source}: token {token!r} appears twice, at lines {seen[token] + 1} and {index + 1}"
            )
        seen[token] = index
    if unk_token not in seen:
        raise ValueError(f"{source} lacks the unknown token {unk_token!r}")


class StringTokenizer(keras.layers.Layer):
    """What every in-graph tokenizer of kzoo shares: calling it on strings of any rank. A subclass
    implements `_tokenize_rows(strings [n]) -> int32 RaggedTensor [n, (tokens)]`."""

    def call(self, inputs):
        """Strings [batch] -> ids, int32 RaggedTensor [batch, (tokens)]; a scalar -> ids [tokens].

        A RaggedTensor of strings (e.g. [batch, (words)]) gets one more ragged dimension.
        """
        if isinstance(inputs, tf.RaggedTensor):
            return inputs.with_flat_values(self._tokenize_rows(inputs.flat_values))
        inputs = tf.convert_to_tensor(inputs, dtype=tf.string)
        rank = inputs.shape.rank
        if rank is None:
            raise ValueError(f"{self.name} needs string inputs of known rank, got shape {inputs.shape}")
        if rank == 0:
            return self._tokenize_rows(inputs[tf.newaxis])[0]
        if rank == 1:
            return self._tokenize_rows(inputs)
        return self.call(tf.RaggedTensor.from_tensor(inputs, ragged_rank=rank - 1))

    def tokenize(self, inputs):
        """Same as calling the layer."""
        return self(inputs)

    @property
    def resources(self):
        """The `tf.Module`s of the tokenizer that own TF resources, which an exported object must
        track so that a SavedModel saves them (`ExportArchive.track`, or an attribute of the root
        module). Empty for kzoo's constant-table tokenizers (WordPiece, unigram SentencePiece,
        byte-level BPE); a SentencePiece model of another type runs tf-text's library op, a
        resource."""
        return ()

    def split_words(self, inputs):
        """Strings [batch] -> words [batch, (words)]: the units word-level tasks label (tagging)
        and align to (SQuAD). Here: the runs of characters between whitespace (`str.isspace`),
        unchanged; `BertTokenizer` returns the official `BasicTokenizer`'s words instead."""
        text = tf.strings.unicode_transcode(tf.convert_to_tensor(inputs, tf.string), "UTF-8", "UTF-8",
                                            errors="replace", replacement_char=0xFFFD)
        return tf_text.regex_split(text, _whitespace_class() + "+")

    def tokenize_words(self, words):
        """Words [batch, (words)] (a RaggedTensor of strings) -> ids [batch, (words), (pieces)]: each
        word tokenized alone, as a word that follows whitespace in running text (what the
        reference's `is_split_into_words` tokenization gives)."""
        return self(words)


@keras.saving.register_keras_serializable(package="kzoo")
class BertTokenizer(StringTokenizer):
    """WordPiece tokenizer with the official BERT rules, as TensorFlow ops.

    Maps strings to token ids without special tokens; `BertPacker` adds `[CLS]`/`[SEP]`
    and pads. See the module docstring for the pipeline and its residual differences.

    Args:
        vocab_file: path of a vocab.txt (one token a line). Give exactly one of
            `vocab_file` and `vocabulary`; `get_config` stores the token list, so a saved
            model reloads without the file.
        lower_case: lower-case and strip accents (uncased checkpoints) or neither (cased).
        vocabulary: list of WordPiece tokens; a token's id is its index.
        max_input_chars_per_word: words with more characters become a single `unk_token`.
        unk_token: the token of words with no WordPiece cover; must be in the vocabulary.

    Example:
    >>> tokenizer = BertTokenizer("vocab.txt")  # doctest: +SKIP
    >>> tokenizer(["Hello, world!"])  # doctest: +SKIP
    <tf.RaggedTensor [[7592, 1010, 2088, 999]]>
    """

    def __init__(
        self,
        vocab_file=None,
        lower_case=True,
        vocabulary=None,
        max_input_chars_per_word=200,
        unk_token="[UNK]",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if (vocabulary is None) == (vocab_file is None):
            raise ValueError("give exactly one of `vocabulary` (a token list) and `vocab_file` (a path)")
        if vocab_file is not None:
            if not isinstance(vocab_file, (str, os.PathLike)):
                raise ValueError(f"`vocab_file` is a path to vocab.txt, got {type(vocab_file).__name__}; "
                                 "pass a token list as `vocabulary=`")
            vocab_file = os.fspath(vocab_file)
            vocabulary, source = _read_vocab_file(vocab_file), f"vocab_file {vocab_file!r}"
        elif isinstance(vocabulary, str):
            raise ValueError("`vocabulary` is a list of tokens; pass a vocab.txt path as `vocab_file`")
        else:
            vocabulary, source = list(vocabulary), "vocabulary"
        _validate_vocabulary(vocabulary, source, unk_token)
        if max_input_chars_per_word < 1:
            raise ValueError(f"max_input_chars_per_word must be >= 1, got {max_input_chars_per_word}")
        self.vocabulary = tuple(vocabulary)
        self.lower_case = lower_case
        self.max_input_chars_per_word = max_input_chars_per_word
        self.unk_token = unk_token
        self._token_ids = {token: index for index, token in enumerate(vocabulary)}
        self._wordpiece = tf_text.FastWordpieceTokenizer(
            vocab=list(vocabulary),
            suffix_indicator="##",
            max_bytes_per_word=4 * max_input_chars_per_word,  # a UTF-8 character has <= 4 bytes
            token_out_type=tf.int32,
            unknown_token=unk_token,
            no_pretokenization=True,
        )
        with tf.init_scope():
            self._vocab_tensor = tf.constant(vocabulary)
            gap_upper, gap_lower = _lowercase_gaps() if lower_case else ((), ())
            self._gap_upper = tf.constant(gap_upper, tf.int32)
            self._gap_lower = tf.constant(gap_lower, tf.int32)
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True
        self.built = True

    @property
    def vocab_size(self):
        return len(self.vocabulary)

    def token_to_id(self, token):
        """The id of `token`; a `KeyError` naming it if it is not in the vocabulary."""
        if token not in self._token_ids:
            raise KeyError(f"token {token!r} is not in the vocabulary of {self.name}")
        return self._token_ids[token]

    def _special_token_id(self, token):
        if token not in self._token_ids:
            raise ValueError(f"the vocabulary of {self.name} lacks the special token {token!r}")
        return self._token_ids[token]

    @property
    def cls_token_id(self):
        return self._special_token_id("[CLS]")

    @property
    def sep_token_id(self):
        return self._special_token_id("[SEP]")

    @property
    def pad_token_id(self):
        return self._special_token_id("[PAD]")

    @property
    def mask_token_id(self):
        return self._special_token_id("[MASK]")

    @property
    def unk_token_id(self):
        return self._special_token_id(self.unk_token)

    def _lower(self, text):
        text = _utf8_lower(text)
        if self._gap_upper.shape[0] == 0:
            return text
        chars = tf.strings.unicode_decode(text, "UTF-8")
        flat = chars.flat_values
        index = tf.minimum(tf.searchsorted(self._gap_upper, flat), self._gap_upper.shape[0] - 1)
        is_gap = tf.gather(self._gap_upper, index) == flat
        flat = tf.where(is_gap, tf.gather(self._gap_lower, index), flat)
        return tf.strings.unicode_encode(chars.with_flat_values(flat), "UTF-8")

    def basic_tokenize(self, inputs):
        """The official `BasicTokenizer`: strings [batch] -> words, a RaggedTensor [batch, (words)]."""
        classes = _char_classes()
        text = tf.strings.unicode_transcode(inputs, "UTF-8", "UTF-8", errors="ignore")
        text = tf.strings.regex_replace(text, classes["drop"], "")
        text = tf.strings.regex_replace(text, classes["space"], " ")
        text = tf.strings.regex_replace(text, classes["cjk"], r" \0 ")
        if self.lower_case:
            text = tf_text.normalize_utf8(self._lower(text), "NFD")
            text = tf.strings.regex_replace(text, classes["marks"], "")
        punctuation = classes["punctuation"]
        return tf_text.regex_split(text, f"(?: |{punctuation})", punctuation)

    def split_words(self, inputs):
        """The official `BasicTokenizer`'s words (`basic_tokenize`): normalised as WordPiece sees them."""
        return self.basic_tokenize(inputs)

    def _tokenize_rows(self, inputs):
        words = self.basic_tokenize(inputs)
        flat = words.flat_values
        too_long = tf.strings.length(flat, unit="UTF8_CHAR") > self.max_input_chars_per_word
        # The unknown token is a whole vocabulary entry, so WordPiece maps it to its own id.
        pieces = self._wordpiece.tokenize(tf.where(too_long, self.unk_token, flat))
        return words.with_flat_values(pieces).merge_dims(1, 2)

    def ids_to_tokens(self, ids):
        """Token strings of int ids (a Tensor or RaggedTensor of any shape)."""
        return tf.gather(self._vocab_tensor, ids)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary": list(self.vocabulary),
                "lower_case": self.lower_case,
                "max_input_chars_per_word": self.max_input_chars_per_word,
                "unk_token": self.unk_token,
            }
        )
        return config
