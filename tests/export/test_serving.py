"""TF Serving conventions of `export_classifier`: versions, warm-up file, signatures, bad input."""

import json
import os
import re
import subprocess
import sys
import time
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from kzoo.configs import BertConfig
from kzoo.export import export_classifier
from kzoo.export import classifier as classifier_module
from kzoo.export.warmup import WARMUP_FILE, read_warmup_logs, read_warmup_requests, write_warmup_requests
from kzoo.models import bert_classifier, bert_encoder
from kzoo.text import BertPacker, BertTokenizer

LABELS = ["alarm", "music", "weather"]
SEQ = 16
WARMUP = ["play some jazz", "Wake me at 7 tomorrow", "Café Ünïcödé 我爱北京"]
CALL_SECONDS = 10  # bound on one signature call with bad input (measured: well under 1 s)
BAD_TEXTS = {
    "empty": [b""],
    "long_word_100k": [b"a" * 100_000],
    "long_words_100k": [b"ab " * 33_334],
    "long_punct_100k": [b"!" * 100_000],
    "long_cjk_100k": ["\u6211" * 100_000],
    "batch_of_long_8x100k": [("\u00e9t\u00e9 " * 25_000).encode()] * 8,
    "invalid_utf8": [b"caf\xc3 \xffjazz\x80", b"\xc0\xaf\xed\xa0\x80\xf8\x88\x80\x80\x80"],
}


def _filter(stderr):
    noise = re.compile(r"cuda|TF_ENABLE|oneDNN|rebuild|absl::InitializeLog|E0000|W0000|I0000")
    return "\n".join(line for line in stderr.splitlines() if not noise.search(line))


@pytest.fixture(scope="module")
def tokenizer():
    from tests.conftest import minilm_vocab_file

    return BertTokenizer(vocab_file=minilm_vocab_file())


@pytest.fixture(scope="module")
def model(tokenizer):
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)
    assert tokenizer.vocab_size == 30522
    return bert_classifier(bert_encoder(config), num_classes=len(LABELS))


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tokenizer, model):
    """One export with warm-up texts, recording the renames it makes and what they move."""
    root = tmp_path_factory.mktemp("serving") / "intents"
    renames, real_rename = [], os.rename

    def rename(src, dst):
        renames.append((os.fspath(src), os.fspath(dst), sorted(os.listdir(src)),
                        os.path.isfile(os.path.join(src, WARMUP_FILE))))
        return real_rename(src, dst)

    with mock.patch("os.rename", rename):
        path = export_classifier(model, tokenizer, LABELS, root, seq_length=SEQ, warmup_texts=WARMUP)
    loaded = tf.saved_model.load(path)
    return {"root": str(root), "path": path, "renames": renames, "loaded": loaded,
            "text": loaded.signatures["serving_default"], "packed": loaded.signatures["serve_packed"]}


@pytest.fixture(scope="module")
def pair_path(tmp_path_factory, tokenizer, model):
    root = tmp_path_factory.mktemp("serving") / "pairs"
    return export_classifier(model, tokenizer, LABELS, root, seq_length=SEQ, pair=True,
                             warmup_texts=["a b", "c"], warmup_texts_b=["d", "e f"], model_name="nli")


@pytest.fixture(scope="module")
def pair_signature(pair_path):
    return tf.saved_model.load(pair_path).signatures["serving_default"]


def _expected(model, tokenizer, texts):
    packer = BertPacker.from_tokenizer(tokenizer, SEQ, dynamic_length=True)
    return tf.nn.softmax(model(packer(tokenizer(tf.constant(texts, tf.string))), training=False)).numpy()


def _timed(fn, **kwargs):
    start = time.perf_counter()
    out = fn(**kwargs)
    return out, time.perf_counter() - start


# --- versions --------------------------------------------------------------------------------

def test_export_lands_in_integer_folder_through_a_temporary_one(exported):
    root, path = exported["root"], exported["path"]
    assert path == os.path.join(root, "1") and sorted(os.listdir(root)) == ["1"]
    [(src, dst, contents, had_warmup)] = exported["renames"]
    assert dst == path and os.path.dirname(src) == root
    assert not os.path.basename(src).isdigit()  # TF Serving ignores non-integer folders
    assert "saved_model.pb" in contents and "variables" in contents and "assets.extra" in contents
    assert had_warmup  # the warm-up file is in place before the version becomes visible


def test_failing_export_leaves_nothing_and_versions_are_never_overwritten(exported, tokenizer, model,
                                                                         monkeypatch):
    root = exported["root"]
    before = {name: os.stat(os.path.join(root, "1", name)).st_mtime_ns for name in os.listdir(exported["path"])}

    def broken(path, *args, **kwargs):  # fails after the SavedModel itself is fully written
        assert os.path.isfile(os.path.join(path, "saved_model.pb"))
        raise OSError("disk full")

    monkeypatch.setattr(classifier_module, "write_warmup_requests", broken)
    with pytest.raises(OSError, match="disk full"):
        export_classifier(model, tokenizer, LABELS, root, seq_length=SEQ, warmup_texts=["x"])
    assert sorted(os.listdir(root)) == ["1"]  # no version 2, no temporary folder
    with pytest.raises(ValueError, match="already exists"):
        export_classifier(model, tokenizer, LABELS, root, seq_length=SEQ, version=1)
    after = {name: os.stat(os.path.join(root, "1", name)).st_mtime_ns for name in os.listdir(exported["path"])}
    assert after == before and sorted(os.listdir(root)) == ["1"]


# --- warm-up ---------------------------------------------------------------------------------

def test_warmup_records_parse_back_and_run_through_the_signature(exported, tokenizer, model):
    path = os.path.join(exported["path"], "assets.extra", "tf_serving_warmup_requests")
    assert os.path.isfile(path)
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path)]
    assert len(logs) == len(WARMUP) + 1  # one request per text, then all of them as one batch
    batches = []
    for log in logs:
        assert log.WhichOneof("log_type") == "predict_log"
        request = log.predict_log.request
        assert request.model_spec.name == "intents"  # base name of the export root
        assert request.model_spec.signature_name == "serving_default"
        assert list(request.inputs) == ["text"] and request.inputs["text"].dtype == tf.string.as_datatype_enum
        text = tf.make_ndarray(request.inputs["text"])
        out = exported["text"](text=tf.constant(text))
        np.testing.assert_allclose(out["probabilities"].numpy(), _expected(model, tokenizer, text), atol=1e-5)
        batches.append([t.decode() for t in text])
    assert batches == [[t] for t in WARMUP] + [WARMUP]
    parsed = read_warmup_requests(path)
    assert [[t.decode() for t in r["text"]] for r in parsed] == batches
    assert read_warmup_requests(exported["path"])[-1]["text"].shape == (len(WARMUP),)


def test_pair_warmup_has_text_and_text_b(pair_path, pair_signature):
    logs = read_warmup_logs(pair_path)
    assert [log.predict_log.request.model_spec.name for log in logs] == ["nli"] * 3
    requests = read_warmup_requests(pair_path)
    assert [sorted(r) for r in requests] == [["text", "text_b"]] * 3
    assert requests[-1]["text_b"].tolist() == [b"d", b"e f"]
    for request in requests:
        out = pair_signature(**{name: tf.constant(v) for name, v in request.items()})
        assert out["probabilities"].shape == (len(request["text"]), len(LABELS))


def test_warmup_writer_checks_its_input(exported, tmp_path, tokenizer, model):
    with pytest.raises(ValueError, match="do not match the inputs"):
        write_warmup_requests(exported["path"], "intents", {"sentence": ["hi"]})
    with pytest.raises(ValueError, match="dtype"):
        write_warmup_requests(exported["path"], "intents", {"text": np.array([1, 2])})
    with pytest.raises(ValueError, match="no signature"):
        write_warmup_requests(exported["path"], "intents", {"text": ["hi"]}, signature_name="predict")
    with pytest.raises(ValueError, match="1000"):
        write_warmup_requests(tmp_path, "m", {"text": ["hi"]}, num_records=1001)
    # Outside a SavedModel folder nothing is checked; num_records cycles through the requests.
    path = write_warmup_requests(tmp_path, "m", [{"text": ["a"]}, {"text": [b"b", "c"]}], num_records=5)
    assert path == os.path.join(str(tmp_path), "assets.extra", "tf_serving_warmup_requests")
    assert [r["text"].tolist() for r in read_warmup_requests(path)] == [[b"a"], [b"b", b"c"]] * 2 + [[b"a"]]
    with pytest.raises(ValueError, match="warmup_texts_b"):
        export_classifier(model, tokenizer, LABELS, tmp_path / "p", seq_length=SEQ, pair=True, warmup_texts=["a"])
    with pytest.raises(ValueError, match="only for pair"):
        export_classifier(model, tokenizer, LABELS, tmp_path / "p", warmup_texts=["a"], warmup_texts_b=["b"])
    with pytest.raises(ValueError, match="single string"):
        export_classifier(model, tokenizer, LABELS, tmp_path / "p", warmup_texts="hello")
    with pytest.raises(ValueError, match="1000"):
        export_classifier(model, tokenizer, LABELS, tmp_path / "p", warmup_texts=["hi"] * 1000)
    assert not os.path.exists(tmp_path / "p" / "1")


# --- saved_model_cli -------------------------------------------------------------------------

def _parse_saved_model_cli(output):
    """{signature: {"inputs"|"outputs": {name: (dtype, shape)}}} from `show --all`."""
    signatures, current, side = {}, None, None
    for line in output.splitlines():
        if m := re.match(r"signature_def\['(.+)'\]:", line):
            current = signatures.setdefault(m.group(1), {"inputs": {}, "outputs": {}})
        elif current is not None and (m := re.match(r"\s+(inputs|outputs)\['(.+)'\] tensor_info:", line)):
            side, name = m.group(1), m.group(2)
            current[side][name] = {}
        elif current is not None and side and (m := re.match(r"\s+(dtype|shape): (.+)", line)):
            current[side][name][m.group(1)] = m.group(2).strip()
    return {sig: {s: {n: (v.get("dtype"), v.get("shape")) for n, v in d.items()} for s, d in io.items()}
            for sig, io in signatures.items()}


def test_saved_model_cli_lists_the_signatures(exported):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    command = [cli] if os.path.exists(cli) else [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]
    run = subprocess.run([*command, "show", "--all", "--dir", exported["path"]], capture_output=True, text=True,
                         timeout=180, env={**os.environ, "PYTHONPATH": ""})
    assert run.returncode == 0, _filter(run.stderr)[-3000:]
    signatures = _parse_saved_model_cli(run.stdout)
    outputs = {"probabilities": ("DT_FLOAT", f"(-1, {len(LABELS)})"), "label_ids": ("DT_INT32", "(-1)"),
               "labels": ("DT_STRING", "(-1)")}
    assert signatures["serving_default"] == {"inputs": {"text": ("DT_STRING", "(-1)")}, "outputs": outputs}
    packed = {name: ("DT_INT32", "(-1, -1)") for name in ("input_word_ids", "input_mask", "input_type_ids")}
    assert signatures["serve_packed"] == {"inputs": packed, "outputs": outputs}
    assert "Method name is: tensorflow/serving/predict" in run.stdout


# --- bad input, in this process --------------------------------------------------------------

@pytest.mark.parametrize("case", sorted(BAD_TEXTS))
def test_bad_text_gives_a_valid_prediction_in_bounded_time(exported, tokenizer, model, case):
    texts = BAD_TEXTS[case]
    exported["text"](text=tf.constant(texts[:1], tf.string))  # first call of a shape pays one-off setup
    out, seconds = _timed(exported["text"], text=tf.constant(texts, tf.string))
    assert seconds < CALL_SECONDS, f"{case}: {seconds:.2f} s"
    probabilities = out["probabilities"].numpy()
    assert probabilities.shape == (len(texts), len(LABELS)) and np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)
    assert out["label_ids"].numpy().tolist() == probabilities.argmax(-1).tolist()
    assert [s.decode() for s in out["labels"].numpy()] == [LABELS[i] for i in probabilities.argmax(-1)]
    np.testing.assert_allclose(probabilities, _expected(model, tokenizer, texts), atol=1e-5)


def test_bad_text_meaning(exported, tokenizer):
    signature = exported["text"]

    def probabilities(*texts):
        return signature(text=tf.constant(texts, tf.string))["probabilities"].numpy()

    packer = BertPacker.from_tokenizer(tokenizer, SEQ, dynamic_length=True)
    # Empty: [CLS] [SEP].
    assert packer(tokenizer(tf.constant([""])))["input_word_ids"].numpy().tolist() == [[101, 102]]
    # Invalid UTF-8 bytes are dropped (as the official tokenizer's errors="ignore"), the rest kept.
    np.testing.assert_allclose(probabilities(b"caf\xc3 \xffjazz\x80"), probabilities(b"caf jazz"), atol=1e-6)
    np.testing.assert_allclose(probabilities(b"\xff\xfe\x80"), probabilities(b""), atol=1e-6)
    # 100k characters: truncated to SEQ tokens, so only the start matters; one huge word is [UNK].
    np.testing.assert_allclose(probabilities(b"ab " * 33_334), probabilities(b"ab " * (SEQ - 2)), atol=1e-6)
    unk = {"input_word_ids": tf.constant([[101, 100, 102]]), "input_mask": tf.ones([1, 3], tf.int32),
           "input_type_ids": tf.zeros([1, 3], tf.int32)}
    assert tokenizer.unk_token_id == 100
    np.testing.assert_allclose(probabilities(b"a" * 100_000), exported["packed"](**unk)["probabilities"].numpy(),
                               atol=1e-6)


def test_batch_of_zero_gives_empty_outputs(exported, pair_signature):
    out, seconds = _timed(exported["text"], text=tf.constant([], tf.string))
    assert seconds < CALL_SECONDS
    assert out["probabilities"].shape == (0, len(LABELS)) and out["probabilities"].dtype == tf.float32
    assert out["label_ids"].shape == (0,) and out["label_ids"].dtype == tf.int32
    assert out["labels"].shape == (0,) and out["labels"].dtype == tf.string
    assert pair_signature(text=tf.constant([], tf.string), text_b=tf.constant([], tf.string))["probabilities"].shape == (0, 3)
    for width in (0, 5):
        empty = tf.zeros([0, width], tf.int32)
        out = exported["packed"](input_word_ids=empty, input_mask=empty, input_type_ids=empty)
        assert out["probabilities"].shape == (0, len(LABELS)) and out["labels"].shape == (0,)


def test_malformed_batches_raise_invalid_argument(exported, pair_signature):
    # Without the check, tf-text's combine_segments read past the shorter batch (garbage ids).
    with pytest.raises(tf.errors.InvalidArgumentError, match="same batch size"):
        pair_signature(text=tf.constant(["a", "b"]), text_b=tf.constant(["c"]))
    packed, ids = exported["packed"], tf.constant([[101, 102]])
    with pytest.raises(tf.errors.InvalidArgumentError, match="same shape"):
        packed(input_word_ids=ids, input_mask=tf.ones([1, 3], tf.int32), input_type_ids=tf.zeros_like(ids))
    no_tokens = tf.zeros([2, 0], tf.int32)
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least one token"):
        packed(input_word_ids=no_tokens, input_mask=no_tokens, input_type_ids=no_tokens)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"not in \[0, 30522\)"):
        packed(input_word_ids=tf.constant([[101, 40000]]), input_mask=tf.ones_like(ids), input_type_ids=tf.zeros_like(ids))


# --- bad input, in a fresh process that imports only tensorflow and tensorflow_text -----------

FRESH_SCRIPT = r"""
import json, sys, time
import tensorflow as tf, tensorflow_text
loaded = tf.saved_model.load(sys.argv[1])
text_sig, packed_sig = loaded.signatures["serving_default"], loaded.signatures["serve_packed"]
pair_sig = tf.saved_model.load(sys.argv[2]).signatures["serving_default"]
cases = {name: [bytes.fromhex(t) for t in texts] for name, texts in json.loads(sys.stdin.read()).items()}

def run(name, fn, **kwargs):
    start = time.perf_counter()
    try:
        out = fn(**kwargs)
        result = {"shape": out["probabilities"].shape.as_list(), "finite": bool(tf.reduce_all(tf.math.is_finite(out["probabilities"])))}
    except tf.errors.InvalidArgumentError as e:
        result = {"error": "InvalidArgumentError", "message": e.message[:500]}
    result["seconds"] = time.perf_counter() - start
    results[name] = result

results = {}
for name, texts in cases.items():
    run(name, text_sig, text=tf.constant(texts, tf.string))
z = lambda b, s: tf.zeros([b, s], tf.int32)
run("packed_zero_batch", packed_sig, input_word_ids=z(0, 0), input_mask=z(0, 0), input_type_ids=z(0, 0))
run("packed_no_tokens", packed_sig, input_word_ids=z(2, 0), input_mask=z(2, 0), input_type_ids=z(2, 0))
run("pair_mismatch", pair_sig, text=tf.constant(["a", "b"]), text_b=tf.constant(["c"]))
results["kzoo_imported"] = "kzoo" in sys.modules
print(json.dumps(results))
"""


def test_bad_input_in_a_fresh_process(exported, pair_path, tmp_path):
    cases = {name: [(t.encode() if isinstance(t, str) else t).hex() for t in texts] for name, texts in BAD_TEXTS.items()}
    cases["zero_batch"] = []
    run = subprocess.run([sys.executable, "-c", FRESH_SCRIPT, exported["path"], pair_path], input=json.dumps(cases),
                         capture_output=True, text=True, timeout=240, cwd=str(tmp_path),
                         env={**os.environ, "PYTHONPATH": ""})
    assert run.returncode == 0, _filter(run.stderr)[-3000:]  # no crash
    results = json.loads(run.stdout.strip().splitlines()[-1])
    assert results.pop("kzoo_imported") is False
    for name, texts in BAD_TEXTS.items():
        assert results[name]["shape"] == [len(texts), len(LABELS)] and results[name]["finite"], (name, results[name])
    assert results["zero_batch"]["shape"] == [0, len(LABELS)]
    assert results["packed_zero_batch"]["shape"] == [0, len(LABELS)]
    assert "at least one token" in results["packed_no_tokens"]["message"]
    assert "same batch size" in results["pair_mismatch"]["message"]
    print("fresh-process seconds:", {name: round(r["seconds"], 3) for name, r in results.items()})
    slowest = max(results.values(), key=lambda r: r["seconds"])
    assert slowest["seconds"] < CALL_SECONDS, results


SIGNATURE_BAD_TEXTS = {
    "empty": [""],
    "100k characters": ["paris " * 16_666 + "end"],
    "invalid UTF-8": [b"caf\xc3 in \xff paris"],
    "batch of zero": [],
}


@pytest.mark.parametrize("case", sorted(SIGNATURE_BAD_TEXTS))
def test_bad_input_through_the_tagger_and_answer_signatures(case, tmp_path_factory, tokenizer):
    """The same bad inputs through the tagger and SQuAD-answer signatures: a
    defined result, quickly, never a crash."""
    from kzoo.export import export_span_labeler, export_tagger
    from kzoo.models import bert_span_labeler, bert_token_classifier

    root = tmp_path_factory.getbasetemp() / "bad_input_exports"
    if not (root / "tagger" / "1").exists():
        config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                            num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
        export_tagger(bert_token_classifier(bert_encoder(config), num_tags=3), tokenizer, ["O", "B-LOC", "I-LOC"],
                      root / "tagger", seq_length=64)
        export_span_labeler(bert_span_labeler(bert_encoder(config)), tokenizer, root / "qa", max_seq_length=128,
                            doc_stride=64, max_query_length=16)
    tagger = tf.saved_model.load(str(root / "tagger" / "1")).signatures["serving_default"]
    answer = tf.saved_model.load(str(root / "qa" / "1")).signatures["serving_default"]
    rows = SIGNATURE_BAD_TEXTS[case]
    texts = tf.constant(rows, tf.string) if rows else tf.zeros([0], tf.string)

    start = time.time()
    tags = tagger(text=texts)
    assert tags["tags"].shape[0] == len(rows) and tags["num_words"].shape == (len(rows),)
    if case == "empty":
        assert tags["num_words"].numpy().tolist() == [0]
    if case == "100k characters":
        assert int(tags["num_words"][0]) == 16_667  # every word listed; those past the window get "O"
    questions = tf.constant(["where ?"] * len(rows), tf.string) if rows else tf.zeros([0], tf.string)
    out = answer(question=questions, context=texts)
    assert out["answer"].shape == (len(rows),)
    for i, context in enumerate(rows):
        context = context.decode("utf-8", "ignore") if isinstance(context, bytes) else context
        s, e = int(out["start_char"][i]), int(out["end_char"][i])
        assert out["answer"].numpy()[i].decode() == (context[s:e] if s >= 0 else "")
    assert time.time() - start < 60
