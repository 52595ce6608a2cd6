"""kzoo.retrieval: exact search against numpy, the metrics against hand-computed values, the FAISS index
against exact search."""

import math

import numpy as np
import pytest

from kzoo import retrieval


def _unit(rng, n, dim):
    x = rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_exact_search_is_numpys_ranking():
    rng = np.random.default_rng(0)
    corpus, queries = _unit(rng, 300, 24), _unit(rng, 37, 24)
    corpus[7] = corpus[3]  # a tie: the lower index comes first
    queries[0] = corpus[3]
    scores, indices = retrieval.exact_search(queries, corpus, k=10, batch_size=8)
    full = queries.astype(np.float64) @ corpus.T.astype(np.float64)
    expected = np.argsort(-full, axis=1, kind="stable")[:, :10]
    assert indices.shape == scores.shape == (37, 10) and indices.dtype == np.int64
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(full, expected, 1), atol=1e-5)
    assert indices[0, :2].tolist() == [3, 7]
    with pytest.raises(ValueError, match=r"k must be in \[1, 300\]"):
        retrieval.exact_search(queries, corpus, k=301)
    with pytest.raises(ValueError, match="same dim"):
        retrieval.exact_search(queries[:, :5], corpus)


def test_metrics_by_hand():
    indices = np.array([[4, 1, 2, 3, 0, 5, 6, 7, 8, 9],     # relevant 4 at rank 1
                        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],     # relevant 9 at rank 10
                        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],     # relevant 11: not retrieved
                        [5, 0, 7, 1, 2, 3, 4, 6, 8, 9]])    # relevant {7, 9}: ranks 3 and 10
    m = retrieval.retrieval_metrics(indices, [4, 9, 11, [7, 9]])
    assert m["recall@1"] == pytest.approx(1 / 4)
    assert m["recall@5"] == pytest.approx((1 + 0 + 0 + 0.5) / 4)
    assert m["recall@10"] == pytest.approx((1 + 1 + 0 + 1) / 4)
    assert m["mrr@10"] == pytest.approx((1 + 1 / 10 + 0 + 1 / 3) / 4)
    d = lambda rank: 1 / math.log2(rank + 1)  # noqa: E731
    ndcg = [1.0, d(10), 0.0, (d(3) + d(10)) / (d(1) + d(2))]
    assert m["ndcg@10"] == pytest.approx(sum(ndcg) / 4)
    assert m["queries"] == 4
    with pytest.raises(ValueError, match="query 1 has no relevant"):
        retrieval.retrieval_metrics(indices[:2], [4, []])
    with pytest.raises(ValueError, match=r"indices must be \[num_queries, >= 10\]"):
        retrieval.retrieval_metrics(indices[:, :5], [4, 9, 11, 7])


def test_approximate_index_against_exact_search():
    pytest.importorskip("faiss", reason="faiss-cpu (the ann extra) builds the approximate index")
    rng = np.random.default_rng(1)
    centers = _unit(rng, 40, 32)
    corpus = centers[rng.integers(0, 40, 4000)] + 0.3 * _unit(rng, 4000, 32)  # clustered, as embeddings are
    corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    queries = corpus[rng.choice(4000, 200, replace=False)] + 0.1 * _unit(rng, 200, 32)
    _, exact = retrieval.exact_search(queries, corpus, k=10)
    index = retrieval.ApproximateIndex(corpus, num_probes=4)
    _, approximate = index.search(queries, k=10)
    overlap = retrieval.overlap_with_exact(approximate, exact)
    assert 0.5 < overlap <= 1.0
    index.index.nprobe = index.num_lists  # every list searched: exact
    _, everything = index.search(queries, k=10)
    assert retrieval.overlap_with_exact(everything, exact) == pytest.approx(1.0, abs=2e-3)  # ties may swap
    assert retrieval.overlap_with_exact(approximate, exact) <= retrieval.overlap_with_exact(everything, exact)
