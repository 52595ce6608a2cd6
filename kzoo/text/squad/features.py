"""SQuAD features: sliding windows of `[CLS] query [SEP] doc [SEP]`, as google-research/bert's
`convert_examples_to_features`, tokenized with kzoo's in-graph tokenizers.

`BertTokenizer` (WordPiece) follows the official code exactly: whitespace doc tokens, each
WordPiece-tokenized alone, answers mapped through them and narrowed by `improve_answer_span`.
The other tokenizers (SentencePiece: `AlbertTokenizer`, `XLMRobertaTokenizer`; byte-level BPE:
`RobertaTokenizer`) align by characters instead: the context is tokenized with the character span
of every token (`kzoo.text.alignment.pieces_with_offsets`), the training answer's token span is
the tokens that overlap its characters (`char_span_to_token_span`), windows are packed in the
family's layout (RoBERTa / XLM-R: `<s> query </s></s> doc </s>`, one token type, padded with
`<pad>`), and each feature keeps its tokens' character spans, so `postprocess` answers with exact
characters of the context."""

import dataclasses

import numpy as np
import tensorflow as tf

from kzoo.text.alignment import pieces_with_offsets
from kzoo.text.tokenizer import BertTokenizer

_FIRST_UNIQUE_ID = 1000000000  # the official counter's start
_TOKENIZE_CHUNK = 256  # rows per tokenizer call


@dataclasses.dataclass
class SquadFeature:
    """One window of one example, packed for the encoder.

    Attributes:
        unique_id: id of the feature (the key of `postprocess` results).
        example_index: index of its example in the list given to `convert_examples_to_features`.
        doc_span_index: index of the window within the example.
        tokens: WordPiece tokens, `[CLS] query [SEP] doc [SEP]`, unpadded.
        token_to_orig_map: position in `tokens` -> index in the example's `doc_tokens`, for the
            doc part.
        token_is_max_context: position in `tokens` -> whether this window gives the token its
            most context (so predictions starting there count only here).
        input_word_ids: int32 [max_seq_length], padded with 0.
        input_mask: int32 [max_seq_length], 1 on `tokens`.
        input_type_ids: int32 [max_seq_length], 1 on the doc part and its `[SEP]`.
        start_position: training label, position of the answer start in `tokens`; 0 (`[CLS]`)
            when the answer is not inside this window or the question is impossible.
        end_position: training label, position of the answer end (inclusive).
        is_impossible: the example has no answer.
        token_char_spans: tokenizers other than WordPiece: position in `tokens` -> (begin, end)
            character span (end exclusive) in the example's `context_text`, for the doc part;
            None for WordPiece (whose answers go through `get_final_text`).
    """

    unique_id: int
    example_index: int
    doc_span_index: int
    tokens: list
    token_to_orig_map: dict
    token_is_max_context: dict
    input_word_ids: np.ndarray
    input_mask: np.ndarray
    input_type_ids: np.ndarray
    start_position: int = None
    end_position: int = None
    is_impossible: bool = False
    token_char_spans: dict = None


def _ragged_to_lists(ragged):
    """A RaggedTensor [rows, (words), (pieces)] -> nested Python lists, via numpy splits."""
    pieces = ragged.flat_values.numpy().tolist()
    word_splits = ragged.values.row_splits.numpy().tolist()
    row_splits = ragged.row_splits.numpy().tolist()
    words = [pieces[a:b] for a, b in zip(word_splits[:-1], word_splits[1:])]
    return [words[a:b] for a, b in zip(row_splits[:-1], row_splits[1:])]


def tokenize_words(tokenizer, rows):
    """WordPiece ids of each word of each row: list of lists of str -> lists of lists of ids.

    One tokenizer call per chunk of rows (a RaggedTensor [rows, (words)]), not one per word.
    """
    result = []
    for begin in range(0, len(rows), _TOKENIZE_CHUNK):
        chunk = rows[begin : begin + _TOKENIZE_CHUNK]
        words = tf.RaggedTensor.from_row_lengths(
            tf.constant([w for row in chunk for w in row], tf.string),
            [len(row) for row in chunk],
        )
        result.extend(_ragged_to_lists(tokenizer(words)))
    return result


def _tokenize_texts(tokenizer, texts):
    """WordPiece ids of each whole text."""
    return [sum(row, []) for row in tokenize_words(tokenizer, [[t] for t in texts])]


def improve_answer_span(doc_ids, start, end, answer_ids):
    """The official `_improve_answer_span`: the first sub-span of doc_ids[start:end + 1] equal to
    the tokenized answer (e.g. "1895" inside "(1895-1943)."), else (start, end)."""
    for new_start in range(start, end + 1):
        for new_end in range(end, new_start - 1, -1):
            if doc_ids[new_start : new_end + 1] == answer_ids:
                return new_start, new_end
    return start, end


def doc_spans(num_tokens, max_tokens_for_doc, doc_stride):
    """(start, length) windows over `num_tokens` doc tokens, each shifted by at most
    `doc_stride`, the last one ending at the last token."""
    spans, start = [], 0
    while start < num_tokens:
        length = min(num_tokens - start, max_tokens_for_doc)
        spans.append((start, length))
        if start + length == num_tokens:
            break
        start += min(length, doc_stride)
    return spans


def is_max_context(spans, span_index, position):
    """The official `_check_is_max_context`: whether window `span_index` has the best score
    min(left context, right context) + 0.01 * length for doc token `position` (first best wins)."""
    best_score, best_index = None, None
    for index, (start, length) in enumerate(spans):
        end = start + length - 1
        if not start <= position <= end:
            continue
        score = min(position - start, end - position) + 0.01 * length
        if best_score is None or score > best_score:
            best_score, best_index = score, index
    return span_index == best_index


def _pad(values, length):
    array = np.zeros(length, np.int32)
    array[: len(values)] = values
    return array


def _answer_token_span(example, orig_to_tok, doc_ids, answer_ids):
    """(start, end) of the training answer in the doc's WordPiece tokens."""
    start = orig_to_tok[example.start_position]
    if example.end_position < len(example.doc_tokens) - 1:
        end = orig_to_tok[example.end_position + 1] - 1
    else:
        end = len(doc_ids) - 1
    return improve_answer_span(doc_ids, start, end, answer_ids)


def _example_features(example, query_ids, word_pieces, answer_ids, tokenizer, max_seq_length,
                      doc_stride, is_training):
    """Yields the feature fields (a dict, without ids) of each window of one example."""
    tok_to_orig, orig_to_tok, doc_ids = [], [], []
    for index, pieces in enumerate(word_pieces):
        orig_to_tok.append(len(doc_ids))
        tok_to_orig.extend([index] * len(pieces))
        doc_ids.extend(pieces)
    if is_training and not example.is_impossible:
        answer_start, answer_end = _answer_token_span(example, orig_to_tok, doc_ids, answer_ids)
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    doc_offset = len(query_ids) + 2
    spans = doc_spans(len(doc_ids), max_seq_length - len(query_ids) - 3, doc_stride)
    for span_index, (start, length) in enumerate(spans):
        ids = [cls_id, *query_ids, sep_id, *doc_ids[start : start + length], sep_id]
        positions = range(doc_offset, doc_offset + length)
        fields = {
            "doc_span_index": span_index,
            "tokens": [tokenizer.vocabulary[i] for i in ids],
            "token_to_orig_map": {p: tok_to_orig[start + i] for i, p in enumerate(positions)},
            "token_is_max_context": {
                p: is_max_context(spans, span_index, start + i) for i, p in enumerate(positions)
            },
            "input_word_ids": _pad(ids, max_seq_length),
            "input_mask": _pad([1] * len(ids), max_seq_length),
            "input_type_ids": _pad([0] * doc_offset + [1] * (length + 1), max_seq_length),
            "is_impossible": example.is_impossible,
        }
        if is_training:
            fields["start_position"] = fields["end_position"] = 0
            if not example.is_impossible and start <= answer_start and answer_end < start + length:
                fields["start_position"] = answer_start - start + doc_offset
                fields["end_position"] = answer_end - start + doc_offset
        yield fields


def char_span_to_token_span(begins, ends, char_start, char_end):
    """The tokens that overlap the characters [char_start, char_end): (first, last) token index,
    inclusive, or None when no token does. `begins` / `ends` are the tokens' character spans
    (`pieces_with_offsets`), in text order."""
    first = next((i for i, end in enumerate(ends) if end > char_start), None)
    last = next((i for i in range(len(begins) - 1, -1, -1) if begins[i] < char_end), None)
    if first is None or last is None or last < first:
        return None
    return first, last


def _context_offsets(tokenizer, contexts):
    """(ids, begins, ends) lists of each context, `pieces_with_offsets` in chunks."""
    result = []
    for begin in range(0, len(contexts), _TOKENIZE_CHUNK):
        ids, starts, ends = pieces_with_offsets(tokenizer, tf.constant(contexts[begin : begin + _TOKENIZE_CHUNK]))
        result.extend(zip(ids.to_list(), starts.to_list(), ends.to_list()))
    return result


def _char_to_word(context):
    """Per character of `context`, the index of its whitespace doc token (`split_context`'s rule;
    leading whitespace -> 0)."""
    from kzoo.text.squad.reading import split_context

    return [max(w, 0) for w in split_context(context)[1]]


def _tokens_by_id(tokenizer):
    """The token string of every id (`RobertaTokenizer.vocabulary` is a {token: id} dict)."""
    vocabulary = tokenizer.vocabulary
    if isinstance(vocabulary, dict):
        tokens = [""] * tokenizer.vocab_size
        for token, index in vocabulary.items():
            tokens[index] = token
        return tokens
    return list(vocabulary)


def _aligned_features(examples, tokenizer, max_seq_length, doc_stride, max_query_length, is_training):
    """`convert_examples_to_features` for tokenizers that align by characters (not WordPiece)."""
    roberta = getattr(tokenizer, "packer_layout", "bert") == "roberta"
    specials = 4 if roberta else 3
    if max_seq_length - max_query_length - specials < 1:
        raise ValueError(f"max_seq_length {max_seq_length} leaves no room for the doc after a query "
                         f"of max_query_length {max_query_length} and {specials} special tokens")
    for index, example in enumerate(examples):
        if example.context_text is None:
            raise ValueError(f"example {index} ({example.qas_id}) has no context_text, which a "
                             f"{type(tokenizer).__name__} aligns answers to; read it with read_squad_examples")
        if is_training and not example.is_impossible and example.answer_start_char is None:
            raise ValueError(f"example {index} ({example.qas_id}) has no answer position; "
                             "read it with is_training=True")
    queries = _tokenize_texts(tokenizer, [e.question_text for e in examples])
    contexts = list(dict.fromkeys(e.context_text for e in examples))
    aligned = dict(zip(contexts, _context_offsets(tokenizer, contexts)))
    word_of_char = {c: _char_to_word(c) for c in contexts}
    cls_id, sep_id, pad_id = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id
    token_of_id = _tokens_by_id(tokenizer)
    features = []
    for example_index, example in enumerate(examples):
        query_ids = queries[example_index][:max_query_length]
        doc_ids, begins, ends = aligned[example.context_text]
        char_words = word_of_char[example.context_text]
        tok_to_orig = [char_words[min(b, len(char_words) - 1)] if char_words else 0 for b in begins]
        answer = None
        if is_training and not example.is_impossible:
            start = example.answer_start_char
            answer = char_span_to_token_span(begins, ends, start, start + len(example.orig_answer_text))
        doc_offset = len(query_ids) + specials - 1
        spans = doc_spans(len(doc_ids), max_seq_length - len(query_ids) - specials, doc_stride)
        for span_index, (start, length) in enumerate(spans):
            middle = [sep_id, sep_id] if roberta else [sep_id]
            ids = [cls_id, *query_ids, *middle, *doc_ids[start : start + length], sep_id]
            positions = range(doc_offset, doc_offset + length)
            type_ids = [0] * len(ids) if roberta else [0] * doc_offset + [1] * (length + 1)
            input_word_ids = np.full(max_seq_length, pad_id, np.int32)
            input_word_ids[: len(ids)] = ids
            fields = {
                "doc_span_index": span_index,
                "tokens": [token_of_id[i] for i in ids],
                "token_to_orig_map": {p: tok_to_orig[start + i] for i, p in enumerate(positions)},
                "token_is_max_context": {
                    p: is_max_context(spans, span_index, start + i) for i, p in enumerate(positions)
                },
                "token_char_spans": {p: (begins[start + i], ends[start + i]) for i, p in enumerate(positions)},
                "input_word_ids": input_word_ids,
                "input_mask": _pad([1] * len(ids), max_seq_length),
                "input_type_ids": _pad(type_ids, max_seq_length),
                "is_impossible": example.is_impossible,
            }
            if is_training:
                fields["start_position"] = fields["end_position"] = 0
                if answer is not None and start <= answer[0] and answer[1] < start + length:
                    fields["start_position"] = answer[0] - start + doc_offset
                    fields["end_position"] = answer[1] - start + doc_offset
            unique_id = _FIRST_UNIQUE_ID + len(features) + 1
            features.append(SquadFeature(unique_id=unique_id, example_index=example_index, **fields))
    return features


def convert_examples_to_features(examples, tokenizer, max_seq_length, doc_stride, max_query_length,
                                 is_training):
    """Packs `SquadExample`s into windows with the official `convert_examples_to_features` rules.

    The query keeps its first `max_query_length` tokens; windows of `max_seq_length - len(query)
    - 3` doc tokens (`- 4` in RoBERTa's layout) advance by `doc_stride`. Training labels point at
    the answer when it lies wholly inside the window, else at `[CLS]`. WordPiece: each whitespace
    doc token is tokenized alone and the answer is narrowed by `improve_answer_span`, as the
    official code; other tokenizers: the context is tokenized with character spans and the answer
    is the tokens overlapping its characters (see the module docstring; the examples need
    `context_text` and, for training, `answer_start_char`, which `read_squad_examples` sets).
    Questions, answers and the doc tokens of all examples go through `tokenizer` in a few batched
    calls.

    Args:
        examples: list of `SquadExample` (from `read_squad_examples`).
        tokenizer: a `kzoo.text.BertTokenizer` (the vocabulary's `[CLS]`/`[SEP]` are used), or an
            `AlbertTokenizer`, `XLMRobertaTokenizer` or `RobertaTokenizer` (their special tokens
            and layout).
        max_seq_length: tokens per feature, special tokens included; features are padded to it.
        doc_stride: the most doc tokens by which consecutive windows are shifted.
        max_query_length: the most tokens kept of the question.
        is_training: set `start_position` / `end_position` (needs training examples).

    Returns:
        list of `SquadFeature`, unique ids counting up from 1000000001.
    """
    if isinstance(tokenizer, BertTokenizer) and max_seq_length - max_query_length - 3 < 1:
        raise ValueError(f"max_seq_length {max_seq_length} leaves no room for the doc after a query "
                         f"of max_query_length {max_query_length} and 3 special tokens")
    if doc_stride < 1:
        raise ValueError(f"doc_stride must be >= 1, got {doc_stride}")
    if not isinstance(tokenizer, BertTokenizer):
        return _aligned_features(examples, tokenizer, max_seq_length, doc_stride, max_query_length, is_training)
    queries = _tokenize_texts(tokenizer, [e.question_text for e in examples])
    docs = {id(e.doc_tokens): e.doc_tokens for e in examples}  # examples of a paragraph share it
    doc_pieces = dict(zip(docs, tokenize_words(tokenizer, list(docs.values()))))
    answers = [None] * len(examples)
    if is_training:
        answers = _tokenize_texts(tokenizer, [e.orig_answer_text or "" for e in examples])
    features = []
    for example_index, example in enumerate(examples):
        if is_training and example.start_position is None:
            raise ValueError(f"example {example_index} ({example.qas_id}) has no answer position; "
                             "read it with is_training=True")
        for fields in _example_features(
            example, queries[example_index][:max_query_length], doc_pieces[id(example.doc_tokens)],
            answers[example_index], tokenizer, max_seq_length, doc_stride, is_training,
        ):
            unique_id = _FIRST_UNIQUE_ID + len(features) + 1
            features.append(SquadFeature(unique_id=unique_id, example_index=example_index, **fields))
    return features


def features_to_dataset(features, is_training, batch_size, shuffle=False, seed=None,
                        drop_remainder=False):
    """A batched `tf.data.Dataset` of features for `Model.fit` / `Model.predict`.

    Args:
        features: list of `SquadFeature`.
        is_training: yield training labels (features need `start_position` / `end_position`).
        batch_size: features per batch.
        shuffle: shuffle all features each epoch (training).
        seed: shuffle seed.
        drop_remainder: drop a last, smaller batch.

    Returns:
        training: ({"input_word_ids", "input_mask", "input_type_ids"},
        {"start_positions", "end_positions"}) batches; prediction: (inputs, unique_ids) batches,
        so `Model.predict` ignores the ids and the loop that collects results can read them.
    """
    if not features:
        raise ValueError("features is empty")
    inputs = {
        name: np.stack([getattr(f, name) for f in features])
        for name in ("input_word_ids", "input_mask", "input_type_ids")
    }
    if is_training:
        if any(f.start_position is None for f in features):
            raise ValueError("features lack start_position; build them with is_training=True")
        labels = {
            "start_positions": np.array([f.start_position for f in features], np.int32),
            "end_positions": np.array([f.end_position for f in features], np.int32),
        }
    else:
        labels = np.array([f.unique_id for f in features], np.int64)
    dataset = tf.data.Dataset.from_tensor_slices((inputs, labels))
    if shuffle:
        dataset = dataset.shuffle(len(features), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size, drop_remainder=drop_remainder)
