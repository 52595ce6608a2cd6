"""tools/run_pretraining.py and tools/fill_mask.py end to end on real text.

Continued pretraining: a small BERT is pretrained from scratch on movie-review
sentences (SST-2), written as an official checkpoint with its cls/* heads,
then pretrained further on Wikipedia paragraphs (SQuAD contexts) from that
checkpoint. The masked-LM loss on held-out Wikipedia articles must fall.
The tests whose assertions do not depend on the text (ELECTRA, bad runs) use
the shipped intents example instead, and so run without ../shared.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from kzoo.checkpoints import load_official_bert, load_pretrained
from kzoo.configs import BertConfig
from kzoo.data import EXAMPLE_INTENTS, read_task
from kzoo.data import pretraining as pretraining_data
from kzoo.checkpoints import load_masked_lm
from kzoo.models import bert_classifier, fill_mask
from kzoo.tasks.pretraining import PretrainingRun, run_pretraining
from tests.conftest import REPO, minilm_vocab_file, shared_path

TINY = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=64)
COMMON = dict(max_seq_length=48, max_predictions_per_seq=8, train_batch_size=32, eval_batch_size=64,
              learning_rate=2e-3, verbose=0)


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """SST-2 sentences in pseudo-documents of 8, and SQuAD articles split into
    training articles and held-out articles, as one-sentence-per-line files."""
    root = tmp_path_factory.mktemp("corpora")
    vocab = minilm_vocab_file()
    with open(shared_path("data", "sst2", "train.tsv"), encoding="utf-8") as f:
        sentences = [line.split("\t")[0].strip() for line in f.read().splitlines()[1:]]
    sentences = [s for s in sentences if len(s.split()) >= 6][:1600]
    pretraining_data.write_documents([sentences[i:i + 8] for i in range(0, len(sentences), 8)], root / "sst2.txt")
    articles = pretraining_data.squad_documents(shared_path("data", "squad_v1.1", "dev-v1.1-even-articles.json"))
    pretraining_data.write_documents(articles[:8], root / "wiki_train.txt")
    pretraining_data.write_documents(articles[20:], root / "wiki_heldout.txt")
    BertConfig(**TINY).to_json_file(root / "bert_config.json")
    return {"root": root, "vocab": vocab}


@pytest.fixture(scope="module")
def intents_corpus(tmp_path_factory):
    """The shipped intents example (kzoo/data/examples/intents.tsv) as 3 documents of 120
    sentences, one sentence per line, with the tiny config and the real uncased vocabulary."""
    root = tmp_path_factory.mktemp("intents_corpus")
    texts = read_task("tsv", EXAMPLE_INTENTS).texts
    pretraining_data.write_documents([texts[i:i + 120] for i in range(0, len(texts), 120)], root / "intents.txt")
    BertConfig(**TINY).to_json_file(root / "bert_config.json")
    return {"root": root, "documents": root / "intents.txt", "vocab": minilm_vocab_file()}


@pytest.fixture(scope="module")
def general_model(corpora):
    """Stage 1: from scratch on SST-2 (MLM + NSP)."""
    root = corpora["root"]
    result = run_pretraining(PretrainingRun(
        input_files=str(root / "sst2.txt"), bert_config_file=str(root / "bert_config.json"),
        vocab_file=corpora["vocab"], model_dir=str(root / "general"), num_train_epochs=2, **COMMON))
    return result


def test_continued_pretraining_lowers_held_out_mlm_loss(corpora, general_model):
    root = corpora["root"]
    general = general_model
    assert general["eval_after"]["mlm_logits_token_loss"] < general["eval_before"]["mlm_logits_token_loss"] - 1.0
    folder = root / "general"
    assert {"bert_config.json", "vocab.txt", "kzoo_tokenizer.json", "results.json", "bert_model.ckpt.index",
            "checkpoint"} <= set(os.listdir(folder))

    # Stage 2: continue from the stage-1 checkpoint on Wikipedia; held-out articles never seen.
    result = run_pretraining(PretrainingRun(
        input_files=str(root / "wiki_train.txt"), eval_files=str(root / "wiki_heldout.txt"),
        init_checkpoint=str(folder), model_dir=str(root / "domain"), num_train_epochs=1, **COMMON))
    report = result["init_report"]
    assert report["missing"] == [] and report["unused"] == []  # encoder and both heads came from stage 1
    assert report["loaded"] == 39 + 7
    before = result["eval_before"]["mlm_logits_token_loss"]
    after = result["eval_after"]["mlm_logits_token_loss"]
    print(f"held-out Wikipedia MLM loss: {before:.3f} -> {after:.3f}")
    assert after < before - 0.2
    with open(root / "domain" / "results.json", encoding="utf-8") as f:
        assert json.load(f)["eval_after"]["mlm_logits_token_loss"] == pytest.approx(after)

    # The output is an official folder: fine-tuning loads it, and the heads show up as unused there.
    pretrained = load_pretrained(str(root / "domain"))
    classifier = bert_classifier(pretrained.encoder, num_classes=2)
    report = load_official_bert(classifier, str(root / "domain"), strict=True)
    assert len(report.unused) == 7 and all(n.startswith("cls/") for n in report.unused)
    assert pretrained.lower_case is True


def test_fill_mask_cli_prints_the_model_s_top_k(corpora, general_model):
    folder = str(corpora["root"] / "general")
    text = "this movie is [MASK] and the acting is [MASK] ."
    model, tokenizer = load_masked_lm(folder)
    expected = fill_mask(model, tokenizer, [text], top_k=3)[0]
    assert len(expected) == 2 and all(len(p) == 3 for p in expected)
    for predictions in expected:
        probabilities = [p for _, p in predictions]
        assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1
    run = subprocess.run([sys.executable, os.path.join(REPO, "tools", "fill_mask.py"), f"--checkpoint={folder}",
                          f"--text={text}", "--top_k=3"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.strip().splitlines()
    assert lines[0] == text
    for i, predictions in enumerate(expected, 1):
        shown = "  ".join(f"{token} {probability:.3f}" for token, probability in predictions)
        assert lines[i] == f"  [MASK] {i}: {shown}"


def test_fill_mask_refuses_a_checkpoint_without_mlm_head(minilm_official_folder):
    with pytest.raises(ValueError, match="no masked-LM head"):
        load_masked_lm(minilm_official_folder)


@pytest.mark.slow
def test_electra_on_official_tfrecords_under_xla(intents_corpus, tmp_path):
    """ELECTRA from TFRecords (official feature names, whole-word masking),
    static shapes and jit_compile; the discriminator is what gets saved."""
    from kzoo.data.masking import MLMMasker
    from kzoo.text import BertTokenizer

    root = intents_corpus["root"]
    tokenizer = BertTokenizer(intents_corpus["vocab"], lower_case=True)
    documents = pretraining_data.read_documents(str(intents_corpus["documents"]))
    masker = MLMMasker.from_tokenizer(tokenizer, max_predictions_per_seq=8, seed=3, count_special_tokens=True,
                                      whole_word_masking=True)
    instances = pretraining_data.create_instances(documents[:3], tokenizer, max_seq_length=48, nsp=False, seed=3)
    pretraining_data.write_pretraining_tfrecords(instances, masker, str(tmp_path / "train.tfrecord"))
    result = run_pretraining(PretrainingRun(
        input_files=str(tmp_path / "train.tfrecord"), bert_config_file=str(root / "bert_config.json"),
        vocab_file=intents_corpus["vocab"], model_dir=str(tmp_path / "electra"), objective="electra", nsp=False,
        static_shapes=True, num_train_steps=12, **COMMON))
    history = result["history"]
    assert {"generator_loss", "discriminator_loss", "discriminator_accuracy", "replaced_fraction"} <= set(history)
    reader = tf.train.load_checkpoint(str(tmp_path / "electra"))
    names = reader.get_variable_to_shape_map()
    assert not any(n.startswith("cls/") for n in names) and len(names) == 39
    encoder = load_pretrained(str(tmp_path / "electra")).encoder  # strict: every encoder variable is there
    np.testing.assert_array_equal(encoder.get_layer("embeddings").word_embeddings.embeddings.numpy(),
                                  reader.get_tensor("bert/embeddings/word_embeddings"))


def test_bad_runs_fail_before_training(intents_corpus, tmp_path):
    documents = str(intents_corpus["documents"])
    with pytest.raises(ValueError, match="no file matches"):
        run_pretraining(PretrainingRun(input_files=str(tmp_path / "nothing*.txt"), init_checkpoint="minilm"))
    with pytest.raises(ValueError, match="bert_config_file and vocab_file"):
        run_pretraining(PretrainingRun(input_files=documents))
    with pytest.raises(ValueError, match="objective"):
        run_pretraining(PretrainingRun(input_files=documents, init_checkpoint="minilm", objective="gpt"))
    small = BertConfig(**{**TINY, "vocab_size": 100})
    small.to_json_file(tmp_path / "small.json")
    with pytest.raises(ValueError, match="vocab_size 100"):
        run_pretraining(PretrainingRun(input_files=documents, bert_config_file=str(tmp_path / "small.json"),
                                       vocab_file=intents_corpus["vocab"], model_dir=str(tmp_path / "m")))
    assert not os.path.exists(tmp_path / "m" / "bert_model.ckpt.index")
