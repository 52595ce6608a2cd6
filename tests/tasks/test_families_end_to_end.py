"""`run_classifier` from a tiny random model of every family, exported, and served raw text in a
process that imports only tensorflow and tensorflow_text.

For each family with its own tokenizer (`tests/family_models.py`: transformers-built Hugging Face folders
with the family's real tokenizer files; ELECTRA and DistilBERT tokenize as BERT, their encoders' parity is
`tests/checkpoints/test_families.py`'s and the export does not depend on the family): fine-tune one epoch on the shipped intents, export through `export_dir`, and (SentencePiece
and BPE families) re-export from the model_dir alone (`export_classifier_dirs`, which reads the saved
tokenizer record).
In a fresh process both SavedModels must give, for raw texts (hard ones included), the probabilities
the fine-tuned Keras model gives in this process on kzoo's own packing. For the SentencePiece and BPE
families the fresh process also feeds `serve_packed` the ids of the reference tokenizers
(transformers / the sentencepiece library, computed once in `family_assets`), packed in the family's
layout, and must get what `serving_default` gives for the same raw texts: the in-graph tokenizer of
the export is the reference's.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.family_models import tiny_family_folders
from tests.text.test_family_packing import family_assets, layout

HARD = ["Hello, world! 1,000,000 dollars.", "Café ``naïve'' 東京 😀", "", "a  b\t\tc \u00a0d",
        "it's 'sup ΟΔΟΣ", "नमस्ते दुनिया"]
LENGTH = 32
RECORDED = ("albert", "xlm_roberta", "roberta", "deberta_v2")  # re-exported from the model_dir's tokenizer record
END_TO_END = RECORDED  # SentencePiece (ALBERT, XLM-R, DeBERTa-v3) and byte-level BPE (RoBERTa)

FRESH_PROCESS = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    import tensorflow_text  # registers the tf-text ops
    job = json.loads(open(sys.argv[1]).read())
    result = {}
    for family, spec in job.items():
        for key in ("export", "reexport"):
            if not spec[key]:
                continue
            served = tf.saved_model.load(spec[key])
            out = served.signatures["serving_default"](text=tf.constant(spec["texts"]))
            result[f"{family}/{key}"] = out["probabilities"].numpy().tolist()
            if spec.get("packed") and key == "export":
                ids = tf.constant(spec["packed"], tf.int32)
                out = served.signatures["serve_packed"](input_word_ids=ids, input_mask=tf.constant(spec["mask"]),
                                                        input_type_ids=tf.zeros_like(ids))
                result[f"{family}/packed"] = out["probabilities"].numpy().tolist()
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("kzoo", "transformers", "torch"))
    print(json.dumps({"result": result, "loaded": loaded}))
""")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{family: (run result, export path, re-export path, pretrained)}: one fine-tuning run each."""
    from kzoo.checkpoints import load_pretrained
    from kzoo.tasks import ClassifierRun, run_classifier
    from kzoo.tasks.classification import export_classifier_dirs

    folders = tiny_family_folders(tmp_path_factory)
    out = tmp_path_factory.mktemp("family_runs")
    results = {}
    for family in END_TO_END:
        run = ClassifierRun(init_checkpoint=str(folders[family]), model_dir=str(out / family / "run"),
                            export_dir=str(out / family / "export"), num_train_epochs=1, max_seq_length=LENGTH,
                            train_batch_size=16, learning_rate=1e-3, verbose=0)
        result = dict(run_classifier(run), model_dir=run.model_dir)
        reexport = None
        if family in RECORDED:
            reexport = export_classifier_dirs([run.model_dir], str(out / family / "reexport"), max_seq_length=LENGTH)
        results[family] = (result, result["export_path"], reexport, load_pretrained(str(folders[family])))
    return results


def test_every_family_fine_tunes_exports_and_serves_in_a_fresh_process(runs, tmp_path, tmp_path_factory):
    import tensorflow as tf

    from kzoo.text import BertPacker
    from kzoo.training.common import load_tokenizer

    assets = family_assets(tmp_path_factory)
    picks = [0, 1000, 2000, assets.strings.index("pay 1,000,000 dollars, 2,500 euros, 3,14")]
    job, expected = {}, {}
    for family, (result, export_path, reexport, pretrained) in runs.items():
        assert result["metrics"] and np.isfinite(result["history"]["loss"]).all(), family
        saved = load_tokenizer(result["model_dir"])
        assert type(saved) is type(pretrained.tokenizer), family  # the model_dir's tokenizer record
        texts = HARD + ([assets.strings[i] for i in picks] if family in ("albert", "xlm_roberta", "roberta") else [])
        packer = BertPacker.from_tokenizer(pretrained.tokenizer, LENGTH, dynamic_length=True)
        assert saved(tf.constant(texts)).to_list() == pretrained.tokenizer(tf.constant(texts)).to_list(), family
        logits = result["model"](packer(pretrained.tokenizer(tf.constant(texts))), training=False)
        expected[family] = tf.nn.softmax(logits).numpy()
        job[family] = {"export": export_path, "reexport": reexport, "texts": texts}
        if family in ("albert", "xlm_roberta", "roberta"):
            name = "auto" if family == "roberta" else "slow"
            reference = [assets.ids(family, name)[0][i] for i in picks]
            packed = [layout(family, ids, None, LENGTH, None) for ids in reference]
            pad = 0 if family == "albert" else 1
            job[family]["packed"] = packed
            job[family]["mask"] = [[int(i != pad) for i in row] for row in packed]
    (tmp_path / "job.json").write_text(json.dumps(job), encoding="utf-8")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(tmp_path / "job.json")], capture_output=True,
                          text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    served = json.loads(done.stdout.strip().splitlines()[-1])
    assert served["loaded"] == [], served["loaded"]
    for family in runs:
        for key in ("export", "reexport") if family in RECORDED else ("export",):
            np.testing.assert_allclose(served["result"][f"{family}/{key}"], expected[family], atol=1e-5,
                                       err_msg=f"{family} {key}")
        if family in ("albert", "xlm_roberta", "roberta"):
            # reference ids -> serve_packed == raw text -> serving_default (for the picked real sentences)
            np.testing.assert_allclose(served["result"][f"{family}/packed"],
                                       served["result"][f"{family}/export"][len(HARD):], atol=1e-5, err_msg=family)
