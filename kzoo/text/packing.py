"""Encoder input packing, truncated and padded: BERT's `[CLS] a [SEP]` / `[CLS] a [SEP] b [SEP]`
(`BertPacker`: BERT, ALBERT, ELECTRA, DistilBERT) and RoBERTa's `<s> a </s>` / `<s> a </s></s> b </s>`
(`RobertaPacker`: RoBERTa, XLM-RoBERTa).

Truncation equals google-research/bert: a single segment keeps its first `seq_length - 2`
tokens; a pair is cut like `_truncate_seq_pair` (drop the last token of the longer segment, of
the second on a tie, until `len(a) + len(b) <= seq_length - 3`), which is what tf-text's
`RoundRobinTrimmer` computes (proved against a plain-Python `_truncate_seq_pair` in
`tests/text/test_packing.py`). `tf_text.combine_segments` adds the special tokens and type ids.
Outputs use the TF Hub BERT names and int32.

Example:
>>> packer = BertPacker(seq_length=8, cls_id=101, sep_id=102)
>>> features = packer((tf.ragged.constant([[7, 8, 9]]), tf.ragged.constant([[4, 5, 6, 7]])))
>>> features["input_word_ids"].numpy().tolist()
[[101, 7, 8, 9, 102, 4, 5, 102]]
>>> features["input_type_ids"].numpy().tolist()
[[0, 0, 0, 0, 0, 1, 1, 1]]
"""

import keras
import tensorflow as tf
import tensorflow_text as tf_text


@keras.saving.register_keras_serializable(package="kzoo")
class BertPacker(keras.layers.Layer):
    """Packs one or two segments of token ids into BERT encoder inputs.

    Takes a RaggedTensor [batch, (tokens)] of ids (or a tuple/list of two, for sentence pairs;
    a dense [batch, tokens] tensor counts as rows of full length, and a 1-D tensor as one
    unbatched example) and returns a dict of int32 tensors `input_word_ids`, `input_mask`
    (1 on real tokens, 0 on padding) and `input_type_ids` (0 up to and including the first
    `[SEP]`, 1 after), each [batch, L] (or [L] unbatched).

    Args:
        seq_length: the most tokens per example, special tokens included.
        cls_id: id of `[CLS]`.
        sep_id: id of `[SEP]`.
        pad_id: id written on padding positions.
        dynamic_length: if False, L is `seq_length` (a static shape, as XLA/TPU need); if True,
            L is the longest packed example of the batch.

    Example:
    >>> packer = BertPacker(seq_length=6, cls_id=101, sep_id=102)
    >>> packer(tf.ragged.constant([[7, 8], [7, 8, 9, 10, 11]]))["input_word_ids"].numpy().tolist()
    [[101, 7, 8, 102, 0, 0], [101, 7, 8, 9, 10, 102]]
    """

    def __init__(self, seq_length, cls_id, sep_id, pad_id=0, dynamic_length=False, **kwargs):
        super().__init__(**kwargs)
        if seq_length < 2:
            raise ValueError(f"seq_length must be >= 2 (room for [CLS] and [SEP]), got {seq_length}")
        self.seq_length = seq_length
        self.cls_id = cls_id
        self.sep_id = sep_id
        self.pad_id = pad_id
        self.dynamic_length = dynamic_length
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True
        self.built = True

    @classmethod
    def from_tokenizer(cls, tokenizer, seq_length, **kwargs):
        """A packer with the `[CLS]`, `[SEP]` and `[PAD]` ids of a tokenizer.

        Called on `BertPacker`, it packs the way the tokenizer's family does: a tokenizer whose
        `packer_layout` is "roberta" (`RobertaTokenizer`, `XLMRobertaTokenizer`) gets a
        `RobertaPacker` with its `<s>`, `</s>` and `<pad>` ids; `BertTokenizer` and
        `AlbertTokenizer` get a `BertPacker`. Called on a subclass, it builds that subclass.
        """
        if cls is BertPacker and getattr(tokenizer, "packer_layout", "bert") == "roberta":
            cls = RobertaPacker
        return cls(
            seq_length,
            cls_id=tokenizer.cls_token_id,
            sep_id=tokenizer.sep_token_id,
            pad_id=tokenizer.pad_token_id,
            **kwargs,
        )

    # Special tokens around the segments: one before, then this many after each segment.
    _separators_per_segment = (1, 1)

    def _combine(self, trimmed):
        """Trimmed segments -> (word ids, type ids), both [batch, (tokens)]."""
        return tf_text.combine_segments(trimmed, self.cls_id, self.sep_id)

    def call(self, inputs):
        segments = list(inputs) if isinstance(inputs, (tuple, list)) else [inputs]
        if len(segments) not in (1, 2):
            raise ValueError(f"{self.name} packs one or two segments, got {len(segments)}")
        budget = self.seq_length - 1 - sum(self._separators_per_segment[: len(segments)])
        if budget < 0:
            raise ValueError(f"seq_length {self.seq_length} leaves no room for a pair: it must be >= "
                             f"{self.seq_length - budget}")
        segments = [
            s if isinstance(s, tf.RaggedTensor) else tf.convert_to_tensor(s) for s in segments
        ]
        unbatched = segments[0].shape.rank == 1
        if unbatched:
            segments = [s[tf.newaxis] for s in segments]
        segments = [
            tf.cast(s if isinstance(s, tf.RaggedTensor) else tf.RaggedTensor.from_tensor(s), tf.int32)
            for s in segments
        ]
        trimmed = tf_text.RoundRobinTrimmer(max_seq_length=budget).trim(segments)
        word_ids, type_ids = self._combine(trimmed)
        shape = None if self.dynamic_length else [None, self.seq_length]
        features = {
            "input_word_ids": word_ids.to_tensor(self.pad_id, shape=shape),
            "input_mask": tf.ones_like(word_ids).to_tensor(0, shape=shape),
            "input_type_ids": tf.cast(type_ids, tf.int32).to_tensor(0, shape=shape),
        }
        if unbatched:
            return {name: feature[0] for name, feature in features.items()}
        return features

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "seq_length": self.seq_length,
                "cls_id": self.cls_id,
                "sep_id": self.sep_id,
                "pad_id": self.pad_id,
                "dynamic_length": self.dynamic_length,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="kzoo")
class RobertaPacker(BertPacker):
    """Packs one or two segments of token ids into RoBERTa / XLM-RoBERTa encoder inputs.

    `<s> a </s>` or `<s> a </s></s> b </s>` (fairseq's and transformers' layout), one token type
    (`input_type_ids` all 0), padding with `<pad>` (id 1 in both families). Truncation is
    `BertPacker`'s, with the pair's budget `seq_length - 4`: the longer segment loses its last
    token until the pair fits, the second on a tie (transformers' Python `truncate_sequences`;
    its `tokenizers` backend, which transformers 5 runs, splits an odd budget between two
    segments that are both cut the other way round: see `tests/text/test_family_packing.py`).
    The call convention and outputs are `BertPacker`'s.

    Args:
        seq_length: the most tokens per example, special tokens included.
        cls_id: id of `<s>` (0).
        sep_id: id of `</s>` (2).
        pad_id: id written on padding positions (`<pad>`, 1).
        dynamic_length: as `BertPacker`'s.

    Example:
    >>> packer = RobertaPacker(seq_length=9, cls_id=0, sep_id=2)
    >>> packer((tf.ragged.constant([[7, 8]]), tf.ragged.constant([[9]])))["input_word_ids"].numpy().tolist()
    [[0, 7, 8, 2, 2, 9, 2, 1, 1]]
    """

    _separators_per_segment = (1, 2)

    def __init__(self, seq_length, cls_id, sep_id, pad_id=1, dynamic_length=False, **kwargs):
        super().__init__(seq_length, cls_id=cls_id, sep_id=sep_id, pad_id=pad_id, dynamic_length=dynamic_length,
                         **kwargs)

    def _combine(self, trimmed):
        if len(trimmed) == 2:  # "</s></s> b": the second segment starts with one more </s>
            first, second = trimmed
            extra = tf.fill([second.nrows(), 1], tf.constant(self.sep_id, second.dtype))
            trimmed = [first, tf.concat([tf.RaggedTensor.from_tensor(extra), second], axis=1)]
        word_ids, _ = tf_text.combine_segments(trimmed, self.cls_id, self.sep_id)
        return word_ids, tf.zeros_like(word_ids)
