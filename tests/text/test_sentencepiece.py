"""Tests for kzoo.text.AlbertTokenizer and XLMRobertaTokenizer against their references.

References (computed once per session in a subprocess without TensorFlow, see
tests/text/test_family_packing.py): the slow tokenizers, i.e. the sentencepiece library behind
google-research/albert's preprocess_text + encode_pieces (with transformers' quote rule) and
behind fairseq's XLM-R dictionary, and transformers 5's `AutoTokenizer` (a `tokenizers`
Unigram), which differs from them on a few documented kinds of strings.
"""

import re
import unicodedata

import keras
import pytest
import tensorflow as tf
import tensorflow_text as tf_text

from kzoo.text import AlbertTokenizer, BertPacker, SentencePieceTokenizer, XLMRobertaTokenizer

from tests.text.test_family_packing import family_assets


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return family_assets(tmp_path_factory)


@pytest.fixture(scope="module")
def albert(assets):
    return AlbertTokenizer(assets.folders["albert"] / "spiece.model")


@pytest.fixture(scope="module")
def xlmr(assets):
    return XLMRobertaTokenizer(assets.folders["xlm_roberta"] / "sentencepiece.bpe.model")


def differing(tokenizer, texts, reference, ties=False):
    """The texts whose ids differ from the reference's; with `ties=False`, only those that are not a
    tie: the same pieces in another order have the same unigram score, and SentencePiece and
    `tokenizers` pick different ones of equal-score segmentations ("ää…" as 12+13 or 13+12 "ä")."""
    got = tokenizer(tf.constant(texts)).to_list()
    return [text for text, ids, ref in zip(texts, got, reference)
            if ids != ref and (ties or sorted(ids) != sorted(ref))]


def py_preprocess(text, lower=True, keep_accents=False, quotes=True):
    """transformers 4's AlbertTokenizer.preprocess_text (google-research/albert's without `quotes`)."""
    text = " ".join(text.strip().split())
    if quotes:
        text = text.replace("``", '"').replace("''", '"')
    if not keep_accents:
        text = unicodedata.normalize("NFKD", text)
        text = "".join(c for c in text if not unicodedata.combining(c))
    return text.lower() if lower else text


# ---------------------------------------------------------------------------------------------
# ALBERT.

def test_albert_equals_the_slow_reference(albert, assets):
    assert assets.num_sentences >= 1000
    mismatches = differing(albert, assets.strings, assets.ids("albert", "slow")[0], ties=True)
    assert mismatches == [], mismatches[:5]


def test_albert_digit_comma_rule_fires(albert, assets):
    """The model has pieces such as "▁12,"; without `encode_pieces`' rule real sentences change."""
    plain = AlbertTokenizer(model_proto=albert.model_proto, split_digit_comma=False)
    changed = differing(plain, assets.strings[: assets.num_sentences], albert(tf.constant(
        assets.strings[: assets.num_sentences])).to_list(), ties=True)
    assert len(changed) > 20
    pieces = albert.ids_to_tokens(albert(["pay 1,000,000 dollars, 12, 9,"])).to_list()[0]
    assert [p.decode() for p in pieces if re.search(r"\d,$", p.decode())] == []


def test_albert_sampled_code_points(albert, assets):
    """Every sampled code point as the reference, but those the running Python calls unassigned and
    tf-text's newer ICU decomposes under NFKD (TF 2.21: U+1CCD6..U+1CCEF, outlined Latin letters)."""
    got = albert(tf.constant(assets.code_point_texts)).to_list()
    mismatches = {cp for cp, ids, ref in zip(assets.code_points, got, assets.ids("albert", "slow")[1]) if ids != ref}
    icu = tf_text.normalize_utf8(tf.constant([chr(cp) for cp in assets.code_points]), "NFKD").numpy()
    nfkd_gaps = {cp for cp, n in zip(assets.code_points, icu) if n.decode() != unicodedata.normalize("NFKD", chr(cp))}
    assert all(unicodedata.category(chr(cp)) == "Cn" for cp in nfkd_gaps)
    assert mismatches <= nfkd_gaps, sorted(f"U+{cp:04X}" for cp in mismatches - nfkd_gaps)[:20]


def test_albert_versus_transformers_5(albert, assets):
    """transformers 5 loads a `tokenizers` ALBERT (no slow one is left): it lacks `encode_pieces`'
    digit-comma rule, lower-cases a final "Σ" to "σ" (Python: "ς"), does not split on U+000B and
    U+001C..U+001F (Python's str.split() does), and breaks ties between equal-score segmentations
    its own way. Without the digit-comma rule kzoo differs from it on strings with those characters
    and on ties only."""
    auto = assets.ids("albert", "auto")[0]
    with_rule = differing(albert, assets.strings, auto, ties=True)
    plain = AlbertTokenizer(model_proto=albert.model_proto, split_digit_comma=False)
    without_rule = differing(plain, assets.strings, auto)
    explained = [s for s in assets.strings if re.search("[\x0b\x1c-\x1f]|Σ", s)]
    assert set(without_rule) <= set(explained) and "ΟΔΟΣ ΟΔΟΣ.Α σ Σ" in without_rule
    assert "a\x1cb" in without_rule
    # The rest is the digit-comma rule.
    rule = set(differing(plain, assets.strings, albert(tf.constant(assets.strings)).to_list(), ties=True))
    ties = set(differing(plain, assets.strings, auto, ties=True)) - set(without_rule)
    assert set(with_rule) - set(without_rule) - ties <= rule
    print(f"\nALBERT vs transformers 5 AutoTokenizer: {len(with_rule)} of {len(assets.strings)} strings differ; "
          f"without the digit-comma rule {len(without_rule)} + {len(ties)} ties")


def test_albert_preprocess_equals_python(albert, assets):
    texts = assets.strings[assets.num_sentences:] + assets.strings[:200]
    for options in ({}, {"lower_case": False}, {"keep_accents": True}, {"normalize_quotes": False}):
        tokenizer = AlbertTokenizer(model_proto=albert.model_proto, **options) if options else albert
        got = [t.decode("utf-8") for t in tokenizer.preprocess(tf.constant(texts)).numpy()]
        expected = [py_preprocess(t, lower=options.get("lower_case", True),
                                  keep_accents=options.get("keep_accents", False),
                                  quotes=options.get("normalize_quotes", True)) for t in texts]
        mismatches = [(t, g, e) for t, g, e in zip(texts, got, expected) if g != e]
        assert mismatches == [], (options, mismatches[:3])


def test_albert_options_and_invalid_utf8(albert):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_proto=albert.model_proto)
    texts = ["Café ``Naïve'' ΟΔΟΣ", "UPPER ``case''", "rÉsumÉ"]
    cased = AlbertTokenizer(model_proto=albert.model_proto, lower_case=False, keep_accents=True,
                            normalize_quotes=False)
    assert cased(texts).to_list() == [sp.encode(py_preprocess(t, False, True, False)) for t in texts]
    raw = b"caf\xc3\xa9 \xff\xfebad \xe4\xbd end\xed\xa0\x80"
    assert albert(tf.constant([raw])).to_list() == albert([raw.decode("utf-8", "replace")]).to_list()


def test_albert_ids_and_packing(albert):
    assert (albert.pad_token_id, albert.unk_token_id, albert.cls_token_id, albert.sep_token_id,
            albert.mask_token_id) == (0, 1, 2, 3, 4)
    assert albert.special_token_ids == [0, 2, 3, 4] and albert.vocab_size == 2000
    assert albert.token_to_id("(") == 5 and albert.vocabulary[:5] == ("<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]")
    with pytest.raises(KeyError, match="not-a-piece"):
        albert.token_to_id("not-a-piece")
    with pytest.raises(ValueError, match="has no bos token"):
        albert.bos_token_id
    tokens = albert.ids_to_tokens(albert(["A (test)."])).to_list()[0]
    assert b"".join(tokens).decode() == "▁a▁(test)." and b"(" in tokens and b")" in tokens  # user-defined pieces
    assert albert.backend == "fast"
    packer = BertPacker.from_tokenizer(albert, 12)
    assert type(packer) is BertPacker and (packer.cls_id, packer.sep_id, packer.pad_id) == (2, 3, 0)


# ---------------------------------------------------------------------------------------------
# XLM-RoBERTa.

def test_xlmr_equals_the_slow_reference(xlmr, assets):
    strings, code_points = assets.ids("xlm_roberta", "slow")
    assert differing(xlmr, assets.strings, strings, ties=True) == []
    assert differing(xlmr, assets.code_point_texts, code_points, ties=True) == []


def test_xlmr_versus_transformers_5(xlmr, assets):
    """transformers 5's XLM-R (`tokenizers` Unigram after the model's precompiled normalizer and a
    whitespace split) splits at U+0085, where SentencePiece keeps it as a piece, and breaks ties
    between equal-score segmentations its own way."""
    auto = assets.ids("xlm_roberta", "auto")[0]
    mismatches = differing(xlmr, assets.strings, auto)
    assert mismatches and all("\x85" in s for s in mismatches)
    ties = set(differing(xlmr, assets.strings, auto, ties=True)) - set(mismatches)
    print(f"\nXLM-R vs transformers 5 AutoTokenizer: {len(mismatches) + len(ties)} of {len(assets.strings)} strings "
          f"differ ({len(ties)} ties)")


def test_xlmr_ids(xlmr, assets):
    size = 2000 + 2
    assert (xlmr.bos_token_id, xlmr.pad_token_id, xlmr.eos_token_id, xlmr.unk_token_id, xlmr.mask_token_id,
            xlmr.vocab_size) == (0, 1, 2, 3, size - 1, size)
    assert xlmr.cls_token_id == 0 and xlmr.sep_token_id == 2 and xlmr.special_token_ids == [0, 1, 2, size - 1]
    assert xlmr.vocabulary[:4] == ("<s>", "<pad>", "</s>", "<unk>") and xlmr.vocabulary[-1] == "<mask>"
    assert xlmr.vocabulary[4] == xlmr.pieces[3] and xlmr.token_to_id(xlmr.pieces[10]) == 11
    # SentencePiece's <unk> (0) is fairseq's 3: a character the model never saw.
    assert 3 in xlmr(["\U0001F9FF"]).to_list()[0]
    assert xlmr.ids_to_tokens(tf.constant([0, 1, 2, 3, size - 1])).numpy().tolist() == [
        b"<s>", b"<pad>", b"</s>", b"<unk>", b"<mask>"]
    assert type(BertPacker.from_tokenizer(xlmr, 16)).__name__ == "RobertaPacker"


def test_sentencepiece_bpe_model(tmp_path, assets):
    """A SentencePiece model of type BPE (not unigram) runs through the same op, with the library's ids."""
    import io

    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(assets.strings[:1500]), model_writer=model,
                                   vocab_size=800, model_type="bpe", minloglevel=2, num_threads=2)
    texts = assets.strings[1500:2100] + assets.strings[assets.num_sentences:]
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    bpe_xlmr = XLMRobertaTokenizer(model_proto=model.getvalue())
    assert bpe_xlmr.backend == "library"
    assert differing(bpe_xlmr, texts, [[i + 1 if i else 3 for i in ids] for ids in sp.encode(texts)], ties=True) == []
    assert differing(SentencePieceTokenizer(model_proto=model.getvalue()), texts, sp.encode(texts), ties=True) == []


# ---------------------------------------------------------------------------------------------
# Both: API, serialisation, errors.

@pytest.mark.parametrize("name", ["albert", "xlmr"])
def test_input_ranks_and_config_round_trip(name, albert, xlmr):
    tokenizer = {"albert": albert, "xlmr": xlmr}[name]
    texts = ["Round-trip: Café 1,000, ΟΔΟΣ 東京", "unaffable"]
    batch = tokenizer(texts)
    assert isinstance(batch, tf.RaggedTensor) and batch.dtype == tf.int32
    assert tokenizer.tokenize(texts[0]).numpy().tolist() == batch[0].numpy().tolist()
    words = tokenizer(tf.ragged.constant([texts, [texts[1]]]))
    assert words.to_list() == [batch.to_list(), [batch.to_list()[1]]]
    assert tokenizer(tf.constant([[texts[0]], [texts[1]]])).to_list() == [[batch.to_list()[0]], [batch.to_list()[1]]]
    config = tokenizer.get_config()
    assert "model_file" not in config and isinstance(config["model_proto"], str)
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(tokenizer))
    assert type(revived) is type(tokenizer) and revived.get_config() == config
    assert revived(texts).to_list() == batch.to_list()


def test_errors(tmp_path, albert):
    with pytest.raises(ValueError, match=r"missing.model' does not exist"):
        AlbertTokenizer(tmp_path / "missing.model")
    (tmp_path / "junk.model").write_bytes(b"not a model at all")
    with pytest.raises(ValueError, match=r"junk.model' is not a SentencePiece model"):
        XLMRobertaTokenizer(tmp_path / "junk.model")
    with pytest.raises(ValueError, match="exactly one of `model_file`"):
        AlbertTokenizer()
    with pytest.raises(ValueError, match="exactly one of `model_file`"):
        AlbertTokenizer(tmp_path / "junk.model", model_proto=albert.model_proto)
    with pytest.raises(ValueError, match=r"does not start with the pieces <unk>, <s>, </s>.*\['<pad>', '<unk>', "
                                         r"'\[CLS\]'\]"):
        XLMRobertaTokenizer(model_proto=albert.model_proto)
