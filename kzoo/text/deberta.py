"""DeBERTa-v2/v3's SentencePiece tokenizer in the graph (`DebertaV2Tokenizer`).

The reference is microsoft/DeBERTa's `spm_tokenizer.py` (`SPMTokenizer`), which transformers 4's slow
`DebertaV2Tokenizer` copies, and what transformers' `AutoTokenizer` loads for a `model_type`
"deberta-v2" folder (DeBERTa-v3 too):
1. invalid UTF-8 becomes U+FFFD, as in kzoo's other SentencePiece tokenizers (the reference takes
   `str`);
2. `do_lower_case` (False in every released v2/v3 model): Python's `str.lower()` character by
   character, as transformers' `tokenize` applies it (`re.sub("(.+?)", lower)`; no final-sigma context:
   "ΟΔΟΣ" -> "οδοσ"), with ICU and the per-code-point patch of `BertTokenizer`;
3. `split_by_punct` (False in the released models): the text is cut before and after every punctuation
   character (BERT's `_is_punctuation`: ASCII 33-47, 58-64, 91-96, 123-126 and category P, from Python's
   `unicodedata`), and each part (whitespace included) is encoded alone (`_run_split_on_punc`);
4. SentencePiece (`spm.encode`: the model's own normalizer, nmt_nfkc in the released `spm.model`,
   whitespace runs collapsed, a "▁" in front), ids = `PieceToId`: the model's own ids, `[PAD]`=0,
   `[CLS]`=1, `[SEP]`=2, `[UNK]`=3 in DeBERTa-v3's model; a character the model lacks is `[UNK]`.
`[MASK]` is not a SentencePiece piece of the released models: the reference adds it as a token after
the vocabulary (id 128000 in DeBERTa-v3, whose embedding table has 128,100 rows); so does this layer
(its id is the piece's own if a model has one). Packing is BERT's: `[CLS] a [SEP] b [SEP]`, token types
0/1 (`BertPacker`). Like kzoo's other tokenizers it does not recognise special-token strings
("[MASK]") in the text; the reference splits them out.

transformers 5's `AutoTokenizer` is a `tokenizers` Unigram over the same pieces behind the model's
precompiled normalizer and a Metaspace split (`tests/text/test_deberta_tokenizer.py` measures it).

Example:
>>> tokenizer = tokenizer_from_folder("deberta-v3-base/")  # doctest: +SKIP
>>> ids = tokenizer(["Hello, world!"])  # int32 RaggedTensor, no special tokens  # doctest: +SKIP
>>> features = BertPacker.from_tokenizer(tokenizer, 128)(ids)  # [CLS]=1 ... [SEP]=2, [PAD]=0  # doctest: +SKIP
"""

import keras
import tensorflow as tf
import tensorflow_text as tf_text

from kzoo.text.sentencepiece import SentencePieceTokenizer
from kzoo.text.tokenizer import _char_classes, _lowercase_gaps, _utf8_lower

_SPECIALS = {"pad": "[PAD]", "cls": "[CLS]", "sep": "[SEP]", "unk": "[UNK]", "mask": "[MASK]"}


@keras.saving.register_keras_serializable(package="kzoo")
class DebertaV2Tokenizer(SentencePieceTokenizer):
    """DeBERTa-v2 / DeBERTa-v3's SentencePiece tokenizer (`spm.model`), as TensorFlow ops.

    Equal to microsoft/DeBERTa's and transformers 4's `DebertaV2Tokenizer` (see the module
    docstring); its ids are the SentencePiece ids, `[MASK]` after the last piece. `BertPacker`
    packs its ids.

    Args:
        model_file: path of `spm.model`; it must have the pieces `[PAD]`, `[CLS]`, `[SEP]`, `[UNK]`.
        lower_case: `do_lower_case` (False for every released DeBERTa-v2/v3).
        split_by_punct: `split_by_punct` (False for every released DeBERTa-v2/v3).
        model_proto: the model's bytes instead of `model_file`.

    Example:
    >>> tokenizer = DebertaV2Tokenizer("spm.model")  # doctest: +SKIP
    >>> tokenizer.mask_token_id, tokenizer.vocab_size  # doctest: +SKIP
    (128000, 128001)
    """

    model_file_name = "spm.model"

    def __init__(self, model_file=None, lower_case=False, split_by_punct=False, model_proto=None, **kwargs):
        kwargs.pop("special_tokens", None)
        super().__init__(model_file=model_file, model_proto=model_proto, special_tokens=dict(_SPECIALS), **kwargs)
        missing = [t for role, t in _SPECIALS.items() if role != "mask" and t not in self._piece_ids]
        if missing:
            raise ValueError(f"DebertaV2Tokenizer: {self._source} lacks the pieces {', '.join(missing)} of DeBERTa's "
                             f"spm.model ([PAD]=0, [CLS]=1, [SEP]=2, [UNK]=3); its first pieces are "
                             f"{list(self.pieces[:4])}")
        mask = _SPECIALS["mask"]
        self._vocabulary = self.pieces if mask in self._piece_ids else self.pieces + (mask,)
        self.lower_case = bool(lower_case)
        self.split_by_punct = bool(split_by_punct)
        with tf.init_scope():
            gap_upper, gap_lower = _lowercase_gaps() if self.lower_case else ((), ())
            self._gap_upper = tf.constant(gap_upper, tf.int32)
            self._gap_lower = tf.constant(gap_lower, tf.int32)

    @property
    def vocabulary(self):
        """The token of every id: the pieces, then `[MASK]` when the model has no such piece."""
        return self._vocabulary

    def token_to_id(self, token):
        if token == _SPECIALS["mask"] and token not in self._piece_ids:
            return len(self.pieces)
        return super().token_to_id(token)

    def preprocess(self, inputs):
        """What SentencePiece is given, before the punctuation split: strings [n] -> strings [n]."""
        return self._preprocess(tf.convert_to_tensor(inputs, tf.string))

    def _preprocess(self, text):
        return self._lower(text) if self.lower_case else text

    def _lower(self, text):
        """Python's `str.lower()` of each character alone (transformers' `tokenize`), U+0000 kept."""
        chars = tf.strings.unicode_split(text, "UTF-8")
        points = tf.strings.unicode_decode(text, "UTF-8").flat_values
        flat = chars.flat_values
        lowered = tf.where(tf.equal(points, 0), flat, _utf8_lower(flat))
        if self._gap_upper.shape[0]:
            index = tf.minimum(tf.searchsorted(self._gap_upper, points), self._gap_upper.shape[0] - 1)
            is_gap = tf.equal(tf.gather(self._gap_upper, index), points)
            patched = tf.strings.unicode_encode(tf.gather(self._gap_lower, index)[:, tf.newaxis], "UTF-8")
            lowered = tf.where(is_gap, patched, lowered)
        return tf.strings.reduce_join(chars.with_flat_values(lowered), axis=1)

    def split_on_punctuation(self, inputs):
        """`_run_split_on_punc`: strings [n] -> parts [n, (parts)], each punctuation character alone and
        the runs between them (whitespace included) as they are; no empty parts."""
        text = tf.convert_to_tensor(inputs, tf.string)
        punctuation = _char_classes()["punctuation"]
        # tf_text.regex_split stops at U+0000: split a copy with U+0001 (not punctuation) in its place
        parts, begin, end = tf_text.regex_split_with_offsets(
            tf.strings.regex_replace(text, "\\x00", "\x01"), punctuation, punctuation)
        rows = parts.value_rowids()
        values = tf.strings.substr(tf.gather(text, rows), begin.flat_values, end.flat_values - begin.flat_values)
        return parts.with_flat_values(values)

    def _encode(self, text):
        if not self.split_by_punct:
            return self._sentencepiece(text)
        parts = self.split_on_punctuation(text)
        return parts.with_flat_values(self._sentencepiece(parts.flat_values)).merge_dims(1, 2)

    def get_config(self):
        config = super().get_config()
        config.update({"lower_case": self.lower_case, "split_by_punct": self.split_by_punct})
        return config
