"""Retrieval with sentence embeddings: exact top-k search, an optional approximate index, metrics.

The name says what the module is for (semantic search and its evaluation), not how: the
exact search is a TensorFlow matmul over corpus embeddings computed in batches, and the
approximate index, for corpora too large to score in full per query, is FAISS (`faiss-cpu`,
the `ann` extra), which installs beside TensorFlow 2.21 from one abi3 wheel with no other
dependency than numpy (ScaNN's wheels pin their own TensorFlow).

- `embed(fn, texts, batch_size)`: embeddings of many texts, in batches, as float32 numpy.
- `exact_search(queries, corpus, k)`: (scores, indices) of the k highest inner products; with
  normalised embeddings the scores are cosine similarities. Ties go to the lower index.
- `ApproximateIndex(corpus, ...)`: an inverted-file FAISS index over the same inner product,
  `search(queries, k)` as `exact_search`; `overlap_with_exact` measures how many of the exact
  top k it finds.
- `retrieval_metrics(indices, relevant, ks)`: recall@k, MRR@10 and nDCG@10 with binary
  relevance (each query's relevant corpus indices; one index or a collection).
"""

import math

import numpy as np
import tensorflow as tf

METRIC_KS = (1, 5, 10)


def embed(fn, texts, batch_size=256):
    """`fn` (tf.string [batch] -> float32 [batch, dim], e.g. a SavedModel's `serving_default`
    wrapped to return its `embeddings`) over `texts` in batches; float32 numpy [len(texts), dim]."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    parts = [np.asarray(fn(tf.constant(texts[i:i + batch_size])), np.float32)
             for i in range(0, len(texts), batch_size)]
    if not parts:
        raise ValueError("no texts to embed")
    return np.concatenate(parts)


def _check(queries, corpus, k):
    queries, corpus = np.asarray(queries, np.float32), np.asarray(corpus, np.float32)
    if queries.ndim != 2 or corpus.ndim != 2 or queries.shape[1] != corpus.shape[1]:
        raise ValueError(f"queries and corpus must be [n, dim] with the same dim, got {queries.shape} and "
                         f"{corpus.shape}")
    if not 1 <= k <= len(corpus):
        raise ValueError(f"k must be in [1, {len(corpus)}] (the corpus size), got {k}")
    return queries, corpus


@tf.function(reduce_retracing=True)
def _top_k(queries, corpus, k):
    scores = tf.matmul(queries, corpus, transpose_b=True)
    return tf.math.top_k(scores, k=k, sorted=True)


def exact_search(queries, corpus, k=10, batch_size=1024):
    """The k corpus rows with the highest inner product with each query, best first.

    Args:
        queries: float32 [num_queries, dim].
        corpus: float32 [corpus_size, dim].
        k: how many per query (at most the corpus size).
        batch_size: queries scored per matmul ([batch_size, corpus_size] scores in memory).

    Returns:
        (scores float32 [num_queries, k], indices int64 [num_queries, k]).
    """
    queries, corpus = _check(queries, corpus, k)
    corpus_t = tf.constant(corpus)
    scores, indices = [], []
    for i in range(0, len(queries), batch_size):
        values, index = _top_k(tf.constant(queries[i:i + batch_size]), corpus_t, tf.constant(k))
        scores.append(values.numpy())
        indices.append(index.numpy().astype(np.int64))
    if not scores:
        return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
    return np.concatenate(scores), np.concatenate(indices)


class ApproximateIndex:
    """A FAISS inverted-file index (`IndexIVFFlat`, inner product) over `corpus`.

    Args:
        corpus: float32 [corpus_size, dim] (normalised embeddings: cosine search).
        num_lists: inverted lists (k-means cells); default about 4 * sqrt(corpus_size).
        num_probes: lists searched per query (more: slower, closer to exact).
        seed: k-means seed.
    """

    def __init__(self, corpus, num_lists=None, num_probes=8, seed=0):
        try:
            import faiss
        except ImportError:
            raise ImportError("the approximate index needs FAISS: pip install 'kzoo[ann]' (faiss-cpu)") from None
        corpus = np.ascontiguousarray(np.asarray(corpus, np.float32))
        if corpus.ndim != 2 or len(corpus) < 2:
            raise ValueError(f"corpus must be [corpus_size >= 2, dim], got {corpus.shape}")
        self.num_lists = num_lists or max(1, min(len(corpus) // 39, int(4 * math.sqrt(len(corpus)))))
        quantizer = faiss.IndexFlatIP(corpus.shape[1])
        self.index = faiss.IndexIVFFlat(quantizer, corpus.shape[1], self.num_lists, faiss.METRIC_INNER_PRODUCT)
        self.index.cp.seed = seed
        self.index.train(corpus)
        self.index.add(corpus)
        self.index.nprobe = min(num_probes, self.num_lists)
        self.size = len(corpus)
        self._quantizer = quantizer  # the index keeps a pointer to it

    @property
    def num_probes(self):
        return self.index.nprobe

    def search(self, queries, k=10):
        """(scores, indices) as `exact_search`; an index is -1 where fewer than k were found."""
        queries = np.ascontiguousarray(np.asarray(queries, np.float32))
        if not 1 <= k <= self.size:
            raise ValueError(f"k must be in [1, {self.size}] (the corpus size), got {k}")
        scores, indices = self.index.search(queries, k)
        return scores, indices.astype(np.int64)


def overlap_with_exact(approximate, exact):
    """Share of the exact top-k indices the approximate search also returned (recall of the
    approximate index against exact search), over all queries."""
    approximate, exact = np.asarray(approximate), np.asarray(exact)
    if approximate.shape != exact.shape:
        raise ValueError(f"shapes differ: {approximate.shape} and {exact.shape}")
    found = sum(len(set(a.tolist()) & set(e.tolist())) for a, e in zip(approximate, exact))
    return found / exact.size if exact.size else 0.0


def _relevant_sets(relevant, num_queries):
    sets = [{int(r)} if np.isscalar(r) or isinstance(r, (int, np.integer)) else {int(x) for x in r}
            for r in relevant]
    if len(sets) != num_queries:
        raise ValueError(f"{len(sets)} relevance entries for {num_queries} queries")
    empty = [i for i, s in enumerate(sets) if not s]
    if empty:
        raise ValueError(f"query {empty[0]} has no relevant corpus entry")
    return sets


def retrieval_metrics(indices, relevant, ks=METRIC_KS, cutoff=10):
    """Binary-relevance metrics of ranked results.

    Args:
        indices: int [num_queries, >= max(ks, cutoff)] ranked corpus indices, best first.
        relevant: per query, its relevant corpus index (int) or indices (a collection).
        ks: the k of recall@k.
        cutoff: the depth of MRR and nDCG.

    Returns:
        {"recall@k": mean over queries of |relevant in top k| / |relevant|, ...,
         "mrr@10": mean of 1 / rank of the first relevant result (0 past the cutoff),
         "ndcg@10": mean of DCG / ideal DCG with gains 1 / log2(rank + 1)}.
    """
    indices = np.asarray(indices)
    depth = max(max(ks), cutoff)
    if indices.ndim != 2 or indices.shape[1] < depth:
        raise ValueError(f"indices must be [num_queries, >= {depth}], got {indices.shape}")
    sets = _relevant_sets(relevant, len(indices))
    hits = np.array([[int(i) in s for i in row[:depth]] for row, s in zip(indices, sets)], bool)
    counts = np.array([len(s) for s in sets], np.float64)
    result = {f"recall@{k}": float(np.mean(hits[:, :k].sum(1) / counts)) for k in ks}
    first = np.where(hits[:, :cutoff].any(1), hits[:, :cutoff].argmax(1) + 1, 0)
    result[f"mrr@{cutoff}"] = float(np.mean(np.where(first > 0, 1.0 / np.maximum(first, 1), 0.0)))
    discounts = 1.0 / np.log2(np.arange(2, cutoff + 2))
    dcg = (hits[:, :cutoff] * discounts).sum(1)
    ideal = np.array([discounts[:min(int(c), cutoff)].sum() for c in counts])
    result[f"ndcg@{cutoff}"] = float(np.mean(dcg / ideal))
    result["queries"] = len(indices)
    return result
