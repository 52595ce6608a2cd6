"""Dynamic masked-language-model masking of packed BERT inputs, inside tf.data.

google-research/bert's `create_pretraining_data.py` masks once, offline
(`dupe_factor` copies); RoBERTa showed masking afresh every epoch works at
least as well. `MLMMasker` masks batches of already packed inputs on the fly,
so every pass over a dataset draws new positions.

Masking rule (`rule="official"`, the default), per example, as
`create_masked_lm_predictions`:

- candidates: every real position (`input_mask` 1) whose id is not one of
  `special_token_ids` ([CLS], [SEP], [PAD], ...);
- number of predictions `min(max_predictions_per_seq, max(1,
  round(n * masked_lm_prob)))` (Python 3 / `tf.round` half-to-even rounding),
  and never more than the candidates; n is the number of candidates (real
  wordpieces). The official script counts `len(tokens)`, i.e. also [CLS] and
  the [SEP]s: pass `count_special_tokens=True` for exactly that;
- a uniformly random subset of that size of the candidates, listed by
  position;
- each selected token becomes [MASK] with probability `mask_token_rate`, a
  random id uniform over the whole vocabulary with `random_token_rate`, and
  stays unchanged otherwise (official: 80% / 10% / 10%).

Whole-word masking (`whole_word_masking=True`, the official
`--do_whole_word_mask`): the candidates are grouped into words, a word being a
candidate that is not a continuation piece followed by the continuation pieces
after it. Which pieces continue a word is the tokenizer family's convention
(`word_starts(tokenizer)`): WordPiece marks continuations ("##ing"),
SentencePiece (ALBERT, XLM-R) marks word starts ("\u2581the") and byte-level BPE
(RoBERTa) marks a leading space ("\u0120the"); every piece that does not start a
word continues one. (A text's first word has no "\u0120" in RoBERTa's BPE, so
there a sentence's first word joins the previous sentence's last word when
sentences are packed one after the other: such a group is masked whole too;
words are never split.) A continuation piece joins the previous candidate's
word (a continuation piece joins the previous
candidate's word even across a [SEP], as in the official code, whose
candidate list skips [CLS]/[SEP]; a continuation piece with no candidate
before it starts a word). The number of predictions is the same official
count; words are visited in a uniformly random order and a word is taken
whole only if the running count plus its size stays within that number
(otherwise it is skipped and the next word is tried), so a row may end with
fewer predictions than the count. Each selected wordpiece then gets
[MASK] / random / unchanged independently. In graph ops: word ids by a
cumulative sum over the word starts, word sizes by a segment sum, a random
word order by sorting uniform scores, and a `tf.scan` over the words (as many
steps as the batch's most words) carrying each row's running count.

`rule="keras_hub"` runs `keras_hub.layers.MaskedLMMaskGenerator` instead (the
layer the keras-hub BERT preprocessors use), forced onto its TensorFlow path
(tf-text `mask_language_model`) also in eager calls: by default keras-hub 0.32
runs a pure-Python path outside `tf.function`/`tf.data`, which selects each
token independently with probability `masked_lm_prob` (a binomial count), a
third behaviour. Its tf-text `RandomItemSelector` predicts
`min(max_predictions_per_seq, ceil(float32(n) * float32(masked_lm_prob)))`
tokens (n: candidates), which is not the official count: ceil instead of
round gives one more prediction whenever the fractional part of `n * rate` is
in (0, 0.5) (4 instead of 3 for 21 tokens; float32 even makes 20 * 0.15 round
up to 4), about `0.25 / n` above the rate on average, and there is no minimum
of one. It draws from TensorFlow's global random state, so `seed` does not
apply, and it looks at ids only: [PAD] must be in `special_token_ids`.

With the default rule the randomness comes from a `tf.random.Generator`
owned by the masker (seeded by `seed`): its state advances on every batch,
across epochs, so each pass masks differently, and a seeded masker applied
sequentially reproduces the same sequence of masks.
"""

import keras_hub
import numpy as np
import tensorflow as tf

from kzoo.layers.heads import IGNORE_LABEL

RULES = ("official", "keras_hub")
# The word-start conventions of kzoo's tokenizer families: (kind, marker).
WORDPIECE = ("continuation", "##")
SENTENCEPIECE = ("start", "\u2581")  # "▁"
BYTE_LEVEL_BPE = ("start", "\u0120")  # "Ġ", a leading space


def word_start_convention(tokenizer):
    """(kind, marker) of a tokenizer's word pieces: `WORDPIECE` (`BertTokenizer`: a piece
    starting with "##" continues a word), `SENTENCEPIECE` (`AlbertTokenizer`,
    `XLMRobertaTokenizer`, any `SentencePieceTokenizer`: a piece starting with "▁" starts one)
    or `BYTE_LEVEL_BPE` (`RobertaTokenizer`: a piece starting with "Ġ", a space, starts one)."""
    from kzoo.text import BertTokenizer, RobertaTokenizer, SentencePieceTokenizer

    if isinstance(tokenizer, BertTokenizer):
        return WORDPIECE
    if isinstance(tokenizer, SentencePieceTokenizer):
        return SENTENCEPIECE
    if isinstance(tokenizer, RobertaTokenizer):
        return BYTE_LEVEL_BPE
    raise ValueError(f"no word-start convention known for a {type(tokenizer).__name__}; kzoo knows BertTokenizer "
                     "(WordPiece), SentencePieceTokenizer (ALBERT, XLM-R) and RobertaTokenizer (byte-level BPE)")


def vocabulary_tokens(tokenizer):
    """The token string of every id `[0, vocab_size)` of a kzoo tokenizer ("" for an id that a
    vocab.json leaves out)."""
    vocabulary = tokenizer.vocabulary
    if isinstance(vocabulary, dict):  # RobertaTokenizer: {token: id}
        tokens = [""] * tokenizer.vocab_size
        for token, index in vocabulary.items():
            tokens[index] = token
        return tokens
    return list(vocabulary)


def word_starts(tokenizer):
    """A numpy bool table over the vocabulary [vocab_size]: whether each piece starts a word, by
    the tokenizer family's convention (`word_start_convention`): WordPiece, every piece but the
    "##" ones; SentencePiece, the pieces starting with "▁"; byte-level BPE, those starting with
    "Ġ". Special tokens follow the same rule; they are never masking candidates anyway.

    >>> from kzoo.text import BertTokenizer
    >>> word_starts(BertTokenizer(vocabulary=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "play", "##ing"])).tolist()
    [True, True, True, True, True, True, False]
    """
    kind, marker = word_start_convention(tokenizer)
    marked = np.array([token.startswith(marker) for token in vocabulary_tokens(tokenizer)], bool)
    return ~marked if kind == "continuation" else marked


def special_token_ids(tokenizer):
    """Sorted ids never masked: the tokenizer's `special_token_ids` where it has them (ALBERT,
    XLM-R, RoBERTa: `<s>`/`</s>`/`<pad>`/`<mask>`, ...) and always its cls, sep and pad ids."""
    ids = {tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id}
    ids.update(int(i) for i in getattr(tokenizer, "special_token_ids", ()))
    return sorted(int(i) for i in ids)


class MLMMasker:
    """Adds masked-LM inputs and targets to a batch of packed BERT features.

    Call it on a dict with int32 `input_word_ids` [batch, seq] (containing
    [CLS]/[SEP]/[PAD]), `input_mask` and `input_type_ids` (e.g. in
    `dataset.map(masker)`); it returns the dict plus

    - `masked_input_word_ids` [batch, seq]: the ids after masking;
    - `masked_lm_positions` [batch, P] int32: the selected positions,
      ascending, 0 after the last one of a row;
    - `masked_lm_ids` [batch, P] int32: the original ids there, `-100`
      (`kzoo.layers.IGNORE_LABEL`, for `ignore_class=-100` losses) after
      the last one;

    with P = `max_predictions_per_seq` (static). The untouched
    `input_word_ids` stay in the dict. Unbatched [seq] features work too.

    Args:
        vocab_size: vocabulary size (random replacements are drawn from
            `[0, vocab_size)`).
        mask_token_id: id of `[MASK]`.
        special_token_ids: ids never selected: [CLS], [SEP] and [PAD] at least
            (padding positions, `input_mask` 0, are never selected anyway
            with the official rule).
        masked_lm_prob: fraction of tokens to predict.
        max_predictions_per_seq: P, the most predictions per example.
        mask_token_rate: probability that a selected token becomes [MASK].
        random_token_rate: probability that it becomes a random id.
        seed: seed of the masker's random generator (None: nondeterministic).
        count_special_tokens: count [CLS]/[SEP] in n for the number of
            predictions, as `create_pretraining_data.py` does.
        rule: "official" (see the module docstring) or "keras_hub"
            (`keras_hub.layers.MaskedLMMaskGenerator`, ceil count).
        whole_word_masking: select whole words (rule "official" only; see the
            module docstring). `from_tokenizer` fills in the continuation ids.
        continuation_token_ids: ids of the pieces that continue a word (the
            "##" wordpieces; for SentencePiece and byte-level BPE every piece
            not starting with "▁" / "Ġ"); needed with `whole_word_masking`.

    Example:
    >>> masker = MLMMasker(vocab_size=100, mask_token_id=4, special_token_ids=[0, 2, 3],
    ...                    max_predictions_per_seq=3, seed=1)
    >>> out = masker({"input_word_ids": tf.constant([[2, 10, 11, 12, 13, 14, 15, 3, 0, 0]]),
    ...               "input_mask": tf.constant([[1] * 8 + [0] * 2]),
    ...               "input_type_ids": tf.zeros([1, 10], tf.int32)})
    >>> out["masked_lm_positions"].shape, int(tf.reduce_sum(tf.cast(out["masked_lm_ids"] >= 0, tf.int32)))
    (TensorShape([1, 3]), 1)
    """

    def __init__(self, vocab_size, mask_token_id, special_token_ids, masked_lm_prob=0.15, max_predictions_per_seq=20,
                 mask_token_rate=0.8, random_token_rate=0.1, seed=None, count_special_tokens=False, rule="official",
                 whole_word_masking=False, continuation_token_ids=None):
        if rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
        if not 0.0 < masked_lm_prob <= 1.0:
            raise ValueError(f"masked_lm_prob must be in (0, 1], got {masked_lm_prob}")
        if max_predictions_per_seq < 1:
            raise ValueError(f"max_predictions_per_seq must be >= 1, got {max_predictions_per_seq}")
        if mask_token_rate < 0 or random_token_rate < 0 or mask_token_rate + random_token_rate > 1:
            raise ValueError("need mask_token_rate, random_token_rate >= 0 and mask_token_rate + random_token_rate <= 1")
        if not 0 <= mask_token_id < vocab_size:
            raise ValueError(f"mask_token_id {mask_token_id} is outside the vocabulary [0, {vocab_size})")
        if rule == "keras_hub" and count_special_tokens:
            raise ValueError("count_special_tokens applies only to rule='official'")
        if whole_word_masking:
            if rule != "official":
                raise ValueError("whole_word_masking applies only to rule='official'")
            if continuation_token_ids is None:
                raise ValueError("whole_word_masking needs continuation_token_ids (the ids of the pieces that continue "
                                 "a word, e.g. the '##' wordpieces); "
                                 "MLMMasker.from_tokenizer(tokenizer, whole_word_masking=True) finds them")
            continuation_token_ids = sorted({int(i) for i in continuation_token_ids})
            if continuation_token_ids and not (0 <= continuation_token_ids[0] and
                                               continuation_token_ids[-1] < vocab_size):
                raise ValueError(f"continuation_token_ids must lie in the vocabulary [0, {vocab_size})")
        elif continuation_token_ids is not None:
            raise ValueError("continuation_token_ids is used only with whole_word_masking=True")
        self.vocab_size = int(vocab_size)
        self.mask_token_id = int(mask_token_id)
        self.special_token_ids = sorted({int(i) for i in special_token_ids})
        self.masked_lm_prob = float(masked_lm_prob)
        self.max_predictions_per_seq = int(max_predictions_per_seq)
        self.mask_token_rate = float(mask_token_rate)
        self.random_token_rate = float(random_token_rate)
        self.seed = seed
        self.count_special_tokens = count_special_tokens
        self.rule = rule
        self.whole_word_masking = bool(whole_word_masking)
        self.continuation_token_ids = continuation_token_ids
        if self.whole_word_masking:
            is_continuation = [False] * self.vocab_size
            for i in continuation_token_ids:
                is_continuation[i] = True
            self._is_continuation = tf.constant(is_continuation, tf.bool)
        if rule == "official":
            self._generator = (tf.random.Generator.from_seed(seed) if seed is not None
                               else tf.random.Generator.from_non_deterministic_state())
        else:
            self._generator = keras_hub.layers.MaskedLMMaskGenerator(
                vocabulary_size=self.vocab_size,
                mask_selection_rate=self.masked_lm_prob,
                mask_token_id=self.mask_token_id,
                mask_selection_length=self.max_predictions_per_seq,
                unselectable_token_ids=self.special_token_ids,
                mask_token_rate=self.mask_token_rate,
                random_token_rate=self.random_token_rate,
                _allow_python_workflow=False,  # the tf-text path in eager calls too (see the module docstring)
            )

    @classmethod
    def from_tokenizer(cls, tokenizer, whole_word_masking=False, **kwargs):
        """A masker with the vocabulary size, mask id and special ids of any
        kzoo tokenizer (`BertTokenizer`: [CLS]/[SEP]/[PAD]; the others: their
        `special_token_ids` too, e.g. RoBERTa's `<s>`, `</s>`, `<pad>`,
        `<mask>`: see `special_token_ids`), and with `whole_word_masking` the
        ids of the pieces that continue a word by the family's convention
        (`word_starts`) as `continuation_token_ids`."""
        special = special_token_ids(tokenizer)
        if whole_word_masking and kwargs.get("continuation_token_ids") is None:
            kwargs["continuation_token_ids"] = np.flatnonzero(~word_starts(tokenizer)).tolist()
        return cls(tokenizer.vocab_size, tokenizer.mask_token_id, special, whole_word_masking=whole_word_masking,
                   **kwargs)

    def num_predictions(self, n):
        """The official number of predictions for `n` counted tokens (int or
        int tensor), before the cap by the number of candidates."""
        n = tf.cast(n, tf.float64)
        count = tf.maximum(tf.round(n * self.masked_lm_prob), 1.0)
        return tf.cast(tf.minimum(count, float(self.max_predictions_per_seq)), tf.int32)

    def __call__(self, features):
        word_ids = tf.cast(features["input_word_ids"], tf.int32)
        unbatched = word_ids.shape.rank == 1
        input_mask = tf.cast(features["input_mask"], tf.int32)
        if unbatched:
            word_ids, input_mask = word_ids[tf.newaxis], input_mask[tf.newaxis]
        if self.rule == "official":
            masked, positions, ids = self._mask_official(word_ids, input_mask)
        else:
            masked, positions, ids = self._mask_keras_hub(word_ids)
        if unbatched:
            masked, positions, ids = masked[0], positions[0], ids[0]
        return {**features, "masked_input_word_ids": masked, "masked_lm_positions": positions, "masked_lm_ids": ids}

    def _mask_official(self, word_ids, input_mask):
        P = self.max_predictions_per_seq
        batch, length = tf.shape(word_ids)[0], tf.shape(word_ids)[1]
        special = tf.constant(self.special_token_ids or [-1], tf.int32)
        is_special = tf.reduce_any(word_ids[:, :, None] == special, axis=-1)
        candidate = tf.logical_and(input_mask > 0, tf.logical_not(is_special))
        n_candidates = tf.reduce_sum(tf.cast(candidate, tf.int32), axis=1)
        n = tf.reduce_sum(input_mask, axis=1) if self.count_special_tokens else n_candidates
        count = tf.minimum(self.num_predictions(n), n_candidates)
        count = tf.where(n_candidates > 0, count, 0)

        if self.whole_word_masking:
            positions, valid = self._select_whole_words(word_ids, candidate, count)
        else:
            # A uniform random subset: the `count` candidates with the largest scores.
            scores = self._generator.uniform([batch, length])
            scores = tf.where(candidate, scores, -1.0)
            width = tf.maximum(length, P)  # top_k needs at least P columns
            scores = tf.pad(scores, [[0, 0], [0, width - length]], constant_values=-2.0)
            _, order = tf.math.top_k(scores, k=P)
            valid = tf.range(P)[None, :] < count[:, None]
            # List the selected positions in increasing order, padding after them.
            positions = tf.sort(tf.where(valid, order, width), axis=1)
            positions = tf.where(valid, positions, 0)
        original = tf.gather(word_ids, positions, batch_dims=1)

        u = self._generator.uniform([batch, P])
        random_ids = self._generator.uniform([batch, P], 0, self.vocab_size, dtype=tf.int32)
        values = tf.where(u < self.mask_token_rate, self.mask_token_id,
                          tf.where(u < self.mask_token_rate + self.random_token_rate, random_ids, original))
        hit = tf.one_hot(positions, length, dtype=tf.int32) * tf.cast(valid, tf.int32)[:, :, None]  # [b, P, seq]
        selected = tf.reduce_sum(hit, axis=1) > 0
        masked = tf.where(selected, tf.reduce_sum(hit * values[:, :, None], axis=1), word_ids)
        ids = tf.where(valid, original, IGNORE_LABEL)
        return masked, tf.ensure_shape(positions, [None, P]), tf.ensure_shape(ids, [None, P])

    def _select_whole_words(self, word_ids, candidate, budget):
        """Whole-word selection: (positions [b, P] ascending then 0, valid [b, P])."""
        P = self.max_predictions_per_seq
        batch, length = tf.shape(word_ids)[0], tf.shape(word_ids)[1]
        in_vocab = tf.clip_by_value(word_ids, 0, self.vocab_size - 1)
        continuation = tf.gather(self._is_continuation, in_vocab)
        candidate_int = tf.cast(candidate, tf.int32)
        after_candidate = tf.cumsum(candidate_int, axis=1, exclusive=True) > 0
        starts = tf.logical_and(candidate, tf.logical_not(tf.logical_and(continuation, after_candidate)))
        n_words = tf.reduce_sum(tf.cast(starts, tf.int32), axis=1)
        # Word index of every candidate; other positions go to a spare slot `length`.
        word = tf.where(candidate, tf.cumsum(tf.cast(starts, tf.int32), axis=1) - 1, length)
        slots = length + 1
        flat = word + tf.range(batch)[:, None] * slots
        sizes = tf.math.unsorted_segment_sum(candidate_int, flat, batch * slots)
        sizes = tf.reshape(sizes, [batch, slots])[:, :length]  # [b, L]: wordpieces of word w, 0 past the last

        # Visit the words in a uniformly random order (the real words first).
        scores = self._generator.uniform([batch, length])
        scores = tf.where(tf.range(length)[None, :] < n_words[:, None], scores, -1.0)
        order = tf.argsort(scores, axis=1, direction="DESCENDING", stable=True)
        most = tf.reduce_max(tf.concat([n_words, [1]], 0))  # >= 1: tf.scan cannot stack zero steps in a graph
        ordered_sizes = tf.gather(sizes, order[:, :most], batch_dims=1)  # [b, most]

        def take(total, size):  # a whole word, if it still fits
            fits = tf.logical_and(size > 0, total + size <= budget)
            return total + tf.where(fits, size, 0)

        totals = tf.scan(take, tf.transpose(ordered_sizes), initializer=tf.zeros([batch], tf.int32))
        totals = tf.transpose(tf.reshape(totals, [most, batch]))  # running count after each visited word
        previous = tf.concat([tf.zeros([batch, 1], tf.int32), totals[:, :-1]], axis=1)
        taken_in_order = tf.pad(totals > previous, [[0, 0], [0, length - most]])
        # Back from the visiting order to word ids; the spare slot is never taken.
        taken = tf.gather(taken_in_order, tf.argsort(order, axis=1, stable=True), batch_dims=1)
        taken = tf.pad(taken, [[0, 0], [0, 1]])
        selected = tf.logical_and(candidate, tf.gather(taken, word, batch_dims=1))

        width = tf.maximum(length, P)
        keys = tf.where(selected, tf.range(length)[None, :], width)
        keys = tf.pad(keys, [[0, 0], [0, width - length]], constant_values=width)
        positions = tf.sort(keys, axis=1)[:, :P]
        valid = tf.range(P)[None, :] < tf.reduce_sum(tf.cast(selected, tf.int32), axis=1)[:, None]
        return tf.where(valid, positions, 0), valid

    def _mask_keras_hub(self, word_ids):
        out = self._generator(word_ids)
        valid = out["mask_weights"] > 0
        positions = tf.where(valid, tf.cast(out["mask_positions"], tf.int32), 0)
        ids = tf.where(valid, tf.cast(out["mask_ids"], tf.int32), IGNORE_LABEL)
        P = self.max_predictions_per_seq
        return tf.cast(out["token_ids"], tf.int32), tf.ensure_shape(positions, [None, P]), tf.ensure_shape(ids, [None, P])

    def dataset(self, dataset):
        """Maps a dataset of features dicts, or of (features, ...) tuples,
        through the masker (sequentially, so a seeded masker is reproducible)."""
        if isinstance(dataset.element_spec, tuple):
            return dataset.map(lambda features, *rest: (self(features),) + tuple(rest))
        return dataset.map(self)
