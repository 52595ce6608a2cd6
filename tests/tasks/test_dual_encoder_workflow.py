"""run_dual_encoder end to end on a tiny random BERT with the real vocabulary: SQuAD pairs of the training
articles with retrieval on the held-back ones before and after, a pairs file with hard negatives and
separate towers, the exports, and bad input refused before training."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from kzoo.data.pairs import no_duplicate_batches, read_pairs
from kzoo.tasks.dual_encoder import DualEncoderRun, run_dual_encoder
from kzoo.tasks.retrieval import RetrievalEval, evaluate_retrieval, squad_retrieval_split
from tests.conftest import shared_path


@pytest.fixture(scope="module")
def small_squad(tmp_path_factory):
    """The first four SQuAD articles of ../shared, each cut to 12 paragraphs."""
    with open(shared_path("data", "squad_v1.1", "dev-v1.1-even-articles.json"), encoding="utf-8") as f:
        document = json.load(f)
    articles = [dict(a, paragraphs=a["paragraphs"][:12]) for a in document["data"][:4]]
    path = tmp_path_factory.mktemp("small_squad") / "squad.json"
    path.write_text(json.dumps({"data": articles, "version": "1.1"}), encoding="utf-8")
    return str(path)


def test_squad_split_holds_articles_back(small_squad):
    split = squad_retrieval_split(small_squad, eval_fraction=0.25, seed=0)
    assert len(split.eval_titles) == 1 and len(split.train_titles) == 3
    assert len(split.corpus) == 12 and len(split.queries) == len(split.relevant) > 12
    assert not {p for _, p in split.train_pairs} & set(split.corpus)  # no held-back paragraph is trained on
    again = squad_retrieval_split(small_squad, eval_fraction=0.25, seed=0)
    assert again.eval_titles == split.eval_titles  # seeded


def test_batches_never_repeat_a_text():
    rows = [(f"q{i}", f"p{i // 4}") for i in range(40)]  # four questions per paragraph, as SQuAD's
    order = no_duplicate_batches(rows, 8, np.random.default_rng(0))
    assert len(order) % 8 == 0 and len(order) >= 8 and len(set(order.tolist())) == len(order)
    for b in range(0, len(order), 8):
        paragraphs = [rows[i][1] for i in order[b:b + 8]]
        assert len(set(paragraphs)) == 8


def test_squad_run_improves_retrieval_and_exports(tmp_path, small_squad, tiny_bert_folder):
    run = DualEncoderRun(squad_file=small_squad, init_checkpoint=tiny_bert_folder(2, hf=True), max_seq_length=48,
                         train_batch_size=8, num_train_epochs=3, learning_rate=5e-4, eval_fraction=0.25, split_seed=0,
                         model_dir=str(tmp_path / "run"), export_dir=str(tmp_path / "export"), verbose=0)
    result = run_dual_encoder(run)
    before, after = result["retrieval_before"]["metrics"], result["retrieval_after"]["metrics"]
    assert result["retrieval_after"]["corpus"] == 12
    losses = result["history"]["loss"]
    assert losses[-1] < losses[0]  # the in-batch objective went down
    assert after["mrr@10"] > before["mrr@10"]  # and retrieval on unseen articles got better
    for m in (before, after):
        assert 0 <= m["recall@1"] <= m["recall@5"] <= m["recall@10"] <= 1
    written = json.loads((tmp_path / "run" / "results.json").read_text())
    assert written["retrieval_after"]["metrics"] == after
    logged = {}  # TensorBoard: the retrieval metrics at step 0 and after the last step
    for event_file in (tmp_path / "run" / "logs" / "retrieval").iterdir():
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            for value in event.summary.value:
                logged[value.tag, event.step] = float(tf.make_ndarray(value.tensor))
    steps = result["steps_per_epoch"] * 3
    assert logged[("retrieval/mrr@10", 0)] == pytest.approx(before["mrr@10"])
    assert logged[("retrieval/mrr@10", steps)] == pytest.approx(after["mrr@10"])
    # the export: text in, embeddings out, equal to the trained tower; evaluated from the SavedModel again
    served = tf.saved_model.load(result["export_path"]).signatures["serving_default"]
    texts = ["Who wrote the report?", ""]
    from kzoo.text import BertPacker
    from kzoo.training.common import load_tokenizer

    tokenizer = load_tokenizer(str(tmp_path / "run"))
    model = result["model"].anchor_encoder
    expected = model(BertPacker.from_tokenizer(tokenizer, 48, dynamic_length=True)(tokenizer(tf.constant(texts))))
    np.testing.assert_allclose(served(text=tf.constant(texts))["embeddings"], expected, atol=1e-5)
    again = evaluate_retrieval(RetrievalEval(squad_file=small_squad, saved_model=str(tmp_path / "export"),
                                             eval_fraction=0.25, split_seed=0))
    assert again["metrics"] == pytest.approx(after, abs=1.0 / again["queries"])


def test_pairs_file_with_negatives_and_separate_towers(tmp_path, tiny_bert_folder):
    path = tmp_path / "pairs.jsonl"
    rows = [{"q": f"question number {i} about topic {i % 7}", "d": f"a passage on topic {i % 7} and item {i}",
             "neg": f"an unrelated passage {i}"} for i in range(40)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    run = DualEncoderRun(train_file=str(path), anchor_column="q", positive_column="d", negative_column="neg",
                         init_checkpoint=tiny_bert_folder(2, hf=True), shared_towers=False, symmetric=True,
                         max_seq_length=24, train_batch_size=8, learning_rate=1e-3, model_dir=str(tmp_path / "run"),
                         export_dir=str(tmp_path / "export"), verbose=0)
    result = run_dual_encoder(run)
    model = result["model"]
    assert not model.shared and model.anchor_encoder is not model.positive_encoder
    assert result["steps_per_epoch"] == 5 and np.isfinite(result["history"]["loss"]).all()
    assert os.path.isdir(result["export_path"]) and result["positive_export_path"].startswith(
        str(tmp_path / "export_positive"))
    assert os.path.exists(tmp_path / "run" / "positive_model.keras")
    # the towers were trained apart: they differ now
    a = [w.numpy() for w in model.anchor_encoder.weights]
    p = [w.numpy() for w in model.positive_encoder.weights]
    assert max(float(np.abs(x - y).max()) for x, y in zip(a, p)) > 1e-4


def test_bad_input_is_refused_before_training(tmp_path, no_training):
    bad = tmp_path / "pairs.tsv"
    bad.write_text("anchor\tpositive\nfine\talso fine\nonly one field\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"pairs.tsv:3: expected 2 fields, found 1"):
        read_pairs(bad)
    with pytest.raises(ValueError, match=r"no column 'query'"):
        read_pairs(bad, anchor_column="query")
    headerless = tmp_path / "two.csv"
    headerless.write_text('"a question",a passage\nanother one,"another, passage"\n', encoding="utf-8")
    assert read_pairs(headerless).positives == ["a passage", "another, passage"]
    for kwargs, message in [
        (dict(train_file=str(bad), squad_file="x.json"), "give one of train_file"),
        (dict(train_file=str(bad), shared_towers=False, lora_rank=4), "lora_rank: these adaptation options"),
        (dict(train_file=str(bad), train_batch_size=1), "train_batch_size must be >= 2"),
        (dict(train_file=str(bad), static_shapes=True), "static_shapes"),
    ]:
        with pytest.raises(ValueError, match=message):
            run_dual_encoder(DualEncoderRun(model_dir=str(tmp_path / "run"), export_dir="", **kwargs))
    assert not os.path.exists(tmp_path / "run")
