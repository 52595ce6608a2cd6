"""Tiny random pretrained models of every family, as Hugging Face folders with real tokenizer files.

What the end-to-end tests start from (`run_classifier`, `run_squad`, `run_tagger`, `run_pretraining`,
the exporters) for a family other than BERT: `transformers` builds each model at random (2 layers,
hidden 32) in a subprocess that never imports TensorFlow and saves it with `save_pretrained`; the
tokenizer files come from `tests/text/test_family_packing.family_assets` (a SentencePiece ALBERT model,
an XLM-R SentencePiece model and a RoBERTa byte-level BPE trained from ../shared text), a DeBERTa-v3-style
spm.model trained here from the same text, and, for the WordPiece families, MiniLM's vocab.txt. The vocabulary size of each model is its tokenizer's. Built once
per run (a file lock shares the build across pytest-xdist workers).

    folders = tiny_family_folders(tmp_path_factory)   # {family: Path}
    load_pretrained(folders["albert"])                 # config.json + model.safetensors + spiece.model
"""

import fcntl
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

FAMILIES = ("albert", "electra", "roberta", "xlm_roberta", "distilbert", "deberta_v2")
MAX_POSITIONS = 130  # room for 128 tokens (+2 for RoBERTa's offset positions)

BUILD = textwrap.dedent("""
    import json, sys
    import torch, transformers
    job = json.load(open(sys.argv[1]))
    sizes = dict(hidden_size=32, num_attention_heads=4, intermediate_size=64, num_hidden_layers=2)
    for family, spec in job.items():
        torch.manual_seed(0)
        vocab = spec["vocab_size"]
        if family == "albert":
            config = transformers.AlbertConfig(vocab_size=vocab, embedding_size=16, hidden_act="gelu_new",
                                               max_position_embeddings=128, pad_token_id=0, **sizes)
            model = transformers.AlbertForPreTraining(config)
        elif family == "electra":
            config = transformers.ElectraConfig(vocab_size=vocab, embedding_size=16, max_position_embeddings=128,
                                                **sizes)
            model = transformers.ElectraForPreTraining(config)
        elif family in ("roberta", "xlm_roberta"):
            cls = transformers.RobertaConfig if family == "roberta" else transformers.XLMRobertaConfig
            config = cls(vocab_size=vocab, max_position_embeddings=130, type_vocab_size=1, pad_token_id=1,
                         bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5, **sizes)
            model = (transformers.RobertaForMaskedLM if family == "roberta" else transformers.XLMRobertaForMaskedLM)(config)
        elif family == "deberta_v2":  # v3's structure: log buckets, shared table, no absolute positions
            config = transformers.DebertaV2Config(vocab_size=vocab, max_position_embeddings=128, type_vocab_size=0,
                                                  relative_attention=True, position_buckets=16,
                                                  max_relative_positions=64, pos_att_type=["p2c", "c2p"],
                                                  norm_rel_ebd="layer_norm", share_att_key=True,
                                                  position_biased_input=False, pad_token_id=0, **sizes)
            model = transformers.DebertaV2ForMaskedLM(config)
        else:
            config = transformers.DistilBertConfig(vocab_size=vocab, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                                                   max_position_embeddings=128)
            model = transformers.DistilBertForMaskedLM(config)
        model.save_pretrained(spec["folder"], safe_serialization=True)
""")


def _tokenizer_files(family, assets, minilm_vocab):
    if family == "albert":
        return [assets.folders["albert"] / "spiece.model"]
    if family == "xlm_roberta":
        return [assets.folders["xlm_roberta"] / "sentencepiece.bpe.model"]
    if family == "roberta":
        return [assets.folders["roberta"] / "vocab.json", assets.folders["roberta"] / "merges.txt"]
    if family == "deberta_v2":
        return []  # trained in _build
    return [Path(minilm_vocab)]


def _deberta_spm(lines):
    """DeBERTa-v3's spm.model layout ([PAD]=0 [CLS]=1 [SEP]=2 [UNK]=3), unigram, from the assets' lines."""
    import io

    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, vocab_size=2000, model_type="unigram", pad_id=0,
        pad_piece="[PAD]", bos_id=1, bos_piece="[CLS]", eos_id=2, eos_piece="[SEP]", unk_id=3, unk_piece="[UNK]",
        character_coverage=0.9995, num_threads=2, minloglevel=2)
    return model.getvalue()


def _build(root, assets, minilm_vocab):
    from kzoo.text import tokenizer_from_folder
    from tests.text.test_family_packing import _training_lines

    job = {}
    for family in FAMILIES:
        folder = root / family
        folder.mkdir(parents=True, exist_ok=True)
        if family == "deberta_v2":
            (folder / "spm.model").write_bytes(_deberta_spm(_training_lines()))
        for path in _tokenizer_files(family, assets, minilm_vocab):
            shutil.copyfile(path, folder / path.name)
        (folder / "config.json").write_text(json.dumps({"model_type": family.replace("_", "-")}), encoding="utf-8")
        if family in ("electra", "distilbert"):
            (folder / "tokenizer_config.json").write_text('{"do_lower_case": true}', encoding="utf-8")
        tokenizer = tokenizer_from_folder(folder)
        job[family] = {"folder": str(folder), "vocab_size": int(tokenizer.vocab_size)}
    (root / "job.json").write_text(json.dumps(job), encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", BUILD, str(root / "job.json")], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (root / "done").write_text("ok", encoding="utf-8")


_FOLDERS = {}


def tiny_family_folders(tmp_path_factory):
    """{family: HF folder} of a tiny random model of each family in `FAMILIES`, with its tokenizer files."""
    for module in ("torch", "transformers", "sentencepiece", "tokenizers"):
        pytest.importorskip(module, reason=f"{module} (test extra) builds the tiny family models")
    from tests.conftest import minilm_vocab_file
    from tests.text.test_family_packing import family_assets

    assets = family_assets(tmp_path_factory)
    vocab = minilm_vocab_file()
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "kzoo_family_models"
    if root not in _FOLDERS:
        root.mkdir(parents=True, exist_ok=True)
        with open(root.parent / "kzoo_family_models.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (root / "done").exists():
                _build(root, assets, vocab)
        _FOLDERS[root] = {family: root / family for family in FAMILIES}
    return _FOLDERS[root]
