"""The workflows on the TPU path: --static_shapes (fixed lengths, full batches,
XLA-compiled step) and mixed precision, end to end on a tiny checkpoint."""

import json
import os
import shutil
import time

import numpy as np
import pytest
import tensorflow as tf

from kzoo.checkpoints import save_official_bert
from kzoo.configs import BertConfig
from kzoo.models import bert_encoder
from kzoo.tasks import ClassifierRun, SquadRun, TaggerRun, run_classifier, run_squad, run_tagger
from tests.conftest import minilm_vocab_file
from tests.tools.test_run_squad import _v2_file
from tests.tools.test_run_tagger import _sentences, _write_conll


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """An official checkpoint folder of a 1-layer, hidden-32 BERT with the real uncased vocabulary."""
    folder = tmp_path_factory.mktemp("tiny_bert")
    shutil.copyfile(minilm_vocab_file(), folder / "vocab.txt")
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    config.to_json_file(folder / "bert_config.json")
    save_official_bert(bert_encoder(config), folder / "bert_model.ckpt")
    return str(folder)


def test_classifier_static_shapes_compiles_with_xla(tmp_path, tiny_checkpoint):
    run = ClassifierRun(init_checkpoint=tiny_checkpoint, static_shapes=True, num_train_epochs=1,
                        max_seq_length=32, train_batch_size=16, model_dir=str(tmp_path / "run"), export_dir="",
                        verbose=0, dtype_policy="mixed_bfloat16")
    result = run_classifier(run)
    model = result["model"]
    assert model.jit_compile is True
    assert model.dtype_policy.name == "mixed_bfloat16"
    # 288 training sentences, full batches of 16 only: 18 steps, all at length 32.
    assert int(model.optimizer.iterations) == result["num_train"] // 16
    assert 0.0 <= result["metrics"]["accuracy"] <= 1.0


@pytest.mark.slow
def test_tagger_and_span_labeler_static_shapes(tmp_path, tiny_checkpoint):
    conll = tmp_path / "train.conll"
    _write_conll(conll, _sentences())
    result = run_tagger(TaggerRun(train_file=str(conll), init_checkpoint=tiny_checkpoint, static_shapes=True,
                                  num_train_epochs=1, max_seq_length=24, train_batch_size=8, eval_batch_size=8,
                                  model_dir=str(tmp_path / "tagger"), export_dir=str(tmp_path / "ner"), verbose=0))
    with open(tmp_path / "tagger" / "tags.json", encoding="utf-8") as f:
        assert "B-PER" in json.load(f)
    assert np.isfinite(result["history"]["loss"][-1])
    assert result["export_path"] == str(tmp_path / "ner" / "1")
    served = tf.saved_model.load(result["export_path"]).signatures["serving_default"](
        text=tf.constant(["Angela Merkel visited Paris ."]))
    assert served["num_words"].numpy().tolist() == [5]
    assert set(t.decode() for t in served["tags"].numpy()[0]) <= set(result["tag_names"])

    data = tmp_path / "tiny-v2.json"
    _v2_file(data)
    result = run_squad(SquadRun(train_file=str(data), predict_file=str(data), version_2_with_negative=True,
                                init_checkpoint=tiny_checkpoint, static_shapes=True, num_train_epochs=1,
                                max_seq_length=64, doc_stride=32, max_query_length=16, train_batch_size=4,
                                model_dir=str(tmp_path / "squad"), export_dir=str(tmp_path / "qa"), verbose=0))
    assert os.path.exists(tmp_path / "squad" / "predictions.json")
    context = "The meeting took place in Berlin on Monday."
    served = tf.saved_model.load(result["export_path"]).signatures["serving_default"](
        question=tf.constant(["Where was the meeting?"]), context=tf.constant([context]))
    start, end = int(served["start_char"][0]), int(served["end_char"][0])
    answer = served["answer"].numpy()[0].decode()
    assert answer == (context[start:end] if start >= 0 else "")
    assert np.isfinite(result["history"]["loss"][-1])


def test_tpu_run_without_a_tpu_fails_fast(tmp_path, tiny_checkpoint):
    start = time.time()
    with pytest.raises(ValueError, match="no TPU found"):
        run_classifier(ClassifierRun(init_checkpoint=tiny_checkpoint, distribution_strategy="tpu",
                                     model_dir=str(tmp_path / "run"), export_dir="", verbose=0))
    assert time.time() - start < 20
    assert not os.path.exists(tmp_path / "run" / "model.keras")
