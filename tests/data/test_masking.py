import csv

import numpy as np
import pytest
import tensorflow as tf

from kzoo.data.conll import IGNORE_LABEL
from kzoo.data.masking import MLMMasker
from kzoo.text.packing import BertPacker
from kzoo.text.tokenizer import BertTokenizer
from tests.conftest import minilm_vocab_file, shared_path

P = 20
SEQ = 64


@pytest.fixture(scope="module")
def tokenizer():
    return BertTokenizer(vocab_file=minilm_vocab_file(), lower_case=True)


@pytest.fixture(scope="module")
def packed(tokenizer):
    """SST-2 sentences of at least 10 wordpieces, packed to 64 (~2,600 rows)."""
    with open(shared_path("data", "sst2", "train.tsv"), encoding="utf-8") as f:
        sentences = [row[0] for row in list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:6001]]
    lengths = tokenizer(tf.constant(sentences)).row_lengths().numpy()
    sentences = [s for s, n in zip(sentences, lengths) if n >= 10]
    packer = BertPacker.from_tokenizer(tokenizer, SEQ)
    return {k: v.numpy() for k, v in packer(tokenizer(tf.constant(sentences))).items()}


def _run(masker, packed, batch_size=128):
    ds = masker.dataset(tf.data.Dataset.from_tensor_slices(packed).batch(batch_size))
    batches = list(ds.as_numpy_iterator())
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def _check_invariants(out, tokenizer):
    ids, positions, targets = out["input_word_ids"], out["masked_lm_positions"], out["masked_lm_ids"]
    assert positions.shape == targets.shape == (len(ids), P)
    assert positions.dtype == targets.dtype == np.int32
    valid = targets != IGNORE_LABEL
    at = np.take_along_axis(ids, positions, 1)
    specials = [tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id]
    assert not np.isin(at[valid], specials).any()  # no [CLS]/[SEP]/[PAD] ever selected
    assert np.take_along_axis(out["input_mask"], positions, 1)[valid].all()
    np.testing.assert_array_equal(targets[valid], at[valid])  # targets are the original ids
    assert np.all(positions[~valid] == 0)
    # Valid entries come first, at strictly increasing positions.
    counts = valid.sum(1)
    assert np.array_equal(valid, np.arange(P)[None] < counts[:, None])
    for row, k in zip(positions, counts):
        assert np.all(np.diff(row[:k]) > 0)
    # Only the selected positions change.
    changed = out["masked_input_word_ids"] != ids
    selected = np.zeros_like(changed)
    np.put_along_axis(selected, positions, valid, 1)
    assert not (changed & ~selected).any()
    return counts


def test_official_rule_statistics_on_sst2(tokenizer, packed):
    masker = MLMMasker.from_tokenizer(tokenizer, max_predictions_per_seq=P, seed=0)
    out = _run(masker, packed)
    counts = _check_invariants(out, tokenizer)

    ids = out["input_word_ids"]
    real = out["input_mask"].sum(1) - 2  # wordpieces: all but [CLS] and [SEP]
    # Official count, per row exactly (Python 3 round, like tf.round: half to even).
    np.testing.assert_array_equal(counts, [min(P, max(1, round(n * 0.15))) for n in real])
    # Hence ~15% of the wordpieces overall: the count is deterministic, the only
    # deviation is rounding (|error| <= 0.5 per row, averaging out over ~2,600 rows).
    assert abs(counts.sum() / real.sum() - 0.15) < 0.01

    valid = out["masked_lm_ids"] != IGNORE_LABEL
    new = np.take_along_axis(out["masked_input_word_ids"], out["masked_lm_positions"], 1)[valid]
    old = out["masked_lm_ids"][valid]
    n = len(old)
    assert n > 3000
    is_mask = new == tokenizer.mask_token_id
    is_same = new == old
    is_random = ~is_mask & ~is_same
    # Binomial proportions: 4 standard deviations (~0.007 each at n ~ 4,000).
    for fraction, rate in ((is_mask.mean(), 0.8), (is_random.mean(), 0.1), (is_same.mean(), 0.1)):
        assert abs(fraction - rate) < 4 * np.sqrt(rate * (1 - rate) / n), (fraction, rate)
    # Random replacements come from the whole vocabulary.
    assert len(np.unique(new[is_random])) > 0.9 * is_random.sum()
    assert ids.shape == out["masked_input_word_ids"].shape


def test_dynamic_and_seeded(tokenizer, packed):
    small = {k: v[:256] for k, v in packed.items()}
    masker = MLMMasker.from_tokenizer(tokenizer, max_predictions_per_seq=P, seed=3)
    ds = masker.dataset(tf.data.Dataset.from_tensor_slices(small).batch(64))
    first = np.concatenate([b["masked_lm_positions"] for b in ds.as_numpy_iterator()])
    second = np.concatenate([b["masked_lm_positions"] for b in ds.as_numpy_iterator()])
    assert (first != second).any(1).mean() > 0.9  # each epoch masks afresh
    again = _run(MLMMasker.from_tokenizer(tokenizer, max_predictions_per_seq=P, seed=3), small, 64)
    np.testing.assert_array_equal(again["masked_lm_positions"], first)  # same seed, same sequence of masks


def test_keras_hub_rule_counts(tokenizer, packed):
    small = {k: v[:512] for k, v in packed.items()}
    masker = MLMMasker.from_tokenizer(tokenizer, max_predictions_per_seq=P, rule="keras_hub")
    for out in (_run(masker, small), {k: np.asarray(v) for k, v in masker(small).items()}):
        counts = _check_invariants(out, tokenizer)
        real = (out["input_mask"].sum(1) - 2).astype(np.float32)
        np.testing.assert_array_equal(counts, np.minimum(P, np.ceil(real * np.float32(0.15))).astype(int))


def test_short_rows_empty_rows_and_unbatched():
    masker = MLMMasker(vocab_size=50, mask_token_id=4, special_token_ids=[0, 2, 3], max_predictions_per_seq=6,
                       masked_lm_prob=0.5, seed=0)
    features = {
        "input_word_ids": tf.constant([[2, 10, 11, 12, 3], [2, 3, 0, 0, 0], [2, 10, 3, 0, 0]]),
        "input_mask": tf.constant([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]]),
        "input_type_ids": tf.zeros([3, 5], tf.int32),
    }
    out = masker(features)  # seq (5) shorter than P (6)
    targets = out["masked_lm_ids"].numpy()
    assert out["masked_lm_positions"].shape == (3, 6)
    assert (targets != IGNORE_LABEL).sum(1).tolist() == [2, 0, 1]  # round(1.5) = 2; empty row: none
    assert out["masked_lm_positions"].numpy()[2, 0] == 1
    one = masker({k: v[0] for k, v in features.items()})
    assert one["masked_lm_positions"].shape == (6,) and one["masked_input_word_ids"].shape == (5,)
    official = MLMMasker(vocab_size=50, mask_token_id=4, special_token_ids=[0, 2, 3], count_special_tokens=True,
                         masked_lm_prob=0.5)
    assert (official(features)["masked_lm_ids"].numpy() != IGNORE_LABEL).sum(1).tolist() == [2, 0, 1]


def test_bad_arguments():
    with pytest.raises(ValueError, match="rule"):
        MLMMasker(10, 4, [0], rule="bernoulli")
    with pytest.raises(ValueError, match="mask_token_rate"):
        MLMMasker(10, 4, [0], mask_token_rate=0.95, random_token_rate=0.1)
    with pytest.raises(ValueError, match="vocabulary"):
        MLMMasker(10, 10, [0])


def test_official_rule_unchanged_bit_for_bit():
    """Regression: the masks of a seeded masker, as produced before whole-word masking existed
    (kzoo commit bdb8a9c); the random draws and their order must not change."""
    features = {
        "input_word_ids": tf.constant([[2, 10, 11, 12, 13, 14, 15, 16, 3, 17, 18, 3],
                                       [2, 20, 21, 22, 23, 3] + [0] * 6]),
        "input_mask": tf.constant([[1] * 12, [1] * 6 + [0] * 6]),
        "input_type_ids": tf.constant([[0] * 9 + [1] * 3, [0] * 12]),
    }
    masker = MLMMasker(50, 4, [0, 2, 3], masked_lm_prob=0.5, max_predictions_per_seq=5, mask_token_rate=0.4,
                       random_token_rate=0.3, seed=42)
    expected = [
        ([[2, 44, 11, 12, 13, 14, 32, 16, 3, 4, 16, 3], [2, 20, 21, 16, 23, 3, 0, 0, 0, 0, 0, 0]],
         [[1, 6, 9, 10, 0], [1, 3, 0, 0, 0]], [[10, 15, 17, 18, -100], [20, 22, -100, -100, -100]]),
        ([[2, 4, 11, 12, 13, 4, 4, 16, 3, 17, 18, 3], [2, 20, 4, 4, 23, 3, 0, 0, 0, 0, 0, 0]],
         [[1, 2, 5, 6, 0], [2, 3, 0, 0, 0]], [[10, 11, 14, 15, -100], [21, 22, -100, -100, -100]]),
    ]
    for masked, positions, ids in expected:
        out = masker(features)
        assert out["masked_input_word_ids"].numpy().tolist() == masked
        assert out["masked_lm_positions"].numpy().tolist() == positions
        assert out["masked_lm_ids"].numpy().tolist() == ids


def _official_words(tokens):
    """Candidate groups of the official `create_masked_lm_predictions` with
    do_whole_word_mask: a "##" piece joins the previous candidate group (across [SEP] too)."""
    words = []
    for i, token in enumerate(tokens):
        if token in ("[CLS]", "[SEP]", "[PAD]"):
            continue
        if words and token.startswith("##"):
            words[-1].append(i)
        else:
            words.append([i])
    return words


def _word_selection(out, tokenizer):
    """Per row: (official words, set of selected positions)."""
    vocab = np.array(tokenizer.vocabulary)
    lengths = out["input_mask"].sum(1)
    counts = (out["masked_lm_ids"] != IGNORE_LABEL).sum(1)
    for row in range(len(lengths)):
        words = _official_words(vocab[out["input_word_ids"][row, :lengths[row]]])
        yield words, set(out["masked_lm_positions"][row, :counts[row]].tolist())


def test_whole_word_masking_on_sst2(tokenizer, packed):
    masker = MLMMasker.from_tokenizer(tokenizer, whole_word_masking=True, max_predictions_per_seq=P, seed=0,
                                      count_special_tokens=True)
    assert len(masker.continuation_token_ids) == sum(t.startswith("##") for t in tokenizer.vocabulary) > 5000
    out = _run(masker, packed)
    counts = _check_invariants(out, tokenizer)  # -100 / ascending positions / targets = original ids
    official = np.array([min(P, max(1, round(n * 0.15))) for n in out["input_mask"].sum(1)])
    assert (counts <= official).all() and (counts >= 1).all()
    assert counts.sum() / official.sum() > 0.97  # whole words rarely leave the budget unfilled
    multi_piece_words = 0
    for row, (words, selected) in enumerate(_word_selection(out, tokenizer)):
        for word in words:
            hit = len(selected.intersection(word))
            assert hit in (0, len(word)), (row, word, selected)  # all pieces of a word, or none
            multi_piece_words += hit > 1
            # Greedy over a random word order: a word left out did not fit any more.
            assert hit or counts[row] + len(word) > official[row], (row, word, counts[row])
    assert multi_piece_words > 200
    # The same check fails without whole-word masking: it splits words.
    plain = _run(MLMMasker.from_tokenizer(tokenizer, max_predictions_per_seq=P, seed=0, count_special_tokens=True),
                 packed)
    assert any(0 < len(selected.intersection(w)) < len(w)
               for words, selected in _word_selection(plain, tokenizer) for w in words)

    valid = out["masked_lm_ids"] != IGNORE_LABEL
    new = np.take_along_axis(out["masked_input_word_ids"], out["masked_lm_positions"], 1)[valid]
    old = out["masked_lm_ids"][valid]
    n = len(old)
    is_mask, is_same = new == tokenizer.mask_token_id, new == old
    for fraction, rate in ((is_mask.mean(), 0.8), ((~is_mask & ~is_same).mean(), 0.1), (is_same.mean(), 0.1)):
        assert abs(fraction - rate) < 4 * np.sqrt(rate * (1 - rate) / n), (fraction, rate)


def test_whole_word_masking_official_greedy_rule():
    """[CLS] ##a b ##c [SEP] ##d e ##f [SEP]: words {1}, {2, 3, 5} (a "##" piece joins the
    previous candidate's word across [SEP], as official) and {6, 7}. With a budget of 3 and
    the official greedy rule (skip a word that does not fit, go on), the selection is
    {2, 3, 5} when that word is visited first (probability 1/3), else {1, 6, 7}."""
    row = [2, 40, 10, 41, 3, 42, 11, 43, 3, 0, 0]
    n = 600
    features = {"input_word_ids": np.array([row] * n, np.int32),
                "input_mask": np.array([[1] * 9 + [0] * 2] * n, np.int32),
                "input_type_ids": np.zeros([n, 11], np.int32)}
    masker = MLMMasker(50, 4, [0, 2, 3], masked_lm_prob=0.5, max_predictions_per_seq=4, seed=1,
                       whole_word_masking=True, continuation_token_ids=range(40, 50))
    out = _run(masker, features, batch_size=100)  # inside dataset.map
    positions = [tuple(p) for p in out["masked_lm_positions"].tolist()]
    assert set(positions) == {(2, 3, 5, 0), (1, 6, 7, 0)}
    share = positions.count((2, 3, 5, 0)) / n
    assert abs(share - 1 / 3) < 4 * np.sqrt(2 / 9 / n), share
    assert (out["masked_lm_ids"][:, 3] == IGNORE_LABEL).all()
    # Unbatched, eager, and an all-padding batch.
    one = masker({k: v[0] for k, v in features.items()})
    assert tuple(one["masked_lm_positions"].numpy()) in set(positions)
    empty = masker({"input_word_ids": tf.constant([[2, 3, 0]]), "input_mask": tf.constant([[1, 1, 0]]),
                    "input_type_ids": tf.zeros([1, 3], tf.int32)})
    assert empty["masked_lm_ids"].numpy().tolist() == [[IGNORE_LABEL] * 4]


def test_whole_word_masking_arguments(tokenizer):
    with pytest.raises(ValueError, match="continuation_token_ids"):
        MLMMasker(10, 4, [0], whole_word_masking=True)
    with pytest.raises(ValueError, match="official"):
        MLMMasker(10, 4, [0], rule="keras_hub", whole_word_masking=True, continuation_token_ids=[5])
    with pytest.raises(ValueError, match="vocabulary"):
        MLMMasker(10, 4, [0], whole_word_masking=True, continuation_token_ids=[10])
    assert MLMMasker.from_tokenizer(tokenizer).continuation_token_ids is None
