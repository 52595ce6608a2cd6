"""CoNLL token-per-line files and first-piece tagging pipelines (NER, chunking, POS).

A tagger predicts one tag per token piece (wordpiece, SentencePiece piece, BPE token), but the
data and the metrics are per word. This module labels each word's first piece with the word's
tag and masks every other position (`[CLS]`/`<s>`, `[SEP]`/`</s>`, padding, continuation pieces)
with `IGNORE_LABEL` (-100), the convention of the original BERT NER experiments (and of
transformers' `word_ids()` recipe with `label_all_tokens=False`);
`keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=IGNORE_LABEL)` then
averages the loss over words only. `word_predictions` reads the predictions back at the first
pieces.

Any kzoo tokenizer works (WordPiece, SentencePiece, byte-level BPE): each word is tokenized with
the tokenizer's `tokenize_words`, i.e. alone, as it would be after whitespace in running text
(RoBERTa: with a space in front, as transformers' `add_prefix_space=True,
is_split_into_words=True`), and packed in the tokenizer's family layout
(`BertPacker.from_tokenizer`: `[CLS] a [SEP]` or RoBERTa's `<s> a </s>`).

Example:
>>> sentences, tags = read_conll("train.txt")  # doctest: +SKIP
>>> tag_names = tag_vocabulary(tags)  # doctest: +SKIP
>>> data = tagging_dataset(sentences, tags, tokenizer, 128, tag_names, 32)  # doctest: +SKIP
>>> model.fit(data.dataset)  # doctest: +SKIP
"""

import os
import re
from typing import NamedTuple

import numpy as np
import tensorflow as tf
from absl import logging

from kzoo.layers.heads import IGNORE_LABEL
from kzoo.text.packing import BertPacker

DOCSTART = "-DOCSTART-"
_TAG = re.compile(r"O|[BI]-\S+")


def _decoded_lines(path):
    """The lines of `path` as str; a ValueError naming the line of any non-UTF-8 byte."""
    try:
        with open(path, "rb") as f:
            raw_lines = f.read().splitlines()
    except OSError as e:
        raise ValueError(f"{path}: cannot read: {e.strerror}") from e
    lines = []
    for number, raw in enumerate(raw_lines, start=1):
        try:
            lines.append(raw.decode("utf-8-sig" if number == 1 else "utf-8"))
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}:{number}: not valid UTF-8 (byte {e.start}): {raw[:60]!r}") from e
    return lines


def read_conll(path, token_column=0, tag_column=-1):
    """Reads a CoNLL file: one token a line, whitespace-separated columns, blank lines between sentences.

    `-DOCSTART-` lines (document separators in CoNLL-2003) are skipped. Tags must be `O`,
    `B-TYPE` or `I-TYPE` (IOB1 or IOB2/BIO); the reader does not convert between schemes.

    Args:
        path: the file.
        token_column: index of the token column.
        tag_column: index of the tag column (-1: the last, as in CoNLL-2003's 4 columns or a
            2-column token/tag file).

    Returns:
        (sentences, tags): lists (one entry a sentence) of lists of str, of equal shapes.

    Raises:
        ValueError naming the file and line for unreadable or undecodable input, a line with
        too few columns, a tag that is not `O`, `B-X` or `I-X`, or a file without sentences.
    """
    path = os.fspath(path)
    needed = max(2, *(c + 1 if c >= 0 else -c for c in (token_column, tag_column)))
    sentences, tags, words, word_tags = [], [], [], []
    for number, line in enumerate(_decoded_lines(path), start=1):
        columns = line.split()
        if not columns or columns[0] == DOCSTART:
            if words:
                sentences.append(words)
                tags.append(word_tags)
                words, word_tags = [], []
            continue
        if len(columns) < needed:
            raise ValueError(f"{path}:{number}: expected at least {needed} whitespace-separated columns, "
                             f"found {len(columns)}: {line!r}")
        tag = columns[tag_column]
        if not _TAG.fullmatch(tag):
            raise ValueError(f"{path}:{number}: tag {tag!r} is not O, B-TYPE or I-TYPE")
        words.append(columns[token_column])
        word_tags.append(tag)
    if words:
        sentences.append(words)
        tags.append(word_tags)
    if not sentences:
        raise ValueError(f"{path}: no sentences (empty file or only -DOCSTART- lines)")
    return sentences, tags


def tag_vocabulary(tags):
    """Tag names for ids: "O" (always present, id 0) then the other tags of `tags`, sorted.

    Args:
        tags: lists (sentences) of tag strings.
    """
    return ["O"] + sorted({tag for sentence in tags for tag in sentence} - {"O"})


class TaggingData(NamedTuple):
    """What `tagging_dataset` returns.

    Attributes:
        dataset: a `tf.data.Dataset` of (features, labels) batches, or of features alone
            when no tags were given. Features are the int32 `BertPacker` dict, labels int32
            [batch, L]: the tag id on each word's first piece, `IGNORE_LABEL` elsewhere.
        first_piece_positions: one int32 array per sentence, one entry per word: the position
            of its first piece in the packed sequence, or -1 for a word cut by truncation.
        truncated_sentences: how many sentences lost trailing words to `seq_length`.
        dropped_words: how many words those sentences lost.
    """

    dataset: tf.data.Dataset
    first_piece_positions: list
    truncated_sentences: int
    dropped_words: int


def tokenize_words(tokenizer, words):
    """Piece ids of each word, tokenized alone as a word of running text: words, a string Tensor
    [n] or RaggedTensor [batch, (words)] -> int32 ids [n, (pieces)] / [batch, (words), (pieces)].

    The tokenizer's `tokenize_words` (every kzoo tokenizer has one: RoBERTa's puts a space in front
    of each word); a tokenizer without one is called on the words as they are."""
    if hasattr(tokenizer, "tokenize_words"):
        return tokenizer.tokenize_words(words)
    return tokenizer(words)


def split_words(tokenizer, strings):
    """Strings [batch] -> words [batch, (words)]: the tokenizer's `split_words` (BERT: the
    official `BasicTokenizer`'s words; the other families: the runs between whitespace), or
    `basic_tokenize` for a tokenizer without it."""
    if hasattr(tokenizer, "split_words"):
        return tokenizer.split_words(strings)
    return tokenizer.basic_tokenize(strings)


def _word_pieces(words, tokenizer):
    """Piece ids of each word: (flat ids, row splits); a word without pieces becomes the unknown token."""
    pieces = tokenize_words(tokenizer, tf.constant(words, tf.string))
    values, splits = pieces.flat_values.numpy(), pieces.row_splits.numpy()
    old_lengths = np.diff(splits)
    new_splits = np.concatenate([[0], np.cumsum(np.maximum(old_lengths, 1))])
    new_values = np.full(new_splits[-1], tokenizer.unk_token_id, np.int32)
    word_of_piece = np.repeat(np.arange(len(old_lengths)), old_lengths)
    new_values[new_splits[word_of_piece] + np.arange(len(values)) - splits[word_of_piece]] = values
    return new_values, new_splits


def _tag_ids(tags, tag_names, sentences):
    """Tag ids per sentence; a ValueError naming the sentence for a length mismatch or unknown tag."""
    index = {name: i for i, name in enumerate(tag_names)}
    ids = []
    for number, (words, sentence_tags) in enumerate(zip(sentences, tags)):
        if len(words) != len(sentence_tags):
            raise ValueError(f"sentence {number} has {len(words)} words but {len(sentence_tags)} tags")
        unknown = [tag for tag in sentence_tags if tag not in index]
        if unknown:
            raise ValueError(f"sentence {number}: tag {unknown[0]!r} is not in tag_names {tag_names}")
        ids.append(np.array([index[tag] for tag in sentence_tags], np.int32))
    return ids


def _align(piece_lengths, budget):
    """Words kept within `budget` pieces and their first-piece offsets (from 0) in the segment."""
    ends = np.cumsum(piece_lengths)
    kept = int(np.searchsorted(ends, budget, side="right"))
    return kept, ends[:kept] - piece_lengths[:kept]


def tagging_dataset(sentences, tags, tokenizer, seq_length, tag_names, batch_size, shuffle=False, seed=None,
                    dynamic_length=True, drop_remainder=False):
    """Batches of packed word sequences with first-piece labels.

    Tokenisation runs once, eagerly, here (so truncation can be counted and the word to
    piece alignment returned); the dataset packs ragged piece ids per batch. Each word is
    tokenised on its own (`tokenize_words`), so its first piece is known; a word that yields
    no pieces (e.g. only control characters) becomes one unknown token (`[UNK]`, `<unk>`) so it
    keeps a label position. Sentences longer than `seq_length - 2` pieces lose whole trailing
    words; the count is logged and returned.

    Args:
        sentences: lists (sentences) of word strings, e.g. from `read_conll`.
        tags: lists of tag strings parallel to `sentences`, or None for prediction data.
        tokenizer: a kzoo tokenizer (`kzoo.text.BertTokenizer`, `AlbertTokenizer`,
            `XLMRobertaTokenizer`, `RobertaTokenizer`, ...); its family's packer packs the pieces.
        seq_length: the most pieces per packed example, the two special tokens included.
        tag_names: tag strings; a tag's id is its index (see `tag_vocabulary`).
        batch_size: examples per batch.
        shuffle: reshuffle every epoch (seeded by `seed`). Leave False for data whose
            predictions go to `word_predictions`, which assumes the input order.
        seed: the shuffle seed.
        dynamic_length: pad each batch to its own longest example (True) or to `seq_length`.
        drop_remainder: drop the last partial batch (a static batch dimension, for XLA/TPU).

    Returns:
        A `TaggingData`.
    """
    if not sentences or any(not words for words in sentences):
        raise ValueError("tagging_dataset needs a non-empty list of non-empty sentences")
    tag_ids = _tag_ids(tags, tag_names, sentences) if tags is not None else None
    values, word_splits = _word_pieces([word for words in sentences for word in words], tokenizer)
    piece_lengths = np.diff(word_splits)
    sentence_splits = np.cumsum([0] + [len(words) for words in sentences])
    budget = seq_length - 2
    ids, labels, positions = [], [], []
    for number, (start, end) in enumerate(zip(sentence_splits[:-1], sentence_splits[1:])):
        kept, offsets = _align(piece_lengths[start:end], budget)
        ids.append(values[word_splits[start]:word_splits[start + kept]])
        positions.append(np.concatenate([offsets + 1, np.full(end - start - kept, -1)]).astype(np.int32))
        if tag_ids is not None:
            row = np.full(len(ids[-1]), IGNORE_LABEL, np.int32)
            row[offsets] = tag_ids[number][:kept]
            labels.append(row)
    dropped = [int(np.sum(p < 0)) for p in positions]
    truncated, dropped_words = sum(d > 0 for d in dropped), sum(dropped)
    if truncated:
        logging.warning("tagging_dataset: %d of %d sentences exceed %d pieces; %d trailing words dropped",
                        truncated, len(sentences), budget, dropped_words)
    dataset = _packed_dataset(ids, labels if tag_ids is not None else None, tokenizer, seq_length, batch_size,
                              shuffle, seed, dynamic_length, drop_remainder)
    return TaggingData(dataset, positions, truncated, dropped_words)


def _ragged(rows):
    return tf.RaggedTensor.from_row_lengths(np.concatenate(rows), [len(row) for row in rows])


def _packed_dataset(ids, labels, tokenizer, seq_length, batch_size, shuffle, seed, dynamic_length,
                    drop_remainder=False):
    """The tf.data pipeline of `tagging_dataset` over already truncated piece rows."""
    packer = BertPacker.from_tokenizer(tokenizer, seq_length, dynamic_length=dynamic_length)
    ds = tf.data.Dataset.from_tensor_slices(_ragged(ids) if labels is None else (_ragged(ids), _ragged(labels)))
    if shuffle:
        ds = ds.shuffle(len(ids), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)

    def pack(pieces, piece_labels=None):
        features = packer(pieces)
        if piece_labels is None:
            return features
        edge = tf.fill([piece_labels.nrows(), 1], IGNORE_LABEL)
        padded = tf.concat([edge, piece_labels, edge], axis=1)
        shape = [None, None if dynamic_length else seq_length]
        return features, padded.to_tensor(IGNORE_LABEL, shape=shape)

    return ds.map(pack, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def word_predictions(predictions, first_piece_positions, fill_id=0):
    """Per-word tag ids from per-piece predictions.

    Args:
        predictions: logits or probabilities [n, L, num_tags], or tag ids [n, L], in the
            order of `first_piece_positions`; or a list of such per-batch arrays (batches of
            a `dynamic_length` dataset differ in L).
        first_piece_positions: `TaggingData.first_piece_positions`.
        fill_id: the id given to words cut by truncation (0 is "O" in `tag_vocabulary`).

    Returns:
        One int array per sentence, one id per word of the original sentence.
    """
    batches = predictions if isinstance(predictions, (list, tuple)) else [predictions]
    rows = [row for batch in batches for row in np.asarray(batch)]
    if len(rows) != len(first_piece_positions):
        raise ValueError(f"{len(rows)} rows of predictions for {len(first_piece_positions)} sentences")
    words = []
    for row, positions in zip(rows, first_piece_positions):
        ids = row.argmax(-1) if row.ndim == 2 else row
        words.append(np.where(positions >= 0, ids[np.maximum(positions, 0)], fill_id).astype(np.int32))
    return words
