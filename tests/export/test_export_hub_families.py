"""`export_hub_encoder` for the SentencePiece (ALBERT, XLM-R) and byte-level BPE (RoBERTa) families.

Tiny random models of each family (`tests/family_models.py`, real tokenizer files) are loaded with
`load_pretrained` and exported; one process that imports only tensorflow and tensorflow_text loads all
six SavedModels and runs preprocess(raw strings) -> encoder, `tokenize`, `bert_pack_inputs` and the
special-tokens dict. Its results must equal kzoo's in-process tokenizer, family packer and encoder.
That process starts first and takes each family as soon as its export is written, so it overlaps
with the exports.
"""

import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf

from kzoo.checkpoints import load_pretrained
from kzoo.export.hub import export_hub_encoder
from kzoo.text import BertPacker, RobertaPacker
from kzoo.text.saving import read_tokenizer

FAMILIES = ("albert", "xlm_roberta", "roberta", "deberta_v2")
BERT_LAYOUT = ("albert", "deberta_v2")  # [CLS] a [SEP] b [SEP]; the others <s> a </s></s> b </s>
SEQ_LENGTH = 24
TEXTS = ["Hello, world! It costs 1,000,000 dollars.", "Café ``naïve'' 東京 ΟΔΟΣ", "", "a  b\t\tc \u00a0d",
         "it's 'sup, they're here", "the quick brown fox jumps over the lazy dog " * 4,
         "Who founded ABC in 1943?"]
PAIRS = (["What is RoBERTa?", "short", "a b c d e f g h i j k l m n o p q r s t"],
         ["A language model.", "", "one two three four five six seven eight nine ten eleven twelve"])
PAIR_LENGTH = 15  # cuts the third pair

SERVE = textwrap.dedent("""
    import json, os, sys, time
    import tensorflow as tf
    import tensorflow_text  # registers the tf-text ops

    root, texts, pairs, pair_length = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4])
    out = {}
    for family in sys.argv[5:]:
        deadline = time.time() + 600
        while not os.path.exists(f"{root}/{family}.ready"):  # written after the family's export
            if os.path.exists(f"{root}/failed") or time.time() > deadline:
                sys.exit(f"no export of {family}")
            time.sleep(0.1)
        preprocess = tf.saved_model.load(f"{root}/{family}/preprocess/1")
        encoder = tf.saved_model.load(f"{root}/{family}/encoder/1")
        inputs = preprocess(tf.constant(texts))
        outputs = encoder(inputs, training=False)
        a, b = (preprocess.tokenize(tf.constant(p)) for p in pairs)
        assets = {}
        for model in (preprocess, encoder):
            for name in ("vocab_file", "sp_model_file", "bpe_vocab_file", "bpe_merges_file", "tokenizer_record"):
                if hasattr(model, name):
                    assets.setdefault(name, []).append(getattr(model, name).asset_path.numpy().decode())
        out[family] = {
            "inputs": {k: v.numpy().tolist() for k, v in inputs.items()},
            "serving": {k: v.numpy().tolist() for k, v in
                        preprocess.signatures["serving_default"](text=tf.constant(texts)).items()},
            "pooled_output": outputs["pooled_output"].numpy().tolist(),
            "sequence_output": outputs["sequence_output"].numpy().tolist(),
            "serving_pooled": encoder.signatures["serving_default"](**inputs)["pooled_output"].numpy().tolist(),
            "tokenize": preprocess.tokenize(tf.constant(texts)).to_list(),
            "pairs": {k: v.numpy().tolist() for k, v in
                      preprocess.bert_pack_inputs([a, b], seq_length=tf.constant(pair_length)).items()},
            "special": {k: int(v) for k, v in preprocess.tokenize.get_special_tokens_dict().items()},
            "do_lower_case": [bool(m.do_lower_case.numpy()) for m in (preprocess, encoder)],
            "assets": assets,
        }
    assert "kzoo" not in sys.modules and "transformers" not in sys.modules
    print(json.dumps(out))
""")


def _export_and_serve(tmp_path_factory):
    """{family: (pretrained, folder, export, what the fresh process computed)}."""
    from tests.family_models import tiny_family_folders

    folders = tiny_family_folders(tmp_path_factory)  # skips without transformers, sentencepiece or ../shared
    root = tmp_path_factory.mktemp("hub_families")
    started = time.time()
    process = subprocess.Popen([sys.executable, "-c", SERVE, str(root), json.dumps(TEXTS), json.dumps(PAIRS),
                                str(PAIR_LENGTH), *FAMILIES], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONPATH": "", "TF_CPP_MIN_LOG_LEVEL": "3"},
                               cwd=str(root))
    exports = {}
    try:
        for family in FAMILIES:
            pretrained = load_pretrained(folders[family])
            exports[family] = (pretrained, folders[family],
                               export_hub_encoder(pretrained.encoder, pretrained.tokenizer, root / family,
                                                  seq_length=SEQ_LENGTH))
            (root / f"{family}.ready").write_text("", encoding="utf-8")
        out, err = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            (root / "failed").write_text("", encoding="utf-8")
            process.kill()
            process.communicate()
    assert process.returncode == 0, err[-3000:]
    result = json.loads(out.strip().splitlines()[-1])
    print(f"exports and fresh-process serving: {time.time() - started:.1f} s")
    return {family: (*exports[family], result[family]) for family in FAMILIES}


@pytest.mark.slow
def test_export_hub_encoder_families(tmp_path_factory):
    """One test (one export per family, one serving process), so that pytest-xdist never runs the
    exports twice; the checks below name the family that fails."""
    served = _export_and_serve(tmp_path_factory)
    differences = {}
    for family in FAMILIES:
        differences[family] = _check_preprocess_and_encoder(family, served)
        _check_tokenize_pack_and_special_tokens(family, served)
        _check_assets(family, served)
    print("largest |fresh process - kzoo| (pooled, sequence):", differences)


def _check_preprocess_and_encoder(family, served):
    pretrained, _, _, got = served[family]
    tokenizer = pretrained.tokenizer
    packer = BertPacker.from_tokenizer(tokenizer, SEQ_LENGTH)
    assert type(packer) is (BertPacker if family in BERT_LAYOUT else RobertaPacker)
    texts = tf.constant(TEXTS)
    want = packer(tokenizer(texts))  # the family's packer on the tokenizer's ids of the running text
    for name in want:
        assert got["inputs"][name] == want[name].numpy().tolist(), (family, name)
        assert got["serving"][name] == want[name].numpy().tolist(), (family, name)
    assert max(map(sum, got["inputs"]["input_mask"])) == SEQ_LENGTH  # the long text is cut
    if family not in BERT_LAYOUT:
        assert got["inputs"]["input_type_ids"] == [[0] * SEQ_LENGTH] * len(TEXTS)
        assert {row[-1] for row in got["inputs"]["input_word_ids"] if 0 < sum(row) < SEQ_LENGTH} <= {1}
    outputs = pretrained.encoder(want, training=False)
    differences = []
    for name in ("pooled_output", "sequence_output"):
        differences.append(float(np.abs(np.array(got[name]) - outputs[name].numpy()).max()))
        assert differences[-1] <= 1e-5, (family, name, differences[-1])
    np.testing.assert_allclose(got["serving_pooled"], outputs["pooled_output"].numpy(), atol=1e-5, err_msg=family)
    return differences


def _check_tokenize_pack_and_special_tokens(family, served):
    pretrained, _, _, got = served[family]
    tokenizer = pretrained.tokenizer
    words = tokenizer.split_words(tf.constant(TEXTS))
    assert got["tokenize"] == tokenizer.tokenize_words(words).to_list(), family  # [batch, (words), (pieces)]
    assert [len(row) for row in got["tokenize"]] == [len(t.split()) for t in TEXTS]  # whitespace words
    if family == "roberta":  # every word with a space in front: "Ġword"
        first = [row[0][0] for row in got["tokenize"] if row]
        assert all(token.startswith(b"\xc4\xa0") for token in tokenizer.ids_to_tokens(first).numpy())
    a, b = (tokenizer.tokenize_words(tokenizer.split_words(tf.constant(p))).merge_dims(-2, -1) for p in PAIRS)
    want = BertPacker.from_tokenizer(tokenizer, PAIR_LENGTH)((a, b))
    for name in want:
        assert got["pairs"][name] == want[name].numpy().tolist(), (family, name)
    assert sum(got["pairs"]["input_mask"][2]) == PAIR_LENGTH
    if family in BERT_LAYOUT:
        assert max(map(max, got["pairs"]["input_type_ids"])) == 1
    else:  # <s> a </s></s> b </s>
        row = got["pairs"]["input_word_ids"][0]
        assert row.count(tokenizer.sep_token_id) == 3 and row[0] == tokenizer.cls_token_id
    assert got["special"] == {"vocab_size": tokenizer.vocab_size, "start_of_sequence_id": tokenizer.cls_token_id,
                              "end_of_segment_id": tokenizer.sep_token_id, "padding_id": tokenizer.pad_token_id,
                              "mask_id": tokenizer.mask_token_id}, family
    expected_ids = {"albert": (2, 3, 0), "xlm_roberta": (0, 2, 1), "roberta": (0, 2, 1), "deberta_v2": (1, 2, 0)}[family]
    assert (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id) == expected_ids
    assert got["do_lower_case"] == [family == "albert"] * 2


def _check_assets(family, served):
    pretrained, folder, export, got = served[family]
    files = {"albert": {"sp_model_file": "spiece.model"},
             "xlm_roberta": {"sp_model_file": "sentencepiece.bpe.model"},
             "roberta": {"bpe_vocab_file": "vocab.json", "bpe_merges_file": "merges.txt"},
             "deberta_v2": {"sp_model_file": "spm.model"}}[family]
    assert sorted(got["assets"]) == sorted([*files, "tokenizer_record"]), family  # no vocab_file outside WordPiece
    for attribute, name in {**files, "tokenizer_record": "kzoo_tokenizer.json"}.items():
        assert [os.path.basename(p) for p in got["assets"][attribute]] == [name, name]
    for path in export:
        assets = os.path.join(path, "assets")
        assert sorted(os.listdir(assets)) == sorted([*files.values(), "kzoo_tokenizer.json"]), family
        if family == "roberta":
            with open(os.path.join(assets, "vocab.json"), encoding="utf-8") as f:
                assert json.load(f) == json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
            with open(os.path.join(assets, "merges.txt"), encoding="utf-8") as f:
                merges = [line for line in f.read().splitlines() if line and not line.startswith("#version")]
            original = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
            assert merges == [line for line in original if line and not line.startswith("#version")]
        else:
            name = files["sp_model_file"]
            with open(os.path.join(assets, name), "rb") as f:
                assert f.read() == (folder / name).read_bytes()
        # the record rebuilds the same tokenizer from the export alone
        rebuilt = read_tokenizer(assets)
        assert type(rebuilt) is type(pretrained.tokenizer)
        assert rebuilt(tf.constant(TEXTS)).to_list() == pretrained.tokenizer(tf.constant(TEXTS)).to_list()
