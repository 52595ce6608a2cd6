"""Token ids with the character span of every token in the ORIGINAL text, in the graph, for every
kzoo tokenizer: what extractive QA needs to answer with exact characters of the context.

`pieces_with_offsets(tokenizer, text)` returns `(ids, char_begin, char_end)`, int32 RaggedTensors
[batch, (pieces)]. Offsets are in characters (Unicode code points, end exclusive) of
`clean_text(tokenizer, text)`: the text after the tokenizer's own handling of invalid UTF-8
(`BertTokenizer` drops invalid bytes, as the official `convert_to_unicode(errors="ignore")`; the
SentencePiece and BPE tokenizers replace them with U+FFFD). For valid UTF-8 they are Python `str`
indices into the text. Every span lies inside the text, begin <= end, and spans never go backwards.

Per family:

- WordPiece (`BertTokenizer`): the official steps (clean-up, CJK spacing, lower case, NFD, accent
  stripping) run on each character alone, so every normalized byte knows the character it came from;
  words and WordPieces are then cut as `BertTokenizer` cuts them, with byte offsets, mapped back to
  characters. A piece covers from the first to the last original character whose normalized form it
  contains (a word longer than `max_input_chars_per_word`, one `[UNK]`, covers the word). The ids equal
  `tokenizer(text)`. (Lower-casing runs on the whole text, so Greek final sigma follows it; should that
  change the number of characters, never with TF 2.21's Unicode data, the row is lower-cased character
  by character.)
- Byte-level BPE (`RobertaTokenizer`): exact. GPT-2's pre-tokenization words concatenate to the text
  (after the optional prefix space), so their byte offsets are cumulative lengths; a piece of n symbols
  covers exactly n bytes of its word. Byte offsets become characters by rounding outwards: a piece that
  holds only some bytes of a character covers the whole character (so the pieces of one character share
  it, as transformers' fast tokenizers report). Then, as transformers' `trim_offsets=True`: the space
  that starts a word (" word") is not part of its first piece's span, and a piece that is only that
  space ("Ġ" before a piece that does not merge with it) takes the span of the next piece; pieces of a
  word that is all whitespace (str.isspace) keep their raw span. The ids equal `tokenizer(text)`.
- SentencePiece (`AlbertTokenizer`, `XLMRobertaTokenizer`, `DebertaV2Tokenizer`): the text is split at runs of whitespace
  into words with their offsets, and each word is tokenized alone (what `tokenizer.tokenize_words`
  does). Whitespace here is each `str.isspace` character the tokenizer itself treats as a space
  ("a{c}b" gives the ids of "a b", measured once per tokenizer): ALBERT's preprocessing makes all of
  them spaces; the test XLM-R model's SentencePiece normalizer deletes U+000B and U+001C..U+001F
  and keeps U+0085 as a character, so those stay inside the word. SentencePiece never lets a piece
  cross whitespace, so this equals tokenizing the whole text up to preprocessing that looks across
  words (`tests/text/test_alignment.py` measures it: the same ids on every real sentence and hard
  string there). Inside a word, the pieces get exact character spans
  when the word maps one to one onto its characters: no piece is `<unk>`, the pieces with their leading
  "▁" removed concatenate to the word's preprocessed form (ALBERT: `AlbertTokenizer.preprocess` of the
  word; XLM-R normalizes inside SentencePiece, so there the concatenation itself is the preprocessed
  form, as for DeBERTa, whose `split_by_punct` parts are encoded inside the word) and that form has as
  many characters as the word; the k-th character of the form is then the
  k-th character of the word (e.g. "Café" -> "cafe"). A piece that is only "▁" takes the span of the
  next piece of its word. Every piece of any other word (e.g. "ﬁnance" -> "finance", an `<unk>`) gets
  the whole word's span.

Example:
>>> ids, begin, end = pieces_with_offsets(tokenizer, tf.constant(["Hello world"]))  # doctest: +SKIP
>>> [text[b:e] for b, e in zip(begin[0].numpy(), end[0].numpy())]  # doctest: +SKIP
['Hello', 'world']
"""

import weakref

import tensorflow as tf
import tensorflow_text as tf_text

from kzoo.text.bpe import RobertaTokenizer
from kzoo.text.sentencepiece import SPIECE_UNDERLINE, AlbertTokenizer, SentencePieceTokenizer
from kzoo.text.tokenizer import BertTokenizer, _char_classes, _re2_class, _whitespace_class

_INT32_MAX = 2**31 - 1

__all__ = ["clean_text", "pieces_with_offsets", "wordpieces_with_offsets"]


def clean_text(tokenizer, text):
    """The text the offsets of `pieces_with_offsets` index: invalid UTF-8 dropped (`BertTokenizer`)
    or replaced by U+FFFD (the other tokenizers), as the tokenizer itself does."""
    text = tf.convert_to_tensor(text, tf.string)
    if isinstance(tokenizer, BertTokenizer):
        return tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="ignore")
    return tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD)


def pieces_with_offsets(tokenizer, text):
    """Token ids of each text with the character span of each token in the text.

    Args:
        tokenizer: a `BertTokenizer`, `AlbertTokenizer`, `XLMRobertaTokenizer`, `DebertaV2Tokenizer` (or
            another `SentencePieceTokenizer`) or `RobertaTokenizer`.
        text: tf.string [batch].

    Returns:
        (ids, char_begin, char_end): int32 RaggedTensors [batch, (pieces)]; see the module docstring
        for the ids and the spans of each family.
    """
    text = tf.convert_to_tensor(text, tf.string)
    if isinstance(tokenizer, BertTokenizer):
        return wordpieces_with_offsets(tokenizer, text)
    if isinstance(tokenizer, RobertaTokenizer):
        return _byte_bpe_with_offsets(tokenizer, text)
    if isinstance(tokenizer, SentencePieceTokenizer):
        return _sentencepiece_with_offsets(tokenizer, text)
    raise TypeError(f"pieces_with_offsets: no alignment for a {type(tokenizer).__name__}; expected BertTokenizer, "
                    "a SentencePieceTokenizer (AlbertTokenizer, XLMRobertaTokenizer) or RobertaTokenizer")


# -- helpers ----------------------------------------------------------------------------------


def _row_positions(ragged):
    """For each flat value of a RaggedTensor [rows, (n)]: (its row, its index within the row)."""
    rows = tf.cast(ragged.value_rowids(), tf.int32)
    within = tf.range(tf.shape(ragged.flat_values, out_type=tf.int32)[0]) - tf.gather(
        tf.cast(ragged.row_starts(), tf.int32), rows)
    return rows, within


def _row_cumsum(ragged):
    """Inclusive cumulative sum of int32 values within each row of a RaggedTensor [rows, (n)] (flat)."""
    values = tf.cast(ragged.flat_values, tf.int32)
    total = tf.cumsum(values)
    rows, _ = _row_positions(ragged)
    base = tf.gather(tf.concat([[0], total], 0), tf.cast(ragged.row_starts(), tf.int32))
    return total - tf.gather(base, rows)


def _bytes_to_chars(text, begin, end):
    """Byte offsets (RaggedTensors [batch, (n)], end exclusive) into UTF-8 text -> code point offsets,
    rounded outwards: a begin inside a character moves to its start, an end inside one to its end."""
    _, char_starts = tf.strings.unicode_decode_with_offsets(text, "UTF-8")
    starts_dense = tf.cast(char_starts, tf.int32).to_tensor(_INT32_MAX)
    begin_dense = begin.to_tensor(0)
    end_dense = end.to_tensor(0)
    # number of characters starting at or before `begin`, minus one; starting before `end`
    char_begin = tf.maximum(tf.searchsorted(starts_dense, begin_dense, side="right", out_type=tf.int32) - 1, 0)
    char_end = tf.searchsorted(starts_dense, end_dense, side="left", out_type=tf.int32)
    mask = tf.sequence_mask(begin.row_lengths(), maxlen=tf.shape(begin_dense)[1])
    return (tf.RaggedTensor.from_row_splits(tf.boolean_mask(char_begin, mask), begin.row_splits),
            tf.RaggedTensor.from_row_splits(tf.boolean_mask(char_end, mask), begin.row_splits))


# -- WordPiece ---------------------------------------------------------------------------------


def wordpieces_with_offsets(tokenizer, text):
    """`pieces_with_offsets` for a `BertTokenizer` (see the module docstring): ids equal to
    `tokenizer(text)`, spans in code points of the text with invalid UTF-8 bytes dropped."""
    classes = _char_classes()
    text = clean_text(tokenizer, text)
    chars = tf.strings.unicode_split(text, "UTF-8")
    flat = chars.flat_values
    if tokenizer.lower_case:
        # U+0130 is the one letter whose lower case has two characters ("i" + U+0307, a mark
        # that accent stripping deletes): "I" gives the same result and keeps the alignment
        whole = tf.strings.unicode_split(tokenizer._lower(tf.strings.regex_replace(text, "\u0130", "I")), "UTF-8")
        rows, within = _row_positions(chars)
        same = tf.gather(tf.equal(whole.row_lengths(), chars.row_lengths()), rows)
        index = tf.cast(tf.gather(whole.row_starts(), rows), tf.int32) + within
        whole_flat = tf.concat([whole.flat_values, [""]], 0)  # never empty
        index = tf.where(same, index, tf.shape(whole_flat)[0] - 1)
        flat = tf.where(same, tf.gather(whole_flat, index), tokenizer._lower(flat))
    flat = tf.strings.regex_replace(flat, classes["drop"], "")
    flat = tf.strings.regex_replace(flat, classes["space"], " ")
    flat = tf.strings.regex_replace(flat, classes["cjk"], r" \0 ")
    if tokenizer.lower_case:
        flat = tf_text.normalize_utf8(flat, "NFD")
        flat = tf.strings.regex_replace(flat, classes["marks"], "")
    # byte end (exclusive) of each character's normalized form in the normalized row text
    cumulative = tf.cumsum(tf.strings.length(flat))
    base = tf.gather(tf.concat([[0], cumulative], 0), tf.cast(chars.row_starts(), tf.int32))
    rows, _ = _row_positions(chars)
    char_ends = chars.with_flat_values(cumulative - tf.gather(base, rows))
    normalized = tf.strings.reduce_join(chars.with_flat_values(flat), axis=1)

    punctuation = classes["punctuation"]
    words, word_begin, word_end = tf_text.regex_split_with_offsets(
        normalized, f"(?: |{punctuation})", punctuation)
    word_values = words.flat_values
    too_long = tf.strings.length(word_values, unit="UTF8_CHAR") > tokenizer.max_input_chars_per_word
    pieces, piece_begin, piece_end = tokenizer._wordpiece.tokenize_with_offsets(
        tf.where(too_long, tokenizer.unk_token, word_values))
    piece_rows, _ = _row_positions(pieces)
    long_piece = tf.gather(too_long, piece_rows)
    word_begin_flat = tf.cast(word_begin.flat_values, tf.int32)
    word_len = tf.cast(word_end.flat_values, tf.int32) - word_begin_flat
    piece_begin = tf.where(long_piece, 0, tf.cast(piece_begin.flat_values, tf.int32))
    piece_end = tf.where(long_piece, tf.gather(word_len, piece_rows), tf.cast(piece_end.flat_values, tf.int32))
    absolute_begin = tf.gather(word_begin_flat, piece_rows) + piece_begin
    absolute_end = tf.gather(word_begin_flat, piece_rows) + piece_end

    ids = words.with_flat_values(pieces).merge_dims(1, 2)
    # byte offsets -> characters, row by row
    ends_dense = char_ends.to_tensor(_INT32_MAX)
    begin_dense = ids.with_flat_values(absolute_begin).to_tensor(0)
    last_dense = ids.with_flat_values(absolute_end - 1).to_tensor(0)
    start_char = tf.searchsorted(ends_dense, begin_dense, side="right", out_type=tf.int32)
    end_char = tf.searchsorted(ends_dense, last_dense, side="right", out_type=tf.int32) + 1
    mask = tf.sequence_mask(ids.row_lengths(), maxlen=tf.shape(begin_dense)[1])
    starts = tf.RaggedTensor.from_row_splits(tf.boolean_mask(start_char, mask), ids.row_splits)
    ends = tf.RaggedTensor.from_row_splits(tf.boolean_mask(end_char, mask), ids.row_splits)
    return tf.cast(ids, tf.int32), starts, ends


# -- byte-level BPE ----------------------------------------------------------------------------


def _byte_bpe_with_offsets(tokenizer, text):
    text = clean_text(tokenizer, text)
    shift = tf.zeros_like(text, tf.int32)
    if tokenizer.add_prefix_space:  # the space `_pre_tokenize` puts in front is not in the text
        shift = tf.where(tf.strings.regex_full_match(text, "(?s)(?: .*)?"), 0, 1)
    words = tokenizer._pre_tokenize(text)  # [batch, (words)]; they concatenate to the (prefixed) text
    word_values = words.flat_values
    word_end = _row_cumsum(words.with_flat_values(tf.strings.length(word_values)))
    word_begin = word_end - tf.strings.length(word_values)
    # the space that starts a word which is not all whitespace is no part of its first piece's span
    blank = tf.strings.regex_full_match(word_values, "(?s)" + _whitespace_class() + "*")
    content_begin = word_begin + tf.cast(
        tf.logical_and(tf.strings.regex_full_match(word_values, "(?s) .*"), tf.logical_not(blank)), tf.int32)

    distinct, index = tf.unique(word_values, out_idx=tf.int64)
    symbols = tokenizer._bpe(distinct)  # [distinct words, (pieces)]: byte symbols, one a byte
    distinct_ids = symbols.with_flat_values(tokenizer._token_table.lookup(symbols.flat_values, tokenizer._unk_id))
    distinct_lengths = symbols.with_flat_values(tf.strings.length(symbols.flat_values, unit="UTF8_CHAR"))
    piece_ids = tf.gather(distinct_ids, index)  # [words, (pieces)]
    piece_lengths = tf.gather(distinct_lengths, index)
    piece_end = _row_cumsum(piece_lengths)
    piece_begin = piece_end - tf.cast(piece_lengths.flat_values, tf.int32)
    piece_word, _ = _row_positions(piece_lengths)
    begin = tf.gather(word_begin, piece_word) + piece_begin
    end = tf.gather(word_begin, piece_word) + piece_end
    begin = tf.maximum(begin, tf.gather(content_begin, piece_word))
    # a piece that is only the leading space: the next piece's span (same word: the word has more)
    empty = begin >= end
    begin = tf.where(empty, tf.concat([begin[1:], [0]], 0), begin)
    end = tf.where(empty, tf.concat([end[1:], [0]], 0), end)

    ids = words.with_flat_values(piece_ids).merge_dims(1, 2)
    row_shift = tf.gather(shift, tf.cast(ids.value_rowids(), tf.int32))
    begin = ids.with_flat_values(tf.maximum(begin - row_shift, 0))
    end = ids.with_flat_values(tf.maximum(end - row_shift, 0))
    char_begin, char_end = _bytes_to_chars(text, begin, end)
    return tf.cast(ids, tf.int32), char_begin, char_end


# -- SentencePiece -----------------------------------------------------------------------------


_BOUNDARIES = weakref.WeakKeyDictionary()


def _word_boundary_class(tokenizer):
    """RE2 class of the whitespace characters (`str.isspace`) that the tokenizer treats as a space:
    "a{c}b" gives the ids of "a b". (ALBERT turns them all into spaces; XLM-R's SentencePiece
    normalizer deletes U+000B and U+001C..U+001F and keeps U+0085 (on the test model),
    which must then stay inside the word.) Measured once per tokenizer."""
    if tokenizer not in _BOUNDARIES:
        spaces = [cp for cp in range(0x110000) if chr(cp).isspace()]
        with tf.init_scope():
            ids = tokenizer(tf.constant(["a b"] + [f"a{chr(cp)}b" for cp in spaces])).to_list()
        _BOUNDARIES[tokenizer] = _re2_class([cp for cp, row in zip(spaces, ids[1:]) if row == ids[0]] or [0x20])
    return _BOUNDARIES[tokenizer]


def _sentencepiece_with_offsets(tokenizer, text):
    text = clean_text(tokenizer, text)
    # tf_text.regex_split stops at U+0000: split a copy with U+0001 (no whitespace either) in its
    # place, then cut the words out of the text itself
    words, word_begin, word_end = tf_text.regex_split_with_offsets(
        tf.strings.regex_replace(text, "\\x00", "\x01"), _word_boundary_class(tokenizer) + "+")
    word_begin = words.with_flat_values(tf.cast(word_begin.flat_values, tf.int32))
    word_end = words.with_flat_values(tf.cast(word_end.flat_values, tf.int32))
    word_rows, _ = _row_positions(words)
    word_values = tf.strings.substr(tf.gather(text, word_rows), word_begin.flat_values,
                                    word_end.flat_values - word_begin.flat_values)
    words = words.with_flat_values(word_values)
    word_begin, word_end = _bytes_to_chars(text, word_begin, word_end)
    piece_ids = tf.cast(tokenizer(word_values), tf.int32)  # [words, (pieces)]: each word alone
    pieces = tokenizer.ids_to_tokens(piece_ids.flat_values)
    surface = tf.strings.regex_replace(pieces, "^" + SPIECE_UNDERLINE, "")
    lengths = piece_ids.with_flat_values(tf.strings.length(surface, unit="UTF8_CHAR"))
    joined = tf.strings.reduce_join(piece_ids.with_flat_values(surface), axis=1)
    exact = tf.equal(tf.strings.length(joined, unit="UTF8_CHAR"), tf.strings.length(word_values, unit="UTF8_CHAR"))
    if isinstance(tokenizer, AlbertTokenizer):
        exact = tf.logical_and(exact, tf.equal(joined, tokenizer.preprocess(word_values)))
    unknown = tf.reduce_any(tf.equal(piece_ids, tokenizer.unk_token_id), axis=1)
    exact = tf.logical_and(exact, tf.logical_not(unknown))

    piece_word, within = _row_positions(piece_ids)
    piece_end = _row_cumsum(lengths)
    piece_begin = piece_end - lengths.flat_values
    # a piece that is only "▁": the span of the next piece of its word (the word's own if none)
    empty = tf.equal(lengths.flat_values, 0)
    has_next = tf.less(within + 1, tf.gather(tf.cast(piece_ids.row_lengths(), tf.int32), piece_word))
    piece_begin = tf.where(empty & has_next, tf.concat([piece_begin[1:], [0]], 0), piece_begin)
    piece_end = tf.where(empty & has_next, tf.concat([piece_end[1:], [0]], 0), piece_end)
    exact_piece = tf.logical_and(tf.gather(exact, piece_word), tf.logical_or(tf.logical_not(empty), has_next))
    first = tf.gather(word_begin.flat_values, piece_word)
    last = tf.gather(word_end.flat_values, piece_word)
    begin = tf.where(exact_piece, first + piece_begin, first)
    end = tf.where(exact_piece, first + piece_end, last)

    ids = words.with_flat_values(piece_ids).merge_dims(1, 2)
    return ids, ids.with_flat_values(begin), ids.with_flat_values(end)
