"""In-graph byte-level BPE (GPT-2 / RoBERTa), equal to the `tokenizers` ByteLevel BPE that
transformers' `RobertaTokenizer` runs and to GPT-2's `encoder.py`.

The reference, in Python:
1. pre-tokenisation with GPT-2's regex
   `'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+`;
2. each word's UTF-8 bytes mapped to printable characters (`bytes_to_unicode`: "Ġ" is the space);
3. BPE: repeatedly merge, everywhere in the word (left to right, not overlapping), the adjacent
   pair with the lowest rank in merges.txt, until no pair has a rank;
4. each piece's id from vocab.json.

Here, as TensorFlow ops (no Python in the call, no lookup-table resource):
1. RE2 has no look-ahead, so `\\s+(?!\\S)` is rebuilt: the text is cut into whitespace runs and
   the rest (`tf_text.regex_split`); a run followed by text gives one word of all its characters
   but the last, and that last character is a word of its own unless it is " ", which goes in
   front of the following text; a run at the end of the text is one word. Matches of the regex
   never mix whitespace and other characters (but for that optional leading " "), so what is
   left is split with the regex's other alternatives, which RE2 evaluates as the reference
   does (leftmost-first). The classes are explicit: \\s is Unicode White_Space (`str.isspace`
   without U+001C..U+001F, as the reference's regex engines have it), \\p{L} and \\p{N} are the
   categories L* and N* of the running Python's `unicodedata`;
2. bytes: `tf.strings.bytes_split` + `tf.io.decode_raw`, gathered from the 256 characters;
3. BPE over all distinct words of the batch at once (`tf.unique`) in a `tf.while_loop`: each
   step looks up the rank of every adjacent pair, takes each word's lowest, and merges every
   occurrence of that pair (of a run "a a a" the 1st and 3rd..., as the reference's left-to-right
   scan does). Strings are looked up in constant tables sorted by `StringToHashBucketFast`
   (FarmHash) with `tf.searchsorted`, then compared with the stored string, so a lookup is exact;
4. piece ids by the same lookup in vocab.json (a piece not in it, which a consistent
   vocab.json/merges.txt never gives, becomes `<unk>`).

Residual differences: code points that the running Python's Unicode (Python 3.11: 14.0) leaves
unassigned but a newer one makes letters or numbers (tokenizers' Oniguruma has Unicode 16, the
`regex` module 17) fall in the "other" class here; invalid UTF-8 becomes U+FFFD.

Differences from keras-hub's `BytePairTokenizer` (measured in `tests/text/test_bpe.py`):
it marks split points with U+096C (DEVANAGARI DIGIT SIX) and deletes that character from the
text, splits on RE2's ASCII-only \\s plus four extra spaces, keeps a mutable hash-table cache,
merges one pair occurrence per step and densifies [words, longest word] at every step (a
10,000-character word in a batch runs out of memory).

Example:
>>> tokenizer = RobertaTokenizer("vocab.json", "merges.txt")  # doctest: +SKIP
>>> tokenizer(["Hello world!"]).to_list()  # doctest: +SKIP
[[31414, 232, 328]]
"""

import functools
import json
import os
import unicodedata

import keras
import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

from kzoo.text.tokenizer import StringTokenizer, _re2_class

_HASH_BUCKETS = 2**63 - 1
_NO_RANK = np.iinfo(np.int32).max


def bytes_to_unicode():
    """GPT-2's map from the 256 byte values to printable characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


@functools.lru_cache(maxsize=None)
def _gpt2_classes():
    """RE2 classes for GPT-2's regex: space (White_Space), letter (L*), number (N*), other."""
    space, letter, number = [], [], []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        char = chr(cp)
        category = unicodedata.category(char)
        if char.isspace() and not 0x1C <= cp <= 0x1F:
            space.append(cp)
        elif category.startswith("L"):
            letter.append(cp)
        elif category.startswith("N"):
            number.append(cp)
    other = "[^" + _re2_class(sorted(space + letter + number))[1:]
    return {"space": _re2_class(space), "letter": _re2_class(letter), "number": _re2_class(number), "other": other}


def _row_ids(splits):
    """The row of every value of a RaggedTensor with these row_splits (int64). Binary search:
    `value_rowids` and `tf.repeat` build a dense [rows, longest row] mask, which a batch with one
    10,000-character word turns into hundreds of millions of elements."""
    splits = tf.cast(splits, tf.int64)
    return tf.searchsorted(splits[1:], tf.range(splits[-1]), side="right", out_type=tf.int64)


_ESCAPE, _ESCAPED_ESCAPE, _ESCAPED_NUL = "\ufdd0", "\ufdd1", "\ufdd2"  # noncharacters: "other"


def _unescape(words):
    """Undoes `_pre_tokenize`'s escaping of U+0000 and U+FDD0 (a rewrite string cannot hold U+0000:
    the parts between escaped NULs are joined with a NUL tensor)."""
    parts = tf.strings.split(words, sep=_ESCAPE + _ESCAPED_NUL)
    index = tf.range(tf.size(parts.flat_values, tf.int64))
    is_last = tf.equal(index, tf.gather(parts.row_splits[1:], _row_ids(parts.row_splits)) - 1)
    joined = tf.strings.reduce_join(
        parts.with_flat_values(tf.strings.join([parts.flat_values, tf.where(is_last, "", "\x00")])), axis=1)
    return tf.strings.regex_replace(joined, _ESCAPE + _ESCAPED_ESCAPE, _ESCAPE)


class _StringTable:
    """An exact, constant string -> int32 map: FarmHash, `tf.searchsorted`, then string equality."""

    def __init__(self, keys, values, owner):
        with tf.init_scope():
            hashes = tf.strings.to_hash_bucket_fast(tf.constant(keys, tf.string), _HASH_BUCKETS).numpy()
        order = np.argsort(hashes, kind="stable")
        hashes = hashes[order]
        if len(hashes) > 1 and np.any(hashes[1:] == hashes[:-1]):
            index = int(np.nonzero(hashes[1:] == hashes[:-1])[0][0])
            raise ValueError(f"{owner}: two entries share a 64-bit hash ({keys[order[index]]!r}, "
                             f"{keys[order[index + 1]]!r}); this table cannot hold them")
        with tf.init_scope():
            self.hashes = tf.constant(hashes, tf.int64)
            self.keys = tf.constant([keys[i] for i in order], tf.string)
            self.values = tf.constant(np.asarray(values, np.int32)[order], tf.int32)
        self.size = len(keys)

    def lookup(self, strings, default):
        if self.size == 0:
            return tf.fill(tf.shape(strings), tf.constant(default, tf.int32))
        hashes = tf.strings.to_hash_bucket_fast(strings, _HASH_BUCKETS)
        index = tf.minimum(tf.searchsorted(self.hashes, hashes), self.size - 1)
        found = tf.logical_and(tf.equal(tf.gather(self.hashes, index), hashes),
                               tf.equal(tf.gather(self.keys, index), strings))
        return tf.where(found, tf.gather(self.values, index), tf.constant(default, tf.int32))


def _read_vocab(vocab_file, vocabulary):
    if (vocab_file is None) == (vocabulary is None):
        raise ValueError("RobertaTokenizer: give exactly one of `vocab_file` (vocab.json) and `vocabulary` (a dict)")
    if vocab_file is not None:
        vocab_file = os.fspath(vocab_file)
        if not os.path.isfile(vocab_file):
            raise ValueError(f"vocab_file {vocab_file!r} does not exist or is not a file")
        try:
            with open(vocab_file, encoding="utf-8") as f:
                vocabulary = json.load(f)
        except ValueError as e:
            raise ValueError(f"vocab_file {vocab_file!r} is not JSON: {e}") from None
        source = f"vocab_file {vocab_file!r}"
    else:
        source = "vocabulary"
    if not isinstance(vocabulary, dict) or not vocabulary:
        raise ValueError(f"{source}: expected a non-empty JSON object {{token: id}}")
    seen = {}
    for token, index in vocabulary.items():
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise ValueError(f"{source}: token {token!r} has id {index!r}; expected an int >= 0")
        if index in seen:
            raise ValueError(f"{source}: tokens {seen[index]!r} and {token!r} share the id {index}")
        seen[index] = token
    return dict(vocabulary), source


def _read_merges(merges_file, merges):
    if (merges_file is None) == (merges is None):
        raise ValueError("RobertaTokenizer: give exactly one of `merges_file` (merges.txt) and `merges` (a list)")
    if merges_file is not None:
        merges_file = os.fspath(merges_file)
        if not os.path.isfile(merges_file):
            raise ValueError(f"merges_file {merges_file!r} does not exist or is not a file")
        with open(merges_file, encoding="utf-8") as f:
            lines = f.read().split("\n")
        source = f"merges_file {merges_file!r}"
        first = 1 if lines and lines[0].startswith("#version") else 0
        merges = [(first + i + 1, line) for i, line in enumerate(lines[first:]) if line.strip()]
    else:
        source = "merges"
        merges = [(i + 1, m if isinstance(m, str) else " ".join(m)) for i, m in enumerate(merges)]
    pairs = []
    for line_number, line in merges:
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"{source}: line {line_number} is {line!r}; expected two tokens separated by one space")
        pairs.append(tuple(parts))
    return pairs, source


@keras.saving.register_keras_serializable(package="kzoo")
class RobertaTokenizer(StringTokenizer):
    """Byte-level BPE with GPT-2's rules and RoBERTa's special tokens, as TensorFlow ops.

    Maps strings to token ids without special tokens; `RobertaPacker` (which
    `BertPacker.from_tokenizer` returns for this tokenizer) adds `<s>`, `</s>` and pads with
    `<pad>`. See the module docstring for the pipeline. Special-token strings in the text
    (`<mask>`) are not recognised: they are text.

    Args:
        vocab_file: path of vocab.json ({token: id}).
        merges_file: path of merges.txt (one "a b" merge a line, by rank; a "#version" first
            line is skipped).
        add_prefix_space: put a space before a text that does not start with one (the first
            word is then encoded like the others); RoBERTa's default is False.
        vocabulary: the {token: id} dict instead of `vocab_file`.
        merges: the merges instead of `merges_file`: "a b" strings or (a, b) pairs, by rank.
        bos_token, eos_token, pad_token, unk_token, mask_token: the special tokens.

    Example:
    >>> tokenizer = RobertaTokenizer(vocabulary={"Ġ": 0, "h": 1, "i": 2, "hi": 3, "Ġhi": 4, "<unk>": 5},
    ...                              merges=["h i", "Ġ hi"], unk_token="<unk>")
    >>> tokenizer(["hi hi", "ih"]).to_list()
    [[3, 4], [2, 1]]
    """

    packer_layout = "roberta"

    def __init__(self, vocab_file=None, merges_file=None, add_prefix_space=False, vocabulary=None, merges=None,
                 bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>", mask_token="<mask>",
                 **kwargs):
        super().__init__(**kwargs)
        vocabulary, vocab_source = _read_vocab(vocab_file, vocabulary)
        pairs, merges_source = _read_merges(merges_file, merges)
        for rank, (a, b) in enumerate(pairs):
            if a not in vocabulary or b not in vocabulary:
                missing = a if a not in vocabulary else b
                raise ValueError(f"{merges_source}: merge {rank + 1} ({a} {b}) uses {missing!r}, which is not in "
                                 f"{vocab_source}")
        self.vocabulary = vocabulary
        self.merges = [f"{a} {b}" for a, b in pairs]
        self.add_prefix_space = add_prefix_space
        self._special_tokens = {"bos": bos_token, "cls": bos_token, "eos": eos_token, "sep": eos_token,
                                "pad": pad_token, "unk": unk_token, "mask": mask_token}
        self._source = vocab_source
        tokens = list(vocabulary)
        self._token_table = _StringTable(tokens, [vocabulary[t] for t in tokens], vocab_source)
        # Pairs are keyed "a b"; the first of duplicate merges keeps its rank, as in a dict.
        first_rank = {}
        for rank, merge in enumerate(self.merges):
            first_rank.setdefault(merge, rank)
        self._merge_table = _StringTable(list(first_rank), list(first_rank.values()), merges_source)
        size = max(vocabulary.values()) + 1
        by_id = [""] * size
        for token, index in vocabulary.items():
            by_id[index] = token
        self._by_id = tuple(by_id)
        byte_map = bytes_to_unicode()
        with tf.init_scope():
            self._byte_symbols = tf.constant([byte_map[b] for b in range(256)])
        self._unk_id = vocabulary.get(unk_token, -1)
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True
        self.built = True

    # -- vocabulary --------------------------------------------------------------------------
    @property
    def vocab_size(self):
        """One more than the largest id (vocab.json's ids may leave holes)."""
        return len(self._by_id)

    def token_to_id(self, token):
        """The id of `token`; a `KeyError` naming it if it is not in the vocabulary."""
        if token not in self.vocabulary:
            raise KeyError(f"token {token!r} is not in the vocabulary of {self.name}")
        return self.vocabulary[token]

    def _special_token_id(self, role):
        token = self._special_tokens[role]
        if token not in self.vocabulary:
            raise ValueError(f"the vocabulary of {self.name} ({self._source}) lacks the special token {token!r}")
        return self.vocabulary[token]

    @property
    def cls_token_id(self):
        return self._special_token_id("cls")

    @property
    def sep_token_id(self):
        return self._special_token_id("sep")

    @property
    def bos_token_id(self):
        return self._special_token_id("bos")

    @property
    def eos_token_id(self):
        return self._special_token_id("eos")

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
    def special_token_ids(self):
        """Sorted ids of the special tokens in the vocabulary (never produced by `call`)."""
        return sorted({self.vocabulary[t] for r, t in self._special_tokens.items()
                       if r != "unk" and t in self.vocabulary})

    def ids_to_tokens(self, ids):
        """Token strings (byte-level symbols, "Ġ" for a space) of int ids, any shape."""
        return tf.gather(tf.constant(self._by_id), ids)

    # -- tokenization ------------------------------------------------------------------------
    def pre_tokenize(self, inputs):
        """GPT-2's pre-tokenisation: strings [n] -> words [n, (words)] (UTF-8, before the byte map)."""
        return self._pre_tokenize(tf.convert_to_tensor(inputs, tf.string))

    def _pre_tokenize(self, text):
        classes = _gpt2_classes()
        space = classes["space"]
        text = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD)
        if self.add_prefix_space:
            # As `tokenizers`: not in front of a leading space, and an empty text stays empty.
            text = tf.where(tf.strings.regex_full_match(text, "(?s)(?: .*)?"), text, tf.strings.join([" ", text]))
        # tf_text.regex_split stops at U+0000: escape it (and the escape character) with two
        # "other" characters, which leave every word boundary where it was.
        text = tf.strings.regex_replace(text, _ESCAPE, _ESCAPE + _ESCAPED_ESCAPE)
        text = tf.strings.regex_replace(text, "\\x00", _ESCAPE + _ESCAPED_NUL)
        runs = tf_text.regex_split(text, space + "+", space + "+")  # [n, (runs)], whitespace or not
        flat = runs.flat_values
        is_space = tf.strings.regex_full_match(flat, space + "+")
        row = _row_ids(runs.row_splits)
        at_end = tf.equal(tf.range(tf.size(flat, tf.int64)), tf.gather(runs.row_splits[1:], row) - 1)
        last_char = tf.strings.regex_replace(flat, "(?s)^.*(.)$", r"\1")
        head = tf.strings.regex_replace(flat, "(?s).$", "")
        # A whitespace run followed by text: all but its last character, then that character
        # alone unless it is " ", which prefixes the text.
        gives_space = tf.logical_and(tf.logical_and(is_space, tf.logical_not(at_end)), tf.equal(last_char, " "))
        follows_space = tf.logical_and(tf.concat([[False], gives_space], 0)[:-1], tf.logical_not(is_space))
        text_word = tf.strings.join([tf.where(follows_space, " ", ""), flat])
        inner = tf.logical_and(is_space, tf.logical_not(at_end))
        first = tf.where(is_space, tf.where(at_end, flat, head), text_word)
        second = last_char
        keep_first = tf.logical_or(tf.logical_not(inner), tf.not_equal(head, ""))
        keep_second = tf.logical_and(inner, tf.logical_not(gives_space))
        strings = tf.reshape(tf.stack([first, second], axis=1), [-1])
        keep = tf.reshape(tf.stack([keep_first, keep_second], axis=1), [-1])
        rows = tf.reshape(tf.stack([row, row], axis=1), [-1])
        chunks = tf.RaggedTensor.from_value_rowids(tf.boolean_mask(strings, keep), tf.boolean_mask(rows, keep),
                                                   nrows=runs.nrows())
        pattern = (f"'s|'t|'re|'ve|'m|'ll|'d| ?{classes['letter']}+| ?{classes['number']}+| ?{classes['other']}+")
        words = tf_text.regex_split(chunks.flat_values, pattern, pattern)  # whitespace chunks stay whole
        words = words.with_flat_values(_unescape(words.flat_values))
        return chunks.with_flat_values(words).merge_dims(1, 2)

    def _bpe(self, words):
        """Distinct byte-mapped words [w] -> symbols [w, (pieces)] after all merges."""
        byte_strings = tf.strings.bytes_split(words)
        values = tf.reshape(tf.io.decode_raw(byte_strings.flat_values, tf.uint8), [-1])
        symbols = tf.gather(self._byte_symbols, tf.cast(values, tf.int32))
        splits = byte_strings.row_splits
        num_words = tf.shape(splits, out_type=tf.int64)[0] - 1

        def step(symbols, splits, _):
            n = tf.shape(symbols, out_type=tf.int64)[0]
            word = _row_ids(splits)
            position = tf.range(n)
            is_last = tf.equal(position, tf.gather(splits[1:], word) - 1)
            right = tf.concat([symbols, [""]], 0)[1:]
            rank = self._merge_table.lookup(tf.strings.join([symbols, right], separator=" "), _NO_RANK)
            rank = tf.where(is_last, _NO_RANK, rank)
            best = tf.math.unsorted_segment_min(rank, word, num_words)
            match = tf.logical_and(tf.equal(rank, tf.gather(best, word)), rank < _NO_RANK)
            # Runs of matches ("a a a" with the pair "a a") merge at even offsets only.
            starts = tf.logical_and(match, tf.logical_not(tf.concat([[False], match], 0)[:-1]))
            run = tf.maximum(tf.cumsum(tf.cast(starts, tf.int64)) - 1, 0)
            start_position = tf.concat([tf.boolean_mask(position, starts), [0]], 0)  # never empty
            offset = position - tf.gather(start_position, run)
            take = tf.logical_and(match, tf.equal(offset % 2, 0))
            merged = tf.where(take, tf.strings.join([symbols, right]), symbols)
            keep = tf.logical_not(tf.concat([[False], take], 0)[:-1])
            new_lengths = tf.math.unsorted_segment_sum(tf.cast(keep, tf.int64), word, num_words)
            new_splits = tf.concat([[0], tf.cumsum(new_lengths)], 0)
            return tf.boolean_mask(merged, keep), new_splits, tf.reduce_any(match)

        symbols, splits, _ = tf.while_loop(
            lambda symbols, splits, go: go, step, (symbols, splits, tf.constant(True)),
            shape_invariants=(tf.TensorShape([None]), tf.TensorShape([None]), tf.TensorShape([])))
        return tf.RaggedTensor.from_row_splits(symbols, splits, validate=False)

    def tokenize_words(self, words):
        """Words [batch, (words)] -> ids [batch, (words), (pieces)], each word with a space in front
        (as transformers' RoBERTa tokenizers with `add_prefix_space=True, is_split_into_words=True`,
        which word-level tasks need): "Ġword", as the word is inside running text."""
        words = words if isinstance(words, tf.RaggedTensor) else tf.convert_to_tensor(words, tf.string)
        if isinstance(words, tf.RaggedTensor):
            spaced = words.with_flat_values(tf.strings.join([" ", words.flat_values]))
        else:
            spaced = tf.strings.join([" ", words])
        return self(spaced)

    def _tokenize_rows(self, inputs):
        words = self._pre_tokenize(inputs)
        distinct, index = tf.unique(words.flat_values, out_idx=tf.int64)
        pieces = self._bpe(distinct)
        ids = pieces.with_flat_values(self._token_table.lookup(pieces.flat_values, self._unk_id))
        return words.with_flat_values(tf.gather(ids, index)).merge_dims(1, 2)

    def get_config(self):
        config = super().get_config()
        config.update({"vocabulary": dict(self.vocabulary), "merges": list(self.merges),
                       "add_prefix_space": self.add_prefix_space,
                       **{f"{role}_token": self._special_tokens[role]
                          for role in ("bos", "eos", "pad", "unk", "mask")}})
        return config
