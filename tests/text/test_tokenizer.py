"""Tests for kzoo.text.BertTokenizer against a plain-Python reference of the official rules."""

import json
import os
import re
import subprocess
import sys
import textwrap
import unicodedata
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from kzoo.text import BertPacker, BertTokenizer

from tests.conftest import SHARED, minilm_vocab_file

DATA = Path(SHARED) / "data"


# ---------------------------------------------------------------------------------------------
# Reference: google-research/bert's BasicTokenizer + WordpieceTokenizer rules, in plain Python.

CJK = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
       (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def ref_is_control(ch):
    return ch not in "\t\n\r" and unicodedata.category(ch).startswith("C")


def ref_is_whitespace(ch):
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def ref_is_punctuation(ch):
    cp = ord(ch)
    return 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126 or (
        unicodedata.category(ch).startswith("P"))


def ref_basic_tokenize(text, lower_case=True):
    """Rules 1-5: clean, space CJK, split, lower + strip accents, split off punctuation."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "ignore")
    kept = [" " if ref_is_whitespace(ch) else ch for ch in text
            if ord(ch) not in (0, 0xFFFD) and not ref_is_control(ch)]
    text = "".join(f" {ch} " if any(a <= ord(ch) <= b for a, b in CJK) else ch for ch in kept)
    words = []
    for token in text.split():
        if lower_case:
            token = unicodedata.normalize("NFD", token.lower())
            token = "".join(ch for ch in token if unicodedata.category(ch) != "Mn")
        piece = ""
        for ch in token:
            if ref_is_punctuation(ch):
                words += [piece, ch] if piece else [ch]
                piece = ""
            else:
                piece += ch
        if piece:
            words.append(piece)
    return " ".join(words).split()


def ref_wordpiece(words, vocab, unk="[UNK]", max_chars=200):
    """Rule 6: greedy longest match first, '##' continuations, [UNK] per uncovered word."""
    ids = []
    for word in words:
        pieces, start = [], 0
        while start < len(word) and len(word) <= max_chars:
            end = len(word)
            while end > start and ("##" * (start > 0) + word[start:end]) not in vocab:
                end -= 1
            if end == start:
                break
            pieces.append(vocab["##" * (start > 0) + word[start:end]])
            start = end
        ids += pieces if start == len(word) and len(word) <= max_chars else [vocab[unk]]
    return ids


def ref_tokenize(text, vocab, lower_case=True, max_chars=200):
    return ref_wordpiece(ref_basic_tokenize(text, lower_case), vocab, max_chars=max_chars)


# ---------------------------------------------------------------------------------------------
# Fixtures and data.

def require(path):
    if not path.exists():
        pytest.skip(f"shared data {path} is absent (expected <repo root>/../shared, or KZOO_TEST_SHARED)")
    return path


@pytest.fixture(scope="module")
def vocab_file():
    """BERT's uncased vocabulary (MiniLM's), from the pip package the README's install puts here."""
    return minilm_vocab_file()


@pytest.fixture(scope="module")
def vocab(vocab_file):
    lines = Path(vocab_file).read_text(encoding="utf-8").split("\n")
    return {token.strip(): i for i, token in enumerate(lines[:-1] if lines[-1] == "" else lines)}


@pytest.fixture(scope="module")
def tokenizer(vocab_file):
    return BertTokenizer(vocab_file=vocab_file)


def tsv_rows(path, skip_header):
    rows = require(path).read_text(encoding="utf-8-sig").split("\n")[skip_header:]
    return [row.split("\t") for row in rows if row]


@pytest.fixture(scope="module")
def sentences():
    """All TREC questions and 4,000 GLUE sentences (SST-2, CoLA, MRPC pairs)."""
    trec = [line.split(" ", 1)[1] for line in
            require(DATA / "trec" / "train_5500.label").read_text(encoding="utf-8").splitlines()]
    sst2 = [row[0] for row in tsv_rows(DATA / "sst2" / "train.tsv", 1)[:1500]]
    cola = [row[3] for row in tsv_rows(DATA / "cola" / "train.tsv", 0)[:1500]]
    mrpc = [s for row in tsv_rows(DATA / "mrpc" / "train.tsv", 1)[:500] for s in row[3:5]]
    assert len(trec) == 5452 and len(sst2) == len(cola) == 1500 and len(mrpc) == 1000
    return trec + sst2 + cola + mrpc


EDGE_CASES = [
    "Café Ünïcödé", "İstanbul", "ΟΔΟΣ ΟΔΟΣ.Α", "Straße ß", "ﬁnance ﬁ", "ＡＢＣ ＡＢＣｄ",
    "我爱北京天安门", "東京タワーはとても高いです。カタカナとひらがな",
    "zero\u200bwidth joiner\u200dhere", "\ufeffbom at start", "nul\x00byte", "bad\ufffdchar",
    "tab\tnew\nline\rreturn", "line\u2028separator para\u2029separator", "no\u00a0break",
    "bell\x07char", "emoji 😀 ❤️ 🤗 👍🏽!", "д" * 200, "д" * 201,
    "a" * 200 + " " + "a" * 201,
    "snow\u2603man", "wow!!!...???", "[MASK] is [CLS] not [SEP]", "", " \t\r\n ", "I ıi İ",
    "ǅemal ǈuka", "\u0301\u0301 combining only", "\u2c2f\u2c2f \ua7c0\u03a3\ua7c0",
    "x\u0085y\x1fz\x0bv\x0cw", "\U000E0041tag",
    "Ǳ ǲ ǳ ɐ Ɐ", "don't stop-believing (really) #1 @home $5 100% a&b",
]


# ---------------------------------------------------------------------------------------------
# Equality with the reference.

@pytest.mark.parametrize("text", EDGE_CASES, ids=range(len(EDGE_CASES)))
def test_edge_cases_match_reference(tokenizer, vocab, text):
    assert tokenizer.basic_tokenize(tf.constant([text]))[0].numpy().tolist() == [
        w.encode() for w in ref_basic_tokenize(text)]
    assert tokenizer(tf.constant([text]))[0].numpy().tolist() == ref_tokenize(text, vocab)


def test_word_lengths_count_characters(tokenizer, vocab):
    ids = tokenizer(["д" * 200, "д" * 201]).to_list()
    assert ids[0] == [vocab["д"]] + [vocab["##д"]] * 199
    assert ids[1] == [vocab["[UNK]"]]


def test_invalid_utf8_is_dropped_like_decode_ignore(tokenizer, vocab):
    raw = b"caf\xc3\xa9 \xff\xfebad \xe4\xbd end\xed\xa0\x80"
    assert tokenizer(tf.constant([raw]))[0].numpy().tolist() == ref_tokenize(raw, vocab)


def test_every_code_point_matches_reference():
    """Each code point between two letters gives the reference's words (vocab-independent)."""
    texts = [f"x{chr(cp)}y" for cp in range(1, 0x110000) if not 0xD800 <= cp <= 0xDFFF]
    tokenizer = BertTokenizer(vocabulary=["[UNK]"])
    words = tokenizer.basic_tokenize(tf.constant(texts))
    got = np.split(words.flat_values.numpy(), words.row_splits.numpy()[1:-1])
    mismatches = [text for text, row in zip(texts, got)
                  if [w.decode() for w in row] != ref_basic_tokenize(text)]
    assert not mismatches, [f"U+{ord(t[1]):04X}" for t in mismatches[:20]]


@pytest.mark.xfail(reason="documented residual: TF's ICU (Unicode 13) does not know the Unicode 14 "
                          "letter U+A7C0 is cased, so a sigma after it is not final", strict=False)
def test_final_sigma_after_unicode14_letter(tokenizer):
    assert tokenizer.basic_tokenize(tf.constant(["\ua7c0\u03a3"]))[0].numpy().tolist() == [
        w.encode() for w in ref_basic_tokenize("\ua7c0\u03a3")]


def test_real_sentences_match_reference(tokenizer, vocab, sentences):
    got = tokenizer(tf.constant(sentences)).to_list()
    mismatches = [s for s, ids in zip(sentences, got) if ids != ref_tokenize(s, vocab)]
    assert not mismatches, mismatches[:5]


def test_real_sentences_match_transformers(tokenizer, vocab_file, sentences):
    try:
        from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy as Slow
    except ImportError:
        try:
            from transformers import BertTokenizer as Slow  # transformers < 5: the slow one
        except ImportError:
            pytest.skip("transformers is not importable; the reference comparison still runs")
    slow = Slow(vocab_file, do_lower_case=True)
    got = tokenizer(tf.constant(sentences)).to_list()
    mismatches = [s for s, ids in zip(sentences, got)
                  if ids != slow.convert_tokens_to_ids(slow.tokenize(s))]
    assert not mismatches, mismatches[:5]


# ---------------------------------------------------------------------------------------------
# Cased mode, vocabulary handling, API.

CASED_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "The", "the", "Caf", "##é", "é",
               "ß", "##ß", "!", ",", "Ⅻ", "İ", "##stanbul", "un", "##aff", "##able", "我"]


def test_cased_mode_on_small_vocab():
    tokenizer = BertTokenizer(vocabulary=CASED_VOCAB, lower_case=False)
    vocab = {t: i for i, t in enumerate(CASED_VOCAB)}
    texts = ["The the THE, Café é!", "İstanbul unaffable ßß", "我们 Ⅻ", "Cafe\u0301"]
    assert tokenizer(texts).to_list() == [ref_tokenize(t, vocab, lower_case=False) for t in texts]
    assert tokenizer(texts).to_list()[0] == [5, 6, 1, 13, 7, 8, 9, 12]


def test_vocab_file_errors(tmp_path):
    with pytest.raises(ValueError, match="missing.txt"):
        BertTokenizer(vocab_file=str(tmp_path / "missing.txt"))
    for name, content, message in [("empty.txt", "", "is empty"),
                                   ("dup.txt", "[UNK]\na\nb\na\n", "'a' appears twice, at lines 2 and 4"),
                                   ("blank.txt", "[UNK]\n\na\n", "line 2"),
                                   ("nounk.txt", "a\nb\n", "lacks the unknown token")]:
        (tmp_path / name).write_text(content, encoding="utf-8")
        with pytest.raises(ValueError, match=re.escape(name) + ".*" + re.escape(message)):
            BertTokenizer(vocab_file=str(tmp_path / name))
    with pytest.raises(ValueError, match="exactly one"):
        BertTokenizer()
    with pytest.raises(ValueError, match="exactly one"):
        BertTokenizer(vocabulary=["[UNK]"], vocab_file=str(tmp_path / "dup.txt"))
    with pytest.raises(ValueError, match="pass a token list as `vocabulary=`"):
        BertTokenizer(["[UNK]", "a"])


def test_vocab_file_is_the_first_positional_argument(tmp_path):
    (tmp_path / "vocab.txt").write_text("[UNK]\nhello\n", encoding="utf-8")
    positional = BertTokenizer(tmp_path / "vocab.txt", False)  # a PathLike works too
    assert positional.lower_case is False and positional.vocabulary == ("[UNK]", "hello")
    assert positional(["hello Hello"]).to_list() == [[1, 0]]


def test_special_ids_and_lookups(tokenizer):
    assert (tokenizer.vocab_size, tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.cls_token_id,
            tokenizer.sep_token_id, tokenizer.mask_token_id) == (30522, 0, 100, 101, 102, 103)
    assert tokenizer.token_to_id("hello") == 7592
    with pytest.raises(KeyError, match="not-a-token"):
        tokenizer.token_to_id("not-a-token")
    ids = tokenizer(["Hello, world!", "unaffable"])
    assert tokenizer.ids_to_tokens(ids).to_list() == [[b"hello", b",", b"world", b"!"],
                                                      [b"una", b"##ffa", b"##ble"]]
    with pytest.raises(ValueError, match=r"lacks the special token '\[CLS\]'"):
        BertTokenizer(vocabulary=["[UNK]"]).cls_token_id


def test_input_ranks(tokenizer):
    batch = tokenizer(["hello world", "hi"])
    assert isinstance(batch, tf.RaggedTensor) and batch.dtype == tf.int32
    assert tokenizer.tokenize("hello world").numpy().tolist() == batch[0].numpy().tolist()
    words = tokenizer(tf.ragged.constant([["hello", "unaffable"], ["hi"]]))
    assert words.to_list() == [[[7592], [14477, 20961, 3468]], [[7632]]]
    assert tokenizer(tf.constant([["hello world"], ["hi"]])).to_list() == [[[7592, 2088]], [[7632]]]


def test_get_config_round_trip(tokenizer):
    config = tokenizer.get_config()
    assert config["vocabulary"][:2] == ["[PAD]", "[unused0]"] and "vocab_file" not in config
    restored = BertTokenizer.from_config(config)
    texts = ["Round-trip: Café ΟΔΟΣ 我爱北京", "unaffable"]
    assert restored(texts).to_list() == tokenizer(texts).to_list()
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(tokenizer))
    assert isinstance(revived, BertTokenizer) and revived(texts).to_list() == tokenizer(texts).to_list()


def test_tf_function_and_dataset(tokenizer, vocab):
    texts = ["Hello, world!", "Café Ünïcödé", "我爱北京"]
    expected = [ref_tokenize(t, vocab) for t in texts]
    fn = tf.function(tokenizer, input_signature=[tf.TensorSpec([None], tf.string)])
    assert fn(tf.constant(texts)).to_list() == expected
    unbatched = tf.data.Dataset.from_tensor_slices(texts).map(tokenizer)
    assert [ids.tolist() for ids in unbatched.as_numpy_iterator()] == expected
    batched = tf.data.Dataset.from_tensor_slices(texts).batch(2).map(tokenizer)
    assert [row for batch in batched for row in batch.to_list()] == expected


FRESH_PROCESS = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    import tensorflow_text  # registers the tf-text ops
    module = tf.saved_model.load(sys.argv[1])
    texts = tf.constant(json.loads(sys.argv[2]))
    features = module.signatures["serving_default"](text_a=texts, text_b=texts[::-1])
    print(json.dumps({"ids": module.tokenize(texts).to_list(),
                      "features": {k: v.numpy().tolist() for k, v in features.items()}}))
""")


def test_saved_model_in_fresh_process(tokenizer, vocab, tmp_path):
    """Tokenizer and packer traced into a SavedModel serve in a process without kzoo/keras.

    The process runs under a Turkish locale, where ICU's locale-sensitive lower case would map
    "I" to dotless "ı" without the ASCII-first lower-casing.
    """
    packer = BertPacker.from_tokenizer(tokenizer, seq_length=12)

    class Preprocess(tf.Module):
        def __init__(self):
            super().__init__()
            self.tokenizer, self.packer = tokenizer, packer

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def tokenize(self, text):
            return self.tokenizer(text)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)] * 2)
        def pack(self, text_a, text_b):
            return self.packer((self.tokenizer(text_a), self.tokenizer(text_b)))

    module = Preprocess()
    path = str(tmp_path / "preprocess")
    tf.saved_model.save(module, path, signatures={"serving_default": module.pack})
    texts = ["IN THE BEGINNING, İstanbul!", "Café Ünïcödé \x07 ΟΔΟΣ", "我爱北京天安门 unaffable"]
    env = dict(os.environ, LC_ALL="tr_TR.UTF-8", LANG="tr_TR.UTF-8", TF_CPP_MIN_LOG_LEVEL="3")
    run = subprocess.run([sys.executable, "-c", FRESH_PROCESS, path, json.dumps(texts)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["ids"] == [ref_tokenize(t, vocab) for t in texts]
    expected = module.pack(tf.constant(texts), tf.constant(texts[::-1]))
    assert result["features"] == {k: v.numpy().tolist() for k, v in expected.items()}
