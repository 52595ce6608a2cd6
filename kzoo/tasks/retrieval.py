"""SQuAD paragraph retrieval: every question against every paragraph of held-back articles.

`squad_retrieval_split` holds back a seeded share of a SQuAD file's articles: their questions
are the queries and their paragraphs the corpus (each question's one relevant paragraph is the
one it was asked about); the other articles' (question, paragraph) pairs are training material
for a dual encoder (`kzoo.tasks.dual_encoder`). `evaluate_retrieval` embeds both sides with a
checkpoint (any `--init_checkpoint` source, pooled as the checkpoint was trained) or an exported
embedding SavedModel (`kzoo.export.export_sentence_encoder`), runs exact search
(`kzoo.retrieval.exact_search`) and reports recall@1/5/10, MRR@10 and nDCG@10; optionally also
the FAISS index's recall against the exact top 10.
"""

import dataclasses
import json
import os
import time

import numpy as np
import tensorflow as tf
from absl import logging

from kzoo import checkpoints, models, retrieval, text
from kzoo import io as kzoo_io
from kzoo.export.sentence import sentence_seq_length

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The held-back articles' seed that run_dual_encoder and evaluate_retrieval share by default.
SPLIT_SEED = 42
SQUAD_FILE = os.path.join(os.path.dirname(REPO), "shared", "data", "squad_v1.1", "dev-v1.1-even-articles.json")


@dataclasses.dataclass
class SquadSplit:
    """Held-back retrieval queries and corpus, and the training pairs of the other articles."""

    train_pairs: list  # (question, paragraph)
    queries: list  # questions of the held-back articles
    corpus: list  # their paragraphs
    relevant: list  # per query, the index of its paragraph in `corpus`
    eval_titles: list
    train_titles: list


def read_squad_articles(path):
    """[(title, [(paragraph, [question, ...]), ...]), ...] of a SQuAD v1.1/v2.0 JSON file."""
    try:
        document = json.loads(kzoo_io.read_text(path))
    except FileNotFoundError:
        raise ValueError(f"{path}: SQuAD file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a SQuAD JSON file ({e})") from None
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise ValueError(f"{path}: expected a SQuAD JSON object with a 'data' list of articles")
    articles = []
    for a, article in enumerate(document["data"]):
        try:
            paragraphs = [(p["context"], [q["question"] for q in p["qas"]]) for p in article["paragraphs"]]
        except (KeyError, TypeError) as e:
            raise ValueError(f"{path}: article {a}: missing or malformed field {e}") from None
        articles.append((article.get("title", f"article {a}"), paragraphs))
    if not articles:
        raise ValueError(f"{path}: no articles")
    return articles


def squad_retrieval_split(path, eval_fraction=0.25, seed=SPLIT_SEED):
    """Holds back round(eval_fraction * articles) articles (at least one, a seeded choice) as the
    retrieval evaluation; the others give the training pairs. `eval_fraction` 1.0 evaluates on
    every article (no training pairs); 0 holds none back (training pairs only)."""
    if not 0.0 <= eval_fraction <= 1.0:
        raise ValueError(f"eval_fraction must be in [0, 1], got {eval_fraction}")
    articles = read_squad_articles(path)
    count = 0 if eval_fraction == 0 else max(1, round(eval_fraction * len(articles)))
    held = set(np.random.default_rng(seed).permutation(len(articles))[:count].tolist())
    split = SquadSplit([], [], [], [], [], [])
    for a, (title, paragraphs) in enumerate(articles):
        if a in held:
            split.eval_titles.append(title)
            for paragraph, questions in paragraphs:
                split.corpus.append(paragraph)
                split.queries.extend(questions)
                split.relevant.extend([len(split.corpus) - 1] * len(questions))
        else:
            split.train_titles.append(title)
            split.train_pairs.extend((q, paragraph) for paragraph, questions in paragraphs for q in questions)
    return split


def text_embedder(model, tokenizer, packer):
    """A traced fn: tf.string [batch] -> the sentence encoder's float32 [batch, dim] embeddings."""
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def fn(texts):
        return model(packer(tokenizer(texts)), training=False)
    return fn


def checkpoint_embedder(source, pooling=None, normalize=None, max_seq_length=None):
    """(fn: tf.string [batch] -> float32 [batch, dim], description) of a checkpoint, pooled and
    truncated as it was trained unless told otherwise."""
    pretrained = checkpoints.load_pretrained(source)
    model = models.sentence_encoder(pretrained, pooling=pooling, normalize=normalize)
    length = sentence_seq_length(model, max_seq_length)
    tokenizer = pretrained.tokenizer
    packer = text.BertPacker.from_tokenizer(tokenizer, length, dynamic_length=True)
    pool = model.get_layer("pooling")
    return text_embedder(model, tokenizer, packer), f"{source}: {pool.mode} pooling, normalize={pool.normalize}, {length} tokens"


def saved_model_embedder(path):
    """(fn, description) of an embedding SavedModel (a version folder, or a base path: its latest)."""
    from kzoo.export.versions import latest_version

    path = os.fspath(path)
    if not kzoo_io.exists(kzoo_io.join(path, "saved_model.pb")):
        latest = latest_version(path)
        if latest is None:
            raise ValueError(f"{path}: neither a SavedModel nor a base path with integer versions")
        path = latest
    signature = tf.saved_model.load(path).signatures["serving_default"]
    if "embeddings" not in signature.structured_outputs:
        raise ValueError(f"{path}: serving_default has no `embeddings` output (got "
                         f"{sorted(signature.structured_outputs)}); export with export_sentence_encoder")
    return (lambda texts: signature(text=texts)["embeddings"]), f"SavedModel {path}"


@dataclasses.dataclass
class RetrievalEval:
    """What `evaluate_retrieval` evaluates.

    Attributes:
        squad_file: SQuAD JSON (default: ../shared's 24 articles).
        init_checkpoint: the encoder (every source `load_pretrained` takes); ignored with saved_model.
        saved_model: an exported embedding SavedModel instead of a checkpoint.
        pooling, normalize, max_seq_length: override the checkpoint's (None: its own).
        eval_fraction, split_seed: the held-back articles (`squad_retrieval_split`; the same defaults as
            `run_dual_encoder`'s, so a model trained there is evaluated on articles it never saw).
        batch_size: texts embedded per call.
        approximate: also search a FAISS index and report its recall against exact search.
        num_probes: the FAISS index's searched lists per query.
        output_json: where the results go (None: not written).
    """

    squad_file: str = SQUAD_FILE
    init_checkpoint: str = checkpoints.MINILM
    saved_model: str = None
    pooling: str = None
    normalize: bool = None
    max_seq_length: int = None
    eval_fraction: float = 0.25
    split_seed: int = SPLIT_SEED
    batch_size: int = 64
    approximate: bool = False
    num_probes: int = 8
    output_json: str = None


def evaluate_retrieval(run, embedder=None, corpus_embedder=None):
    """Embeds the held-back questions and paragraphs, searches, scores; returns a JSON-able dict.
    `embedder` ((fn, description)) replaces the run's model; `corpus_embedder` (a fn) embeds the
    paragraphs instead of it (a dual encoder's second tower)."""
    split = squad_retrieval_split(run.squad_file, run.eval_fraction, run.split_seed)
    if not split.queries:
        raise ValueError(f"{run.squad_file}: eval_fraction {run.eval_fraction} holds back no questions")
    if embedder is None:
        embedder = (saved_model_embedder(run.saved_model) if run.saved_model else
                    checkpoint_embedder(run.init_checkpoint, run.pooling, run.normalize, run.max_seq_length))
    fn, description = embedder
    logging.info("retrieval: %d questions against %d paragraphs of %d held-back articles (%s)", len(split.queries),
                 len(split.corpus), len(split.eval_titles), description)
    start = time.time()
    corpus = retrieval.embed(corpus_embedder or fn, split.corpus, run.batch_size)
    queries = retrieval.embed(fn, split.queries, run.batch_size)
    embed_seconds = time.time() - start
    depth = min(10, len(corpus))
    if depth < 10:
        raise ValueError(f"{run.squad_file}: the held-back articles have {len(corpus)} paragraphs; the metrics "
                         "need at least 10 (raise eval_fraction)")
    _, indices = retrieval.exact_search(queries, corpus, k=10)
    result = {"model": description, "squad_file": run.squad_file, "eval_articles": split.eval_titles,
              "queries": len(split.queries), "corpus": len(split.corpus),
              "metrics": retrieval.retrieval_metrics(indices, split.relevant), "embed_seconds": embed_seconds}
    if run.approximate:
        index = retrieval.ApproximateIndex(corpus, num_probes=run.num_probes)
        _, approximate = index.search(queries, k=10)
        result["approximate"] = {"num_lists": index.num_lists, "num_probes": index.num_probes,
                                 "recall_of_exact_top10": retrieval.overlap_with_exact(approximate, indices),
                                 "metrics": retrieval.retrieval_metrics(approximate, split.relevant)}
    if run.output_json:
        kzoo_io.write_json(run.output_json, result, indent=2)
    return result
