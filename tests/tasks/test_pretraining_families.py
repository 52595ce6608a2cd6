"""run_pretraining from the other families' checkpoints, and their masking rules on real text.

Continued pretraining for a few steps from the tiny random ALBERT (MLM + sentence-order heads),
RoBERTa and DeBERTa-v3 (MLM only) folders of `tests.family_models` on SST-2 sentences (../shared):
the loss is finite, the saved folder reloads (its tokenizer gives the same ids, its weights the
same masked-LM logits as the model that was trained). Whole-word masking by each family's
word-start convention never splits a word, and special ids are never masked. Skips when
../shared or the test extras (transformers, torch) are absent.
"""

import numpy as np
import pytest
import tensorflow as tf

from kzoo.checkpoints import load_masked_lm, load_pretrained
from kzoo.data import pretraining as pretraining_data
from kzoo.data.masking import MLMMasker, special_token_ids, word_start_convention, word_starts
from kzoo.tasks.pretraining import PretrainingRun, run_pretraining
from kzoo.text import BertPacker, BertTokenizer, tokenizer_from_folder
from kzoo.training.common import load_tokenizer
from tests.conftest import shared_path
from tests.family_models import tiny_family_folders

RUN = dict(max_seq_length=32, max_predictions_per_seq=6, train_batch_size=8, eval_batch_size=16,
           num_train_steps=3, learning_rate=1e-3, validation_fraction=0.0, whole_word_masking=True, verbose=0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """120 SST-2 sentences of >= 6 words in 12 documents, and the tiny family folders."""
    with open(shared_path("data", "sst2", "train.tsv"), encoding="utf-8") as f:
        sentences = [line.split("\t")[0].strip() for line in f.read().splitlines()[1:]]
    sentences = [s for s in sentences if len(s.split()) >= 6][:120]
    root = tmp_path_factory.mktemp("family_corpus")
    documents = [sentences[i:i + 10] for i in range(0, len(sentences), 10)]
    pretraining_data.write_documents(documents, root / "sst2.txt")
    return {"path": str(root / "sst2.txt"), "documents": documents, "sentences": sentences,
            "folders": tiny_family_folders(tmp_path_factory)}


@pytest.mark.parametrize("family", ["albert", "roberta", "deberta_v2"])  # XLM-R saves as RoBERTa does; ~12 s a run
def test_continued_pretraining_from_a_family_checkpoint(corpus, family, tmp_path):
    folder = str(corpus["folders"][family])
    model_dir = tmp_path / family
    result = run_pretraining(PretrainingRun(input_files=corpus["path"], init_checkpoint=folder,
                                            model_dir=str(model_dir), **RUN))
    assert result["family"] == family
    history = result["history"]
    assert np.isfinite(history["loss"]).all()
    if family == "albert":  # MLM + sentence-order prediction on the checkpoint's own heads
        assert result["nsp"] and result["sop"] and "nsp_logits_accuracy" in history
        assert result["init_report"]["missing"] == []
        assert (model_dir / "albert_config.json").exists() and (model_dir / "bert_model.ckpt.index").exists()
    else:  # MLM only, single segments; a Hugging Face folder (no official format)
        assert not result["nsp"] and "nsp_logits_accuracy" not in history
        assert (model_dir / "config.json").exists() and (model_dir / "model.safetensors").exists()

    # The saved tokenizer is the checkpoint's: same class, same ids on real text.
    original = load_pretrained(folder).tokenizer
    saved = load_tokenizer(str(model_dir))
    assert type(saved) is type(original)
    texts = tf.constant(corpus["sentences"][:20])
    assert saved(texts).to_list() == original(texts).to_list()

    # The folder reloads as a masked LM with the weights that were trained.
    trained = result["model"]
    reloaded, tokenizer = load_masked_lm(str(model_dir))
    assert type(tokenizer) is type(original)
    packer = BertPacker.from_tokenizer(tokenizer, 24)
    inputs = packer(tokenizer(texts[:4]))
    np.testing.assert_allclose(np.asarray(reloaded(inputs)["mlm_logits"]), np.asarray(trained(inputs)["mlm_logits"]),
                               atol=1e-5)
    # ... and as a checkpoint to continue from again (ALBERT: its SOP head too).
    again = load_pretrained(str(model_dir), with_heads=True)
    assert again.family == family and again.pretrainer.nsp == (family == "albert")


def _groups(tokens, special, convention):
    """Word index of every real non-special position, by the family's convention on the token
    strings alone (a continuation after a special token joins the word before it, as official
    whole-word masking does); -1 elsewhere."""
    kind, marker = convention
    word, groups, previous_real = -1, [], False
    for token, is_special in zip(tokens, special):
        if is_special:
            groups.append(-1)
            continue
        starts = (not token.startswith(marker)) if kind == "continuation" else token.startswith(marker)
        if starts or not previous_real:
            word += 1
        groups.append(word)
        previous_real = True
    return groups


@pytest.mark.parametrize("family", ["bert", "albert", "roberta", "xlm_roberta", "deberta_v2"])
def test_whole_word_masking_never_splits_a_word(corpus, family):
    folder = corpus["folders"]["electra" if family == "bert" else family]  # electra's is the WordPiece vocab
    tokenizer = tokenizer_from_folder(str(folder), "bert" if family == "bert" else family)
    assert isinstance(tokenizer, BertTokenizer) == (family == "bert")
    starts = word_starts(tokenizer)
    assert starts.shape == (tokenizer.vocab_size,) and 0 < starts.sum() < tokenizer.vocab_size
    instances = pretraining_data.create_instances(corpus["documents"], tokenizer, max_seq_length=48,
                                                  nsp=family in ("bert", "albert"), seed=5)
    ids, real = instances["input_word_ids"], instances["input_mask"]
    if family in ("roberta", "xlm_roberta"):  # the family's packing: <s> A </s>, pad 1, one token type
        assert (ids[:, 0] == 0).all() and (ids[real == 0] == 1).all() and not instances["input_type_ids"].any()
    masker = MLMMasker.from_tokenizer(tokenizer, whole_word_masking=True, masked_lm_prob=0.3,
                                      max_predictions_per_seq=12, seed=7)
    out = masker({k: tf.constant(v) for k, v in instances.items()})
    positions, targets = out["masked_lm_positions"].numpy(), out["masked_lm_ids"].numpy()
    special = set(special_token_ids(tokenizer))
    tokens = [t.decode("utf-8") for t in tokenizer.ids_to_tokens(np.arange(tokenizer.vocab_size)).numpy()]
    multi_piece_words = split = 0
    for row in range(len(ids)):
        n = int(real[row].sum())
        row_tokens = [tokens[i] for i in ids[row, :n]]
        groups = np.array(_groups(row_tokens, [int(i) in special for i in ids[row, :n]],
                                 word_start_convention(tokenizer)))
        chosen = positions[row][targets[row] != -100]
        assert not any(int(ids[row, p]) in special for p in chosen)
        for word in set(groups[chosen]):
            members = np.flatnonzero(groups == word)
            multi_piece_words += len(members) > 1
            split += not set(members) <= set(chosen)
    assert split == 0 and multi_piece_words > 0


@pytest.mark.parametrize("family", ["albert", "roberta", "xlm_roberta", "deberta_v2"])
def test_special_ids_are_never_masked(corpus, family):
    """Masking every candidate: all real pieces are chosen, no special id ever is."""
    tokenizer = tokenizer_from_folder(str(corpus["folders"][family]))
    instances = pretraining_data.create_instances(corpus["documents"][:4], tokenizer, max_seq_length=24,
                                                  nsp=family == "albert", seed=1)
    masker = MLMMasker.from_tokenizer(tokenizer, masked_lm_prob=1.0, max_predictions_per_seq=24, seed=2)
    out = masker({k: tf.constant(v) for k, v in instances.items()})
    special = np.isin(instances["input_word_ids"], special_token_ids(tokenizer))
    expected = (instances["input_mask"] > 0) & ~special
    chosen = np.zeros_like(expected)
    for row, (p, t) in enumerate(zip(out["masked_lm_positions"].numpy(), out["masked_lm_ids"].numpy())):
        chosen[row, p[t != -100]] = True
    np.testing.assert_array_equal(chosen, expected)
    assert {tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id,
            tokenizer.mask_token_id} <= set(special_token_ids(tokenizer))


def test_runs_a_family_cannot_do_are_refused_before_training(corpus, tmp_path):
    folders = corpus["folders"]
    with pytest.raises(ValueError, match="objective='electra'"):
        run_pretraining(PretrainingRun(input_files=corpus["path"], init_checkpoint=str(folders["electra"]),
                                       model_dir=str(tmp_path / "e"), **RUN))
    with pytest.raises(ValueError, match="WordPiece vocabulary, but .* roberta checkpoint"):
        run_pretraining(PretrainingRun(input_files=corpus["path"], init_checkpoint=str(folders["roberta"]),
                                       vocab_file=str(folders["electra"] / "vocab.txt"),
                                       model_dir=str(tmp_path / "r"), **RUN))
    assert not (tmp_path / "e").exists() and not (tmp_path / "r").exists()
