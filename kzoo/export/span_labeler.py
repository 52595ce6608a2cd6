"""Export a SQuAD span labeler as a SavedModel: raw question and context in, answer text out.

Everything `run_squad.py` does around the model runs in the graph (TensorFlow and tf-text ops
only, so TF Serving and a process that imports just `tensorflow` and `tensorflow_text` load it),
for every kzoo tokenizer (WordPiece, SentencePiece: ALBERT and XLM-R, byte-level BPE: RoBERTa):

1. the question is tokenized (`tokenizer(question)`) and cut to `max_query_length` tokens;
2. the context is tokenized keeping for every token the span of ORIGINAL context characters it
   came from (`kzoo.text.alignment.pieces_with_offsets`, which documents the spans per family;
   WordPiece: the same ids as `tokenizer(context)`, SentencePiece: each whitespace word alone);
3. doc-stride windows (`kzoo.text.squad.doc_spans`: `max_seq_length - len(query) - 3` doc
   tokens each, `- 4` in RoBERTa's layout, shifted by `doc_stride`) of all examples form one
   batch in the family's layout (`[CLS] query [SEP] window [SEP]`, type ids 1 on the window and
   its `[SEP]`; RoBERTa / XLM-R: `<s> query </s></s> window </s>`, type ids 0), padded to
   `max_seq_length` with the tokenizer's pad id, like the training features;
4. the model gives start/end logits per window; a span (start, end) is a candidate, as in the
   official `write_predictions` (`kzoo.text.squad.postprocess`), when start and end are doc
   positions, the window is the max-context window of the start token, end >= start,
   end - start + 1 <= `max_answer_length`, and (unless `n_best_size` is None) start is among the
   window's `n_best_size` largest start logits and end among its largest end logits; the best
   candidate of an example (largest start + end logit; the earlier window on ties) is the answer;
5. SQuAD 2.0: the null score is the smallest `[CLS]` start + end logit over the windows; the
   answer is empty when null score - best score > `null_score_diff_threshold`.

The answer text is exactly the context's characters from the first character of the start token
to the last character of the end token, so `context[start_char:end_char] == answer` always holds
(in Python code points), whitespace and case as in the context. For WordPiece this differs from
the official text on purpose: the official code detokenizes the WordPieces and projects them onto
the whitespace tokens with the `get_final_text` heuristic (falling back to whole whitespace
tokens, and joining tokens with single spaces); for ASCII text with single spaces the two agree
whenever `get_final_text` succeeds. For the other families `kzoo.text.squad.postprocess` answers
with the same characters.
"""

import tensorflow as tf

from kzoo.export.archive import export_archive
from kzoo.export.precision import serving_copy
from kzoo.export.versions import write_version
from kzoo.text.alignment import clean_text, pieces_with_offsets, wordpieces_with_offsets


def _row_positions(ragged):
    """For each flat value of a RaggedTensor [rows, (n)]: (its row, its index within the row)."""
    rows = tf.cast(ragged.value_rowids(), tf.int32)
    within = tf.range(tf.shape(ragged.flat_values, out_type=tf.int32)[0]) - tf.gather(
        tf.cast(ragged.row_starts(), tf.int32), rows)
    return rows, within


def context_wordpieces(tokenizer, text):
    """WordPiece ids of each text with the character span of each piece in the text: the
    `BertTokenizer` case of `kzoo.text.alignment.pieces_with_offsets` (which see).

    Args:
        tokenizer: a `kzoo.text.BertTokenizer`.
        text: tf.string [batch].

    Returns:
        (ids, starts, ends): int32 RaggedTensors [batch, (pieces)]; `starts`/`ends` are code
        point offsets (end exclusive) into the text after invalid UTF-8 bytes are dropped.
    """
    return wordpieces_with_offsets(tokenizer, text)


def _windows(num_doc, max_doc, doc_stride):
    """Per example the number of windows (at least 1, an empty one for an empty doc) and the
    shift between windows, as `kzoo.text.squad.doc_spans`."""
    stride = tf.minimum(max_doc, doc_stride)
    extra = tf.maximum(num_doc - max_doc, 0)
    count = 1 + (extra + stride - 1) // stride
    return count, stride


def _is_max_context(starts, lengths, example_windows, window_index, doc_positions):
    """The official `_check_is_max_context` for every window and doc position.

    starts, lengths: [windows]; example_windows: [windows, K] the flat indices of the windows of
    each window's example (-1 padding); window_index: [windows] the window's index among them;
    doc_positions: [windows, L] doc-token positions. Scores in float64 like the Python original.
    """
    valid = example_windows >= 0
    safe = tf.maximum(example_windows, 0)
    other_start = tf.gather(starts, safe)[:, tf.newaxis, :]  # [W, 1, K]
    other_length = tf.gather(lengths, safe)[:, tf.newaxis, :]
    other_end = other_start + other_length - 1
    position = doc_positions[:, :, tf.newaxis]  # [W, L, 1]
    inside = (other_start <= position) & (position <= other_end) & valid[:, tf.newaxis, :]
    score = tf.cast(tf.minimum(position - other_start, other_end - position), tf.float64) + 0.01 * tf.cast(
        other_length, tf.float64)
    score = tf.where(inside, score, tf.constant(-float("inf"), tf.float64))
    best = tf.argmax(score, axis=-1, output_type=tf.int32)  # the first best window
    return tf.equal(best, window_index[:, tf.newaxis])


def _top_mask(logits, k):
    """[W, L] True on the `k` largest logits of each row (ties: lower index first)."""
    if k is None:
        return tf.ones_like(logits, tf.bool)
    k = min(k, logits.shape[-1])
    indices = tf.math.top_k(logits, k=k, sorted=True).indices
    return tf.reduce_any(tf.one_hot(indices, logits.shape[-1], on_value=True, off_value=False, dtype=tf.bool),
                         axis=1)


def export_span_labeler(model, tokenizer, export_root, max_seq_length=384, doc_stride=128, max_query_length=64,
                        max_answer_length=30, version_2_with_negative=False, null_score_diff_threshold=0.0,
                        version=None, n_best_size=20, compute_dtype=None):
    """Writes `export_root/<version>/`, a SavedModel answering questions on raw text.

    Signature `serving_default`:
      inputs `question`, `context`: tf.string [batch];
      outputs
        - `answer` tf.string [batch]: `context[start_char:end_char]` (see the module docstring
          for how this differs from the official `get_final_text` text), "" for no answer;
        - `start_char`, `end_char` int32 [batch]: code point offsets of the answer in the
          context (end exclusive; after the tokenizer's handling of invalid UTF-8, which
          `BertTokenizer` drops and the others replace with U+FFFD, i.e. Python `str` indices
          for valid UTF-8); -1 and -1 for no answer;
        - `score` float32 [batch]: start + end logit of the best non-null span, also when the
          null answer wins (-inf if no span is possible, e.g. an empty context);
        - `null_score` float32 [batch] (only with `version_2_with_negative`): the smallest
          `[CLS]` start + end logit over the example's windows.
      No answer: SQuAD 2.0 when `null_score - score > null_score_diff_threshold`, and in both
      versions when no span is possible (an empty context; the official v1 code says "empty").

    Args:
        model: a span labeler `keras.Model` (`bert_span_labeler`): encoder inputs ->
            {"start_logits", "end_logits"} [batch, seq].
        tokenizer: the tokenizer used in training: `kzoo.text.BertTokenizer`, `AlbertTokenizer`,
            `XLMRobertaTokenizer` or `RobertaTokenizer` (its `packer_layout` picks the layout).
        export_root: the model's base path; versions are integer folders under it.
        max_seq_length: tokens per window, special tokens included (windows are padded to it).
        doc_stride: the most doc tokens between the starts of consecutive windows.
        max_query_length: the most tokens kept of the question.
        max_answer_length: the most tokens in an answer.
        version_2_with_negative: allow the empty answer (SQuAD 2.0) and output `null_score`.
        null_score_diff_threshold: answer "" when null score - best score exceeds it.
        version: integer version; default: the next free one.
        n_best_size: spans start and end among each window's `n_best_size` largest start and
            end logits, as the official code (which looks no further); None: every span.
        compute_dtype: None (the model as it computes), "float32" or "bfloat16": the encoder's
            projections multiply in bfloat16, everything else in float32, outputs unchanged in
            dtype (`kzoo.export.precision.serving_copy`; the SavedModel stores those kernels in
            bfloat16). For CPUs with AVX512-BF16 / AMX, TPUs and recent GPUs.

    Returns:
        The path of the version folder written.
    """
    model = serving_copy(model, compute_dtype)
    roberta = getattr(tokenizer, "packer_layout", "bert") == "roberta"
    specials = 4 if roberta else 3
    if max_seq_length - max_query_length - specials < 1:
        raise ValueError(f"max_seq_length {max_seq_length} leaves no room for the doc after a query "
                         f"of max_query_length {max_query_length} and {specials} special tokens")
    if doc_stride < 1 or max_answer_length < 1:
        raise ValueError(f"doc_stride and max_answer_length must be >= 1, got {doc_stride}, {max_answer_length}")
    cls_id, sep_id, pad_id = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id
    neg_inf = tf.constant(-float("inf"), tf.float64)

    def serve(question, context):
        query = tf.cast(tokenizer(question), tf.int32)[:, :max_query_length]
        doc_ids, doc_starts, doc_ends = pieces_with_offsets(tokenizer, context)
        query_len = tf.cast(query.row_lengths(), tf.int32)
        num_doc = tf.cast(doc_ids.row_lengths(), tf.int32)
        max_doc = max_seq_length - query_len - specials
        count, stride = _windows(num_doc, max_doc, doc_stride)

        # one row per window
        per_example = tf.ragged.range(count)  # [batch, (windows)]
        example, _ = _row_positions(per_example)
        k = tf.cast(per_example.flat_values, tf.int32)
        win_start = k * tf.gather(stride, example)
        win_length = tf.maximum(tf.minimum(tf.gather(max_doc, example), tf.gather(num_doc, example) - win_start), 0)
        flat_begin = tf.cast(tf.gather(doc_ids.row_starts(), example), tf.int32) + win_start
        token_index = tf.ragged.range(flat_begin, flat_begin + win_length)  # into doc_ids.flat_values
        window_ids = tf.gather(doc_ids.flat_values, token_index)
        window_query = tf.gather(query, example)
        num_windows = tf.shape(example)[0]
        cls = tf.RaggedTensor.from_tensor(tf.fill([num_windows, 1], cls_id))
        sep = tf.RaggedTensor.from_tensor(tf.fill([num_windows, 1], sep_id))
        middle = [sep, sep] if roberta else [sep]  # "</s></s>" between RoBERTa's segments
        word_ids = tf.concat([cls, window_query, *middle, window_ids, sep], axis=1)
        doc_offset = tf.gather(query_len, example) + specials - 1
        shape = [None, max_seq_length]
        positions = tf.range(max_seq_length)[tf.newaxis, :]
        type_ids = tf.cast((positions >= doc_offset[:, tf.newaxis])
                           & (positions < (doc_offset + win_length + 1)[:, tf.newaxis]), tf.int32)
        inputs = {
            "input_word_ids": word_ids.to_tensor(pad_id, shape=shape),
            "input_mask": tf.ones_like(word_ids).to_tensor(0, shape=shape),
            "input_type_ids": tf.zeros_like(type_ids) if roberta else type_ids,
        }
        outputs = model(inputs, training=False)
        start_logits = tf.cast(outputs["start_logits"], tf.float32)
        end_logits = tf.cast(outputs["end_logits"], tf.float32)

        # candidate masks, [W, L]
        relative = positions - doc_offset[:, tf.newaxis]
        is_doc = (relative >= 0) & (relative < win_length[:, tf.newaxis])
        doc_position = win_start[:, tf.newaxis] + relative
        example_windows = tf.RaggedTensor.from_row_splits(
            tf.range(num_windows), tf.cast(per_example.row_splits, tf.int32))
        example_windows = tf.gather(example_windows, example).to_tensor(-1)
        # one more padding column, so argmax never reduces an empty axis (a batch of zero)
        example_windows = tf.pad(example_windows, [[0, 0], [0, 1]], constant_values=-1)
        max_context = _is_max_context(win_start, win_length, example_windows, k, doc_position)
        start_ok = is_doc & max_context & _top_mask(start_logits, n_best_size)
        end_ok = is_doc & _top_mask(end_logits, n_best_size)

        # banded scores [W, L, A]: start i, end i + d
        lengths = tf.range(max_answer_length)
        end_index = positions[:, :, tf.newaxis] + lengths[tf.newaxis, tf.newaxis, :]  # [1, L, A]
        in_range = end_index < max_seq_length
        end_index = tf.minimum(end_index, max_seq_length - 1)
        end_index = tf.broadcast_to(end_index, [num_windows, max_seq_length, max_answer_length])
        start64, end64 = tf.cast(start_logits, tf.float64), tf.cast(end_logits, tf.float64)
        scores = start64[:, :, tf.newaxis] + tf.gather(end64, end_index, batch_dims=1)
        valid = start_ok[:, :, tf.newaxis] & tf.gather(end_ok, end_index, batch_dims=1) & in_range
        scores = tf.reshape(tf.where(valid, scores, neg_inf), [num_windows, -1])
        best_flat = tf.argmax(scores, axis=-1, output_type=tf.int32)
        window_best = tf.reduce_max(scores, axis=-1)
        best_start = best_flat // max_answer_length
        best_end = best_start + best_flat % max_answer_length

        # best window of each example (the first on ties)
        by_example = tf.RaggedTensor.from_row_splits(window_best, tf.cast(per_example.row_splits, tf.int32))
        by_example = tf.pad(by_example.to_tensor(neg_inf), [[0, 0], [0, 1]], constant_values=neg_inf)
        chosen_in_example = tf.argmax(by_example, axis=-1, output_type=tf.int32)
        chosen = tf.cast(per_example.row_starts(), tf.int32) + chosen_in_example
        best_score = tf.gather(window_best, chosen)
        has_answer = best_score > neg_inf
        # doc positions -> context characters
        doc_row_start = tf.cast(doc_ids.row_starts(), tf.int32)
        flat_start = (doc_row_start + tf.gather(win_start, chosen) + tf.gather(best_start, chosen)
                      - tf.gather(doc_offset, chosen))
        flat_end = flat_start + tf.gather(best_end, chosen) - tf.gather(best_start, chosen)
        pieces = tf.shape(doc_starts.flat_values)[0]  # index of the -1 sentinel appended below
        last = tf.maximum(pieces - 1, 0)
        starts_flat = tf.concat([doc_starts.flat_values, [-1]], 0)
        ends_flat = tf.concat([doc_ends.flat_values, [-1]], 0)
        start_char = tf.gather(starts_flat, tf.where(has_answer, tf.minimum(flat_start, last), pieces))
        end_char = tf.gather(ends_flat, tf.where(has_answer, tf.minimum(flat_end, last), pieces))
        start_char = tf.where(has_answer, start_char, -1)
        end_char = tf.where(has_answer, end_char, -1)
        result = {"score": tf.cast(best_score, tf.float32)}
        if version_2_with_negative:
            null = tf.RaggedTensor.from_row_splits(start64[:, 0] + end64[:, 0],
                                                   tf.cast(per_example.row_splits, tf.int32))
            null_score = tf.reduce_min(null, axis=1)
            is_null = null_score - best_score > null_score_diff_threshold
            start_char = tf.where(is_null, -1, start_char)
            end_char = tf.where(is_null, -1, end_char)
            result["null_score"] = tf.cast(null_score, tf.float32)
        clean = clean_text(tokenizer, context)
        answer = tf.strings.substr(clean, tf.maximum(start_char, 0), tf.maximum(end_char - start_char, 0),
                                   unit="UTF8_CHAR")
        result.update(answer=tf.where(start_char >= 0, answer, ""), start_char=start_char, end_char=end_char)
        return result

    signature = [tf.TensorSpec([None], tf.string, name="question"), tf.TensorSpec([None], tf.string, name="context")]

    def write(path):
        archive = export_archive(model, *tokenizer.resources)  # each variable stored once
        archive.add_endpoint("serving_default", serve, input_signature=signature)
        archive.write_out(path, verbose=False)

    return write_version(export_root, write, version)
