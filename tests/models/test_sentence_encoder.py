"""Sentence embeddings: pooling against the math, sentence-transformers folders, and all-MiniLM-L6-v2's
embeddings against sentence-transformers itself, in process and through the exported SavedModel.

The reference runs `sentence_transformers.SentenceTransformer(<the pip package's folder>).encode(texts,
normalize_embeddings=True)` in a subprocess that never imports TensorFlow, started first so that it
overlaps kzoo's side; the export is served in a second fresh process that imports only tensorflow and
tensorflow_text. Skips without sentence-transformers / torch (test extras) or the MiniLM package.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from kzoo.checkpoints import load_pretrained, read_sentence_transformers
from kzoo.configs import BertConfig
from kzoo.export import export_hub_encoder, export_sentence_encoder
from kzoo.models import bert_encoder, sentence_encoder
from tests.conftest import random_inputs

TINY = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                  max_position_embeddings=64)


def _numpy_pooling(states, mask, pooled, mode, normalize):
    states, mask = np.asarray(states, np.float64), np.asarray(mask, bool)
    rows = []
    for s, m, p in zip(states, mask, np.asarray(pooled, np.float64)):
        real = s[m]
        rows.append({"mean": real.mean(0) if len(real) else np.zeros(s.shape[-1]), "cls": s[0],
                     "max": real.max(0) if len(real) else np.full(s.shape[-1], -1e9), "pooler": p}[mode])
    out = np.stack(rows)
    if normalize:
        out = out / np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-12)
    return out


@pytest.mark.parametrize("mode", ["mean", "cls", "max", "pooler"])
@pytest.mark.parametrize("normalize", [False, True])
def test_pooling_is_the_math_and_padding_never_counts(mode, normalize):
    keras.utils.set_random_seed(0)
    encoder = bert_encoder(TINY)
    model = sentence_encoder(encoder, pooling=mode, normalize=normalize)
    x = random_inputs(3, 10, 64, seed=2, lengths=[10, 4, 1])
    out = model(x)
    assert out.dtype == "float32" and tuple(out.shape) == (3, 16)
    enc = encoder(x)
    expected = _numpy_pooling(enc["sequence_output"], x["input_mask"], enc["pooled_output"], mode, normalize)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    # more padding (garbage ids under a zero mask) leaves every embedding as it was
    wider = {k: np.pad(v, [(0, 0), (0, 6)], constant_values=7 if k == "input_word_ids" else 0) for k, v in x.items()}
    np.testing.assert_allclose(model(wider), out, atol=1e-5)
    if normalize:
        np.testing.assert_allclose(np.linalg.norm(out, axis=-1), 1.0, atol=1e-6)


def test_sentence_encoder_saves_and_loads_with_its_settings(tmp_path):
    model = sentence_encoder(bert_encoder(TINY), pooling="max", normalize=True, max_seq_length=40)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    pooling = loaded.get_layer("pooling")
    assert (pooling.mode, pooling.normalize, pooling.max_seq_length) == ("max", True, 40)
    x = random_inputs(2, 7, 64, lengths=[7, 3])
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)
    with pytest.raises(ValueError, match=r"pooling must be one of \['mean', 'cls', 'max', 'pooler'\], got 'sum'"):
        sentence_encoder(bert_encoder(TINY), pooling="sum")


@pytest.mark.parametrize("mode", ["cls", "mean"])
def test_classifier_heads_read_the_pooling_and_students_keep_it(mode):
    from kzoo.models import bert_classifier, student_from_teacher

    keras.utils.set_random_seed(1)
    model = bert_classifier(TINY, num_classes=3, pooling=mode, dropout=0.0)
    x = random_inputs(2, 9, 64, lengths=[9, 5])
    encoder = [layer for layer in model.layers if isinstance(layer, keras.Model)][0]
    enc = encoder(x)
    pooled = _numpy_pooling(enc["sequence_output"], x["input_mask"], enc["pooled_output"], mode, False)
    head = model.get_layer("classifier")
    np.testing.assert_allclose(model(x), head(pooled.astype("float32")), atol=1e-5)
    assert not np.allclose(pooled, np.asarray(enc["pooled_output"]), atol=1e-3)  # not the pooler's output
    student = student_from_teacher(model, 2)
    assert student.get_layer("pooling").mode == mode
    np.testing.assert_allclose(student(x), model(x), atol=1e-5)


def _st_folder(root, modules=None, pooling=None, settings=None):
    root.mkdir()
    modules = modules or [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                          {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                          {"idx": 2, "name": "2", "path": "2_Normalize",
                           "type": "sentence_transformers.models.Normalize"}]
    (root / "modules.json").write_text(json.dumps(modules))
    (root / "1_Pooling").mkdir()
    config = {"word_embedding_dimension": 16, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
              "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False}
    (root / "1_Pooling" / "config.json").write_text(json.dumps({**config, **(pooling or {})}))
    (root / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128, "do_lower_case": False,
                                                                **(settings or {})}))
    return root


def test_sentence_transformers_folders(tmp_path, minilm_hf_folder):
    minilm = read_sentence_transformers(minilm_hf_folder)
    assert (minilm.pooling, minilm.normalize, minilm.max_seq_length) == ("mean", True, 256)
    cls = read_sentence_transformers(_st_folder(tmp_path / "cls", pooling={"pooling_mode_cls_token": True,
                                                                           "pooling_mode_mean_tokens": False}))
    assert (cls.pooling, cls.normalize, cls.max_seq_length) == ("cls", True, 128)
    assert read_sentence_transformers(tmp_path) is None  # no modules.json: not a sentence-transformers folder

    dense = [{"path": "", "type": "sentence_transformers.models.Transformer"},
             {"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
             {"path": "2_Dense", "type": "sentence_transformers.models.Dense"}]
    cases = [
        (dict(modules=dense), r"modules.json: module 'sentence_transformers.models.Dense' is not supported"),
        (dict(pooling={"pooling_mode_max_tokens": True}),
         r"1_Pooling/config.json: exactly one of .* must be true, got \['pooling_mode_mean_tokens', "
         r"'pooling_mode_max_tokens'\] \(sentence-transformers concatenates"),
        (dict(pooling={"pooling_mode_mean_sqrt_len_tokens": True}), "pooling_mode_mean_sqrt_len_tokens is true"),
        (dict(settings={"do_lower_case": True}), "sentence_bert_config.json: do_lower_case is true"),
        (dict(settings={"max_seq_length": "long"}), "sentence_bert_config.json: max_seq_length must be an integer"),
    ]
    for i, (kwargs, message) in enumerate(cases):
        with pytest.raises(ValueError, match=message):
            read_sentence_transformers(_st_folder(tmp_path / f"bad{i}", **kwargs))
    broken = _st_folder(tmp_path / "broken")
    (broken / "modules.json").write_text("[{")
    with pytest.raises(ValueError, match=r"modules.json: not valid JSON"):
        read_sentence_transformers(broken)


REFERENCE = textwrap.dedent("""
    import json, sys
    from sentence_transformers import SentenceTransformer
    job = json.load(open(sys.argv[1], encoding="utf-8"))
    model = SentenceTransformer(job["folder"], device="cpu")
    out = {"max_seq_length": model.max_seq_length,
           "embeddings": model.encode(job["texts"], batch_size=16, normalize_embeddings=True).tolist()}
    for side in ("queries", "corpus"):  # the retrieval split
        out[side] = model.encode(job[side], batch_size=16, normalize_embeddings=True).tolist()
    assert "tensorflow" not in sys.modules
    json.dump(out, open(sys.argv[2], "w"))
""")

SERVE = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    import tensorflow_text  # registers the tf-text ops
    job = json.load(open(sys.argv[1], encoding="utf-8"))
    serve = tf.saved_model.load(job["export"]).signatures["serving_default"]
    out = {"embeddings": serve(text=tf.constant(job["texts"]))["embeddings"].numpy().tolist()}
    bad = [b"", b"word " * 20000, b"caf\\xc3 ok \\xff\\xfe fine", b"   "]
    result = serve(text=tf.constant(bad))["embeddings"]
    out["bad"] = result.numpy().tolist()
    out["empty_batch_shape"] = serve(text=tf.constant([], tf.string))["embeddings"].shape.as_list()
    preprocess = tf.saved_model.load(job["hub"]["preprocess"])
    encoder = tf.saved_model.load(job["hub"]["encoder"])
    hub = encoder(preprocess(tf.constant(job["texts"])))
    out["hub_default"] = hub["default"].numpy().tolist()
    out["hub_signature"] = sorted(encoder.signatures["serving_default"].structured_outputs)
    assert "kzoo" not in sys.modules and "sentence_transformers" not in sys.modules and "torch" not in sys.modules
    json.dump(out, open(sys.argv[2], "w"))
""")


def _texts():
    """Real sentences of many lengths (SST-2, TREC, SQuAD), two longer than 256 wordpieces."""
    from tests.text.test_family_packing import real_sentences

    texts = real_sentences()
    picked = texts[1400:1412] + texts[1700:1708] + texts[400:410] + texts[:3]  # SST-2, TREC, questions, paragraphs
    long = " ".join(texts[:6])  # six SQuAD paragraphs: far past 256 wordpieces
    return picked + [long, long[:900], "Ünïcödé façade — naïve café", "a"]


def _run(script, *args):
    env = {**os.environ, "PYTHONPATH": "", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _finish(process, timeout=600):
    try:
        _, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
    assert process.returncode == 0, err[-3000:]


def test_minilm_embeddings_equal_sentence_transformers_in_process_and_served(tmp_path, minilm_hf_folder):
    pytest.importorskip("sentence_transformers", reason="sentence-transformers (test extra) is the reference")
    from kzoo import retrieval
    from kzoo.tasks.retrieval import RetrievalEval, evaluate_retrieval, squad_retrieval_split
    from tests.conftest import shared_path

    texts = _texts()
    with open(shared_path("data", "squad_v1.1", "dev-v1.1-even-articles.json"), encoding="utf-8") as f:
        articles = [dict(a, paragraphs=a["paragraphs"][:12]) for a in json.load(f)["data"][:2]]
    squad = tmp_path / "squad.json"
    squad.write_text(json.dumps({"data": articles}), encoding="utf-8")
    split = squad_retrieval_split(squad, eval_fraction=0.5, seed=0)
    (tmp_path / "job.json").write_text(json.dumps({"folder": minilm_hf_folder, "texts": texts,
                                                   "queries": split.queries, "corpus": split.corpus}),
                                       encoding="utf-8")
    reference_process = _run(REFERENCE, tmp_path / "job.json", tmp_path / "reference.json")
    try:
        pretrained = load_pretrained("minilm")
        assert (pretrained.sentence.pooling, pretrained.sentence.normalize) == ("mean", True)
        model = sentence_encoder(pretrained)  # the checkpoint's pooling, normalisation and length
        assert model.get_layer("pooling").max_seq_length == 256
        tokenizer = pretrained.tokenizer
        from kzoo.text import BertPacker

        packer = BertPacker.from_tokenizer(tokenizer, 256, dynamic_length=True)
        ours = np.concatenate([model(packer(tokenizer(tf.constant(texts[i:i + 16]))), training=False).numpy()
                               for i in range(0, len(texts), 16)])
        export = export_sentence_encoder(model, tokenizer, tmp_path / "minilm_embeddings", warmup_texts=texts[:2])
        hub = export_hub_encoder(model, tokenizer, tmp_path / "hub")
        (tmp_path / "serve.json").write_text(json.dumps({"export": export, "texts": texts, "hub": hub._asdict()}),
                                             encoding="utf-8")
        serve_process = _run(SERVE, tmp_path / "serve.json", tmp_path / "served.json")
        _finish(reference_process)
        _finish(serve_process)
    finally:
        for process in (reference_process, locals().get("serve_process")):
            if process is not None and process.poll() is None:
                process.kill()
                process.communicate()
    reference = json.loads((tmp_path / "reference.json").read_text())
    served = json.loads((tmp_path / "served.json").read_text())
    assert reference["max_seq_length"] == 256
    expected = np.array(reference["embeddings"], np.float32)
    assert expected.shape == (len(texts), 384)
    difference = float(np.abs(ours - expected).max())
    served_difference = float(np.abs(np.array(served["embeddings"]) - expected).max())
    hub_difference = float(np.abs(np.array(served["hub_default"]) - expected).max())
    print(f"\nmax |kzoo - sentence-transformers|: in process {difference:.2e}, served {served_difference:.2e}, "
          f"TF Hub-style {hub_difference:.2e}")
    assert difference <= 1e-5 and served_difference <= 1e-5 and hub_difference <= 1e-5
    # the long text is truncated as the reference truncates it: at 256 wordpieces, not 512
    assert len(tokenizer(tf.constant([texts[-4]]))[0]) > 300
    assert served["hub_signature"] == ["embeddings", "pooled_output", "sequence_output"]

    bad = np.array(served["bad"])  # empty, 100k characters, invalid UTF-8, whitespace: defined, unit-norm
    assert bad.shape == (4, 384) and np.isfinite(bad).all()
    np.testing.assert_allclose(np.linalg.norm(bad, axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(bad[0], bad[3], atol=1e-6)  # whitespace only = empty: [CLS] [SEP]
    assert served["empty_batch_shape"] == [0, 384]
    assert os.path.exists(os.path.join(export, "assets.extra", "tf_serving_warmup_requests"))

    # SQuAD paragraph retrieval with kzoo's embeddings agrees with sentence-transformers' on the same split
    packer_fn = tf.function(lambda t: model(packer(tokenizer(t)), training=False),
                            input_signature=[tf.TensorSpec([None], tf.string)])
    ours = evaluate_retrieval(RetrievalEval(squad_file=str(squad), eval_fraction=0.5, split_seed=0),
                              embedder=(packer_fn, "kzoo, in process"))
    _, ranked = retrieval.exact_search(np.array(reference["queries"]), np.array(reference["corpus"]), k=10)
    theirs = retrieval.retrieval_metrics(ranked, split.relevant)
    print(f"retrieval on {ours['queries']} questions / {ours['corpus']} paragraphs: kzoo {ours['metrics']}, "
          f"sentence-transformers {theirs}")
    assert ours["queries"] == len(split.queries) > 40
    assert ours["metrics"] == pytest.approx(theirs, abs=1.0 / len(split.queries))  # at most one near-tie apart
