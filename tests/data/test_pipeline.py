import collections

import numpy as np
import pytest

from kzoo.data import classification_dataset, num_batches, read_task, token_lengths
from kzoo.text import BertPacker, BertTokenizer
from tests.conftest import minilm_vocab_file, shared_path


@pytest.fixture(scope="module")
def tokenizer():
    return BertTokenizer(minilm_vocab_file())


@pytest.fixture(scope="module")
def sst2():
    examples = read_task("sst2", shared_path("data", "sst2", "train.tsv"))
    return examples.subset(range(2000))


def _collect(ds):
    ids, labels, padding = [], [], 0
    for features, y in ds:
        mask = features["input_mask"].numpy()
        padding += int((mask == 0).sum())
        for row, m in zip(features["input_word_ids"].numpy(), mask):
            ids.append(tuple(row[m == 1]))
        labels.extend(y.numpy().tolist())
    return ids, labels, padding


def test_bucketing_keeps_every_example_and_cuts_padding(tokenizer, sst2):
    packer = BertPacker.from_tokenizer(tokenizer, 64, dynamic_length=True)
    labels = sst2.label_ids(["0", "1"])
    plain = classification_dataset(sst2.texts, labels, tokenizer, packer, 32, shuffle=True, seed=1)
    bucketed = classification_dataset(sst2.texts, labels, tokenizer, packer, 32, shuffle=True, seed=1,
                                      bucket_boundaries=[8, 16, 24, 32, 48])
    plain_ids, plain_labels, plain_padding = _collect(plain)
    bucket_ids, bucket_labels, bucket_padding = _collect(bucketed)
    # Same multiset of (packed example, label) pairs: nothing lost or duplicated.
    assert collections.Counter(zip(plain_ids, plain_labels)) == collections.Counter(zip(bucket_ids, bucket_labels))
    print(f"padding tokens: per-batch dynamic {plain_padding}, bucketed {bucket_padding}")
    assert bucket_padding < 0.5 * plain_padding


def test_static_shapes_and_prediction_order(tokenizer, sst2):
    packer = BertPacker.from_tokenizer(tokenizer, 40)
    ds = classification_dataset(sst2.texts[:100], sst2.label_ids(["0", "1"])[:100], tokenizer, packer, 32,
                                drop_remainder=True)
    shapes = [tuple(f["input_word_ids"].shape) for f, _ in ds]
    assert shapes == [(32, 40)] * 3
    assert ds.element_spec[0]["input_word_ids"].shape.as_list() == [32, 40]
    predict = classification_dataset(sst2.texts[:70], None, tokenizer, packer, 32)
    rows = np.concatenate([f["input_word_ids"].numpy() for f in predict])
    want = packer(tokenizer(sst2.texts[:70]))["input_word_ids"].numpy()
    np.testing.assert_array_equal(rows, want)  # unlabelled: features only, input order


def test_pairs_and_token_lengths(tokenizer):
    texts, pairs = ["the cat sat", "a dog"], ["on the mat", "barked loudly at night"]
    assert token_lengths(texts, tokenizer).tolist() == [3, 2]
    packer = BertPacker.from_tokenizer(tokenizer, 16, dynamic_length=True)
    (features, labels), = list(classification_dataset(texts, [0, 1], tokenizer, packer, 2, texts_b=pairs))
    types = features["input_type_ids"].numpy()
    assert types[0].tolist()[:9] == [0, 0, 0, 0, 0, 1, 1, 1, 1] and labels.numpy().tolist() == [0, 1]


@pytest.mark.parametrize("drop_remainder", [False, True])
def test_num_batches_matches_the_dataset(tokenizer, sst2, drop_remainder):
    boundaries = [8, 16, 24, 32, 48]
    lengths = token_lengths(sst2.texts[:700], tokenizer)
    packer = BertPacker.from_tokenizer(tokenizer, 64, dynamic_length=not drop_remainder)
    ds = classification_dataset(sst2.texts[:700], sst2.label_ids(["0", "1"])[:700], tokenizer, packer, 32,
                                shuffle=True, seed=0, bucket_boundaries=boundaries, lengths=lengths,
                                drop_remainder=drop_remainder)
    counted = sum(1 for _ in ds)
    assert num_batches(lengths, 32, boundaries, drop_remainder) == counted
    # Bucketing leaves one partial batch per bucket: more batches than plain batching, or fewer when the
    # partial ones are dropped.
    assert counted > 700 // 32 + 1 if not drop_remainder else counted < 700 // 32
    assert num_batches(lengths, 32) == 22 and num_batches(lengths, 32, drop_remainder=True) == 21
