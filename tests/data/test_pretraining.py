import os

import numpy as np
import pytest
import tensorflow as tf

from kzoo.data.conll import IGNORE_LABEL
from kzoo.data.masking import MLMMasker
from kzoo.data.pretraining import (
    create_instances,
    pretraining_dataset,
    pretraining_tfrecord_dataset,
    read_documents,
    split_sentences,
    squad_documents,
    write_documents,
    write_pretraining_tfrecords,
)
from kzoo.text.tokenizer import BertTokenizer
from tests.conftest import minilm_vocab_file, shared_path

SEQ = 128
P = 20
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# --- Documents ---------------------------------------------------------------------------------


def test_read_documents(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"First one.\nSecond one.\n\n \n  Third, alone.  \n\n")
    (tmp_path / "b.txt").write_bytes("\ufeffFourth.\r\nFifth caf\u00e9.".encode())  # BOM, CRLF, no final newline
    expected = [["First one.", "Second one."], ["Third, alone."], ["Fourth.", "Fifth caf\u00e9."]]
    assert read_documents(str(tmp_path / "*.txt")) == expected
    assert read_documents([tmp_path / "b.txt", str(tmp_path / "a.txt")]) == expected[2:] + expected[:2]
    assert read_documents(tmp_path / "a.txt") == expected[:2]
    (tmp_path / "bad.txt").write_bytes(b"ok\n\nfine\nbroken \xff\xfe here\n")
    with pytest.raises(ValueError, match=r"bad\.txt:4: invalid UTF-8"):
        read_documents(str(tmp_path / "*.txt"))
    with pytest.raises(ValueError, match=r"nothing-\*\.txt"):
        read_documents(str(tmp_path / "nothing-*.txt"))


def test_split_sentences():
    text = ("Mr. Smith met Dr. J. Watson in the U.S. last year. They talked, e.g. about No. 5! "
            "\"Really?\" she asked.  It ended at 5 p.m. Then 2 more came... And then\nnothing.")
    assert split_sentences(text) == [
        "Mr. Smith met Dr. J. Watson in the U.S. last year.",
        "They talked, e.g. about No. 5!",
        "\"Really?\" she asked.",
        "It ended at 5 p.m. Then 2 more came...",  # "p.m." is an abbreviation: no split
        "And then nothing.",
    ]
    assert split_sentences("version 2.0 is out. it is lower case. 3 items.") == [
        "version 2.0 is out. it is lower case.", "3 items."]
    assert split_sentences("  ") == []


@pytest.fixture(scope="module")
def squad_docs():
    return squad_documents(shared_path("data", "squad_v1.1", "dev-v1.1-even-articles.json"))


def test_squad_documents_round_trip(squad_docs, tmp_path):
    assert len(squad_docs) == 24
    assert sum(map(len, squad_docs)) > 4000
    assert squad_docs[0][0].startswith("Super Bowl 50 was an American football game") and squad_docs[0][0].endswith(
        "for the 2015 season.")
    path = tmp_path / "squad.txt"
    assert write_documents(squad_docs + [[], ["  "]], str(path)) == 24
    assert read_documents(str(path)) == squad_docs
    assert os.listdir(tmp_path) == ["squad.txt"]  # the temporary file was renamed


# --- Instances on a synthetic corpus -----------------------------------------------------------
# Every wordpiece "dDsS" names its document D and sentence S; every sentence has 6 of them, so
# truncation (< 6 tokens per instance at L=64) never removes a whole sentence.

N_DOCS, MAX_SENTENCES, SENTENCE = 500, 20, 6


@pytest.fixture(scope="module")
def synthetic():
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, MAX_SENTENCES + 1, N_DOCS)
    documents = [[" ".join([f"d{d}s{s}"] * SENTENCE) for s in range(n)] for d, n in enumerate(sizes)]
    vocabulary = SPECIALS + [f"d{d}s{s}" for d in range(N_DOCS) for s in range(MAX_SENTENCES)]
    return documents, BertTokenizer(vocabulary=vocabulary)


def _segments(instances):
    """Per row: (doc, sentence) arrays of segment A and of segment B (None without a second [SEP])."""
    rows = []
    for ids, mask in zip(instances["input_word_ids"], instances["input_mask"]):
        real = ids[:mask.sum()]
        seps = np.flatnonzero(real == SPECIALS.index("[SEP]"))
        bounds = [1, *seps]
        segs = [np.stack(divmod(real[a + (i > 0):b] - len(SPECIALS), MAX_SENTENCES), 1)
                for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))]
        rows.append((segs[0], segs[1] if len(segs) > 1 else None))
    return rows


def _check_segment(seg):
    """One document, consecutive whole sentences (only the first and last may be cut)."""
    assert len(seg) >= 1
    assert (seg[:, 0] == seg[0, 0]).all()
    steps = np.diff(seg[:, 1])
    assert ((steps == 0) | (steps == 1)).all()
    sentences, counts = np.unique(seg[:, 1], return_counts=True)
    assert (counts[1:-1] == SENTENCE).all()
    return seg[0, 0], sentences


def test_nsp_pairs_follow_the_official_rules(synthetic):
    documents, tokenizer = synthetic
    instances = create_instances(documents, tokenizer, max_seq_length=64, short_seq_prob=0.1, dupe_factor=2, seed=7)
    n = len(instances["input_word_ids"])
    assert instances["input_word_ids"].shape == (n, 64) and instances["next_sentence_labels"].shape == (n,)
    assert all(v.dtype == np.int32 for v in instances.values())
    used = {}
    for (a, b), label in zip(_segments(instances), instances["next_sentence_labels"]):
        assert b is not None and len(a) + len(b) <= 61
        doc_a, sentences_a = _check_segment(a)
        doc_b, sentences_b = _check_segment(b)
        if label:  # random next: B from another document
            assert doc_b != doc_a
        else:  # actual next: B continues A in the same document
            assert doc_b == doc_a and sentences_b[0] == sentences_a[-1] + 1
        for s in np.concatenate([sentences_a, [] if label else sentences_b]):
            used[doc_a, int(s)] = used.get((doc_a, int(s)), 0) + 1
    # Segments not used after A when B is a random next are put back: every sentence is in
    # exactly one A or actual-next B per pass (here 2 passes).
    assert used == {(d, s): 2 for d, doc in enumerate(documents) for s in range(len(doc))}
    # Single-sentence documents (always a random next) are there and did not crash.
    assert sum(len(doc) == 1 for doc in documents) > 10

    again = create_instances(documents, tokenizer, max_seq_length=64, short_seq_prob=0.1, dupe_factor=2, seed=7)
    for key in instances:
        np.testing.assert_array_equal(again[key], instances[key])
    other = create_instances(documents, tokenizer, max_seq_length=64, short_seq_prob=0.1, seed=8)
    assert not np.array_equal(other["input_word_ids"][:100], instances["input_word_ids"][:100])


def _short_documents(documents, tokenizer, short_seq_prob, seed):
    """nsp=False: (number of documents with >= 11 sentences, those whose longest instance is
    below the max of 62 tokens, i.e. whose target length was short)."""
    instances = create_instances(documents, tokenizer, max_seq_length=64, short_seq_prob=short_seq_prob, nsp=False,
                                 seed=seed)
    longest = {}
    for a, b in _segments(instances):
        assert b is None
        doc, _ = _check_segment(a)
        longest[doc] = max(longest.get(doc, 0), len(a))
    long_docs = [d for d, doc in enumerate(documents) if len(doc) * SENTENCE >= 62]
    return len(long_docs), sum(longest[d] < 62 for d in long_docs), instances


def test_short_seq_prob_and_single_segments(synthetic):
    """The official target is `randint(2, 62)` with probability short_seq_prob, drawn per
    document. Chunks of whole 6-token sentences then stay below 62 tokens exactly when the
    target is <= 60 (probability 59/61); a document of >= 11 sentences with the full target
    has an instance of 62."""
    documents, tokenizer = synthetic
    n, short, instances = _short_documents(documents, tokenizer, 0.3, seed=1)
    expected = 0.3 * 59 / 61
    assert n > 200
    assert abs(short / n - expected) < 4 * np.sqrt(expected * (1 - expected) / n), (short, n)
    assert _short_documents(documents, tokenizer, 0.0, seed=1)[1] == 0
    # Without NSP: [CLS] A [SEP], one type, no labels, every sentence in exactly one instance.
    assert set(instances) == {"input_word_ids", "input_mask", "input_type_ids"}
    assert (instances["input_type_ids"] == 0).all()
    lengths = instances["input_mask"].sum(1)
    assert (instances["input_word_ids"][np.arange(len(lengths)), lengths - 1] == SPECIALS.index("[SEP]")).all()
    seen = sorted((int(a[0, 0]), int(s)) for a, _ in _segments(instances) for s in np.unique(a[:, 1]))
    assert seen == sorted((d, s) for d, doc in enumerate(documents) for s in range(len(doc)))


def test_create_instances_errors(synthetic):
    documents, tokenizer = synthetic
    with pytest.raises(ValueError, match="at least 2 non-empty documents"):
        create_instances(documents[:1] + [[], ["", "   "]], tokenizer)
    one = create_instances([["d0s0 d0s0", "d0s1"]], tokenizer, max_seq_length=8, short_seq_prob=0.0, nsp=False)
    assert one["input_word_ids"].tolist() == [[2, 5, 5, 6, 3, 0, 0, 0]]  # a single document works without NSP
    assert create_instances([], tokenizer, nsp=False)["input_word_ids"].shape == (0, 128)
    with pytest.raises(ValueError, match="max_seq_length"):
        create_instances(documents, tokenizer, max_seq_length=4)
    with pytest.raises(ValueError, match="list of sentence strings"):
        create_instances(["a document as one string"], tokenizer, nsp=False)


# --- Instances and masking on real text --------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    return BertTokenizer(vocab_file=minilm_vocab_file(), lower_case=True)


@pytest.fixture(scope="module")
def instances(squad_docs, tokenizer):
    """~1,600 pairs of 128 from the SQuAD contexts (full target length: short_seq_prob 0)."""
    return create_instances(squad_docs, tokenizer, max_seq_length=SEQ, short_seq_prob=0.0, seed=3)


def test_instances_on_squad(instances, tokenizer):
    ids, mask, types = instances["input_word_ids"], instances["input_mask"], instances["input_type_ids"]
    n = len(ids)
    assert n > 1000
    cls, sep, pad = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id
    lengths = mask.sum(1)
    for row in range(n):
        length = lengths[row]
        assert (mask[row, :length] == 1).all() and (mask[row, length:] == 0).all()
        real = ids[row, :length]
        seps = np.flatnonzero(real == sep)
        assert real[0] == cls and len(seps) == 2 and seps[1] == length - 1 and 1 < seps[0] < length - 2
        assert not np.isin(real[1:-1], [cls, pad]).any()
        assert (ids[row, length:] == pad).all()
        assert (types[row, :seps[0] + 1] == 0).all() and (types[row, seps[0] + 1:length] == 1).all()
        assert (types[row, length:] == 0).all()
    assert (lengths <= SEQ).all() and (lengths == SEQ).mean() > 0.8  # chunks are filled to the target
    # Random next with probability 1/2, plus the chunks of a single sentence (always random;
    # with the full target only at document ends: <= 24).
    fraction = instances["next_sentence_labels"].mean()
    sigma = np.sqrt(0.25 / n)
    assert 0.5 - 4 * sigma < fraction < 0.5 + 4 * sigma + 24 / n, fraction


def _epoch(dataset):
    batches = list(dataset.as_numpy_iterator())
    return tuple({k: np.concatenate([b[i][k] for b in batches]) for k in batches[0][i]} for i in (0, 1))


def _check_masking(features, labels, instances, tokenizer):
    """Official count, positions, targets and 80/10/10 of masked rows in instance order."""
    original = instances["input_word_ids"]
    np.testing.assert_array_equal(features["input_mask"], instances["input_mask"])
    np.testing.assert_array_equal(features["input_type_ids"], instances["input_type_ids"])
    np.testing.assert_array_equal(labels["nsp_logits"], instances["next_sentence_labels"])
    positions, targets = features["masked_lm_positions"], labels["mlm_logits"]
    assert positions.shape == targets.shape == (len(original), P)
    assert positions.dtype == targets.dtype == np.int32
    valid = targets != IGNORE_LABEL
    counts = valid.sum(1)
    # The official count rule, per row: min(P, max(1, round(len(tokens) * 0.15))), [CLS]/[SEP] counted.
    np.testing.assert_array_equal(counts, [min(P, max(1, round(n * 0.15))) for n in instances["input_mask"].sum(1)])
    assert np.array_equal(valid, np.arange(P)[None] < counts[:, None])
    assert (positions[~valid] == 0).all()
    assert all((np.diff(row[:k]) > 0).all() for row, k in zip(positions, counts))
    at = np.take_along_axis(original, positions, 1)
    specials = [tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id]
    assert not np.isin(at[valid], specials).any()
    assert np.take_along_axis(instances["input_mask"], positions, 1)[valid].all()
    np.testing.assert_array_equal(targets[valid], at[valid])
    selected = np.zeros(original.shape, bool)
    np.put_along_axis(selected, positions, valid, 1)
    masked = features["input_word_ids"]
    np.testing.assert_array_equal(masked[~selected], original[~selected])  # only the selected positions change
    new = np.take_along_axis(masked, positions, 1)[valid]
    n = len(new)
    is_mask, is_same = new == tokenizer.mask_token_id, new == targets[valid]
    for fraction, rate in ((is_mask.mean(), 0.8), ((~is_mask & ~is_same).mean(), 0.1), (is_same.mean(), 0.1)):
        assert abs(fraction - rate) < 4 * np.sqrt(rate * (1 - rate) / n), (fraction, rate, n)
    return positions


def _masker(tokenizer, seed, **kwargs):
    return MLMMasker.from_tokenizer(tokenizer, max_predictions_per_seq=P, count_special_tokens=True, seed=seed,
                                    **kwargs)


def test_pretraining_dataset_masks_dynamically(instances, tokenizer):
    dataset = pretraining_dataset(instances, _masker(tokenizer, 0), 128, shuffle=False)
    features_spec, labels_spec = dataset.element_spec
    assert set(features_spec) == {"input_word_ids", "input_mask", "input_type_ids", "masked_lm_positions"}
    assert set(labels_spec) == {"mlm_logits", "nsp_logits"}
    assert features_spec["input_word_ids"].shape.as_list() == [None, SEQ]
    assert features_spec["masked_lm_positions"].shape.as_list() == labels_spec["mlm_logits"].shape.as_list() == [
        None, P]
    first = _check_masking(*_epoch(dataset), instances, tokenizer)
    second = _check_masking(*_epoch(dataset), instances, tokenizer)
    assert (first != second).any(1).mean() > 0.95  # a new mask on every pass
    again = _epoch(pretraining_dataset(instances, _masker(tokenizer, 0), 128, shuffle=False))[0]
    np.testing.assert_array_equal(again["masked_lm_positions"], first)  # a fixed seed reproduces

    # Shuffled, seeded, static batch dimension; a permutation of the instances.
    shuffled = pretraining_dataset(instances, _masker(tokenizer, 1), 64, seed=5, drop_remainder=True)
    assert shuffled.element_spec[0]["input_word_ids"].shape.as_list() == [64, SEQ]
    assert shuffled.element_spec[1]["nsp_logits"].shape.as_list() == [64]
    features, labels = _epoch(shuffled)
    assert len(features["input_mask"]) == len(instances["input_mask"]) // 64 * 64
    repeat = _epoch(pretraining_dataset(instances, _masker(tokenizer, 1), 64, seed=5, drop_remainder=True))
    np.testing.assert_array_equal(repeat[0]["input_word_ids"], features["input_word_ids"])
    assert not np.array_equal(features["input_type_ids"], instances["input_type_ids"][:len(features["input_mask"])])
    keys = lambda f: sorted(map(bytes, np.concatenate([f["input_mask"], f["input_type_ids"]], 1)))  # noqa: E731
    full = _epoch(pretraining_dataset(instances, _masker(tokenizer, 1), 64, seed=5))[0]
    assert keys(full) == keys(instances)
    two_epochs = pretraining_dataset(instances, _masker(tokenizer, 1), 64, repeat=True, drop_remainder=True)
    assert sum(1 for _ in two_epochs.take(2 * len(instances["input_mask"]) // 64)) == 2 * len(
        instances["input_mask"]) // 64

    with pytest.raises(ValueError, match="next_sentence_labels"):
        pretraining_dataset({k: v for k, v in instances.items() if k != "next_sentence_labels"},
                            _masker(tokenizer, 0), 8)


def test_pretraining_dataset_without_nsp_and_whole_words(squad_docs, tokenizer):
    single = create_instances(squad_docs[:6], tokenizer, max_seq_length=64, nsp=False, seed=0)
    assert "next_sentence_labels" not in single
    masker = _masker(tokenizer, 2, whole_word_masking=True)
    dataset = pretraining_dataset(single, masker, 32, nsp=False, drop_remainder=True)
    assert set(dataset.element_spec[1]) == {"mlm_logits"}
    assert dataset.element_spec[0]["masked_lm_positions"].shape.as_list() == [32, P]
    features, labels = _epoch(dataset)
    counts = (labels["mlm_logits"] != IGNORE_LABEL).sum(1)
    official = np.array([min(P, max(1, round(n * 0.15))) for n in features["input_mask"].sum(1)])
    assert (counts <= official).all() and counts.mean() > 0.95 * official.mean()
    # Whole words: a "##" piece is selected exactly when the piece before it is (a segment has
    # no [SEP] inside; a "##" piece right after [CLS], left by truncation, starts its own word).
    valid = labels["mlm_logits"] != IGNORE_LABEL
    selected = np.zeros(features["input_mask"].shape, bool)
    np.put_along_axis(selected, features["masked_lm_positions"], valid, 1)
    original = features["input_word_ids"].copy()  # masking hides some "##" pieces: restore them
    at = np.take_along_axis(original, features["masked_lm_positions"], 1)
    np.put_along_axis(original, features["masked_lm_positions"], np.where(valid, labels["mlm_logits"], at), 1)
    joins = np.isin(original[:, 1:], masker.continuation_token_ids) & (original[:, :-1] != tokenizer.cls_token_id)
    assert joins.sum() > 300 and (selected[:, 1:] & joins).sum() > 30
    np.testing.assert_array_equal(selected[:, 1:][joins], selected[:, :-1][joins])


# --- TFRecords ---------------------------------------------------------------------------------


def test_tfrecords_round_trip(instances, tokenizer, tmp_path):
    path = str(tmp_path / "pretraining.tfrecord")
    stats = write_pretraining_tfrecords(instances, _masker(tokenizer, 5), path, dupe_factor=2)
    n = len(instances["input_word_ids"])
    official = np.array([min(P, max(1, round(k * 0.15))) for k in instances["input_mask"].sum(1)])
    assert stats["instances"] == 2 * n and stats["masked_tokens"] == 2 * official.sum()
    assert stats["random_next"] == 2 * instances["next_sentence_labels"].sum()
    assert (stats["max_seq_length"], stats["max_predictions_per_seq"]) == (SEQ, P)
    assert os.listdir(tmp_path) == ["pretraining.tfrecord"]

    # The official feature names, kinds and lengths (what run_pretraining.py parses).
    record = next(iter(tf.data.TFRecordDataset(path))).numpy()
    feature = tf.train.Example.FromString(record).features.feature
    kinds = {name: (f.WhichOneof("kind"), len(getattr(f, f.WhichOneof("kind")).value)) for name, f in feature.items()}
    assert kinds == {"input_ids": ("int64_list", SEQ), "input_mask": ("int64_list", SEQ),
                     "segment_ids": ("int64_list", SEQ), "masked_lm_positions": ("int64_list", P),
                     "masked_lm_ids": ("int64_list", P), "masked_lm_weights": ("float_list", P),
                     "next_sentence_labels": ("int64_list", 1)}
    weights = np.array(feature["masked_lm_weights"].float_list.value)
    k = int(weights.sum())
    assert set(weights[:k]) == {1.0} and set(weights[k:]) <= {0.0} and k >= 1
    assert set(feature["masked_lm_ids"].int64_list.value[k:]) <= {0}

    # Read back: exactly what the same seeded masker gives on the fly (the writer's batches of 256).
    written = pretraining_tfrecord_dataset(path, SEQ, P, 256, shuffle=False)
    assert written.element_spec[0]["input_word_ids"].shape.as_list() == [None, SEQ]
    assert written.element_spec[1]["mlm_logits"].dtype == tf.int32
    read = _epoch(written)
    on_the_fly = pretraining_dataset(instances, _masker(tokenizer, 5), 256, shuffle=False)
    passes = [_epoch(on_the_fly), _epoch(on_the_fly)]
    for i in (0, 1):
        for part in (0, 1):
            for key in passes[i][part]:
                np.testing.assert_array_equal(read[part][key][i * n:(i + 1) * n], passes[i][part][key])
    first = _check_masking(*({k: v[:n] for k, v in part.items()} for part in read), instances, tokenizer)
    assert (first != read[0]["masked_lm_positions"][n:]).any(1).mean() > 0.95  # dupes have different masks

    shuffled = pretraining_tfrecord_dataset(str(tmp_path / "*.tfrecord"), SEQ, P, 64, seed=1, drop_remainder=True)
    assert shuffled.element_spec[0]["masked_lm_positions"].shape.as_list() == [64, P]
    assert sum(1 for _ in shuffled) == 2 * n // 64

    with pytest.raises(ValueError, match=r"pretraining\.tfrecord.*'input_ids' has 128 values.*expected 64"):
        pretraining_tfrecord_dataset(path, 64, P, 8)
    with pytest.raises(ValueError, match="masked_lm_positions"):
        pretraining_tfrecord_dataset(path, SEQ, 10, 8)
    with pytest.raises(ValueError, match="TFRecord files: no file matches"):
        pretraining_tfrecord_dataset(str(tmp_path / "none-*.tfrecord"), SEQ, P, 8)
