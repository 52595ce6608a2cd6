"""Export a token tagger (NER, chunking, POS) as a SavedModel that takes raw sentences."""

import tensorflow as tf

from kzoo.data.conll import split_words, tokenize_words
from kzoo.export.archive import export_archive, traced_once
from kzoo.export.precision import serving_copy
from kzoo.export.versions import write_version
from kzoo.text import BertPacker


def export_tagger(model, tokenizer, tag_names, export_root, seq_length=128, version=None, fill_tag="O",
                  compute_dtype=None):
    """Writes `export_root/<version>/`, a SavedModel TF Serving loads as-is.

    Words and labels follow `kzoo.data.conll`: the sentence is split into words by the
    tokenizer's `split_words` (`BertTokenizer`: its basic tokenization,
    `BertTokenizer.basic_tokenize`: whitespace and punctuation splitting, after its cleaning,
    lower-casing and accent stripping for uncased vocabularies, so the words returned are the
    normalised ones; ALBERT, XLM-R, RoBERTa: the runs of characters between whitespace,
    unchanged, as the words of a CoNLL file), each word is tokenized on its own
    (`tokenize_words`; RoBERTa puts a space in front; a word with no pieces becomes one
    unknown token), packed in the tokenizer's family layout (`BertPacker.from_tokenizer`), and
    a word's tag is the argmax of the logits at its first piece; this is what
    `tagging_dataset` + `word_predictions` give on those words.

    Truncation: as `tagging_dataset`, whole trailing words that do not fit in
    `seq_length - 2` pieces are not run through the model; they are still returned in
    `tokens`, with the tag `fill_tag` (its id in `tag_ids`; "O" by default, like
    `word_predictions`' `fill_id=0` under `tag_vocabulary`) and all-zero `probabilities`;
    `num_tagged_words` counts the words that fit.

    Signature `serving_default`: `text` tf.string [batch] ->
      - `tokens` tf.string [batch, max_words]: the words, padded with "";
      - `tags` tf.string [batch, max_words]: one tag per word, padded with "";
      - `tag_ids` int32 [batch, max_words], padded with -1;
      - `probabilities` float32 [batch, max_words, num_tags] (softmax at the first
        piece), zeros on padding and on cut words;
      - `num_words` int32 [batch] (0 for an empty or all-whitespace sentence);
      - `num_tagged_words` int32 [batch].
    `max_words` is the most words of a sentence in the batch. Each batch is packed to its
    longest example (at most `seq_length`).

    Args:
        model: a `kzoo.models.bert_token_classifier` (logits [batch, seq, num_tags]).
        tokenizer: the kzoo tokenizer used in training (`BertTokenizer`, `AlbertTokenizer`,
            `XLMRobertaTokenizer`, `RobertaTokenizer`; `Pretrained.tokenizer`).
        tag_names: tag strings, index = tag id (e.g. `kzoo.data.conll.tag_vocabulary`).
        export_root: the model's base path.
        seq_length: the most pieces per packed sentence, the two special tokens included.
        version: integer version; default: the next free one.
        fill_tag: the tag of words cut by truncation; must be in `tag_names`.
        compute_dtype: None (the model as it computes), "float32" or "bfloat16": the encoder's
            projections multiply in bfloat16, everything else in float32, outputs unchanged in
            dtype (`kzoo.export.precision.serving_copy`; the SavedModel stores those kernels in
            bfloat16). For CPUs with AVX512-BF16 / AMX, TPUs and recent GPUs.

    Returns:
        The path of the version folder written.
    """
    tag_names = [str(name) for name in tag_names]
    if len(tag_names) != model.output_shape[-1]:
        raise ValueError(f"{len(tag_names)} tag names for a model with {model.output_shape[-1]} outputs")
    if fill_tag not in tag_names:
        raise ValueError(f"fill_tag {fill_tag!r} is not in tag_names {tag_names}")
    if seq_length < 3:
        raise ValueError(f"seq_length must be >= 3 (room for the two special tokens and a word), got {seq_length}")
    fill_id = tag_names.index(fill_tag)
    model = serving_copy(model, compute_dtype, real_tokens_only=True)  # tags are read at real positions
    run_model = traced_once(model)  # one trace for every endpoint and tracing pass
    packer = BertPacker.from_tokenizer(tokenizer, seq_length, dynamic_length=True)
    names_with_padding = tf.constant(tag_names + [""])  # index -1 -> ""
    num_tags = len(tag_names)
    budget = seq_length - 2

    def serve_text(text):
        words = split_words(tokenizer, text)  # [batch, (words)]
        pieces = tokenize_words(tokenizer, words).values  # [total words, (pieces)], each word alone
        empty = pieces.row_lengths() == 0
        unk = tf.RaggedTensor.from_row_lengths(tf.fill([tf.reduce_sum(tf.cast(empty, tf.int32))],
                                                       tokenizer.unk_token_id),
                                               tf.cast(empty, tf.int64))
        pieces = tf.concat([pieces, unk], axis=1)  # a word without pieces becomes the unknown token
        lengths = pieces.row_lengths()
        # offset of each word's first piece in its sentence
        ends = tf.cumsum(lengths)
        sentence_starts = tf.gather(tf.concat([[0], ends], 0), words.row_starts())
        starts = ends - lengths - tf.gather(sentence_starts, words.value_rowids())
        kept = starts + lengths <= budget  # whole words within the budget (a prefix of each sentence)
        kept_pieces = tf.ragged.boolean_mask(words.with_flat_values(pieces), words.with_flat_values(kept))
        logits = run_model(packer(kept_pieces.merge_dims(1, 2)))
        probabilities = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)  # [batch, L, num_tags]
        positions = words.with_flat_values(tf.where(kept, starts + 1, 0))
        word_probabilities = tf.gather(probabilities, positions.to_tensor(0), batch_dims=1)
        kept_dense = words.with_flat_values(kept).to_tensor(False)
        word_probabilities *= tf.cast(kept_dense, tf.float32)[:, :, None]
        tag_ids = tf.where(kept_dense, tf.argmax(word_probabilities, axis=-1, output_type=tf.int32), fill_id)
        num_words = tf.cast(words.row_lengths(), tf.int32)
        in_row = tf.sequence_mask(num_words, tf.shape(tag_ids)[1])
        tag_ids = tf.where(in_row, tag_ids, -1)
        word_probabilities = tf.reshape(word_probabilities, [tf.shape(tag_ids)[0], tf.shape(tag_ids)[1], num_tags])
        return {
            "tokens": words.to_tensor(""),
            "tags": tf.gather(names_with_padding, tf.where(in_row, tag_ids, num_tags)),
            "tag_ids": tag_ids,
            "probabilities": word_probabilities,
            "num_words": num_words,
            "num_tagged_words": tf.reduce_sum(tf.cast(kept_dense, tf.int32), axis=1),
        }

    def write(path):
        archive = export_archive(model, *tokenizer.resources)  # each variable stored once
        archive.add_endpoint("serving_default", serve_text,
                             input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        archive.write_out(path, verbose=False)

    return write_version(export_root, write, version)
