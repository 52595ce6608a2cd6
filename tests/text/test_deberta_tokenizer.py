"""kzoo.text.DebertaV2Tokenizer (DeBERTa-v2/v3's spm.model) against its references, end to end.

A small unigram SentencePiece model with DeBERTa-v3's special pieces ([PAD]=0, [CLS]=1, [SEP]=2,
[UNK]=3) is trained from ../shared text and written as two Hugging Face folders (config.json
model_type "deberta-v2", spm.model, tokenizer_config.json): "cased" as the released models have it
({"do_lower_case": false, "vocab_type": "spm"}) and "lower_punct" with do_lower_case and
split_by_punct. In a subprocess that never imports TensorFlow the references run on the real
sentences and hard strings of tests/text/test_family_packing.py and its sampled code points:
- "slow": microsoft/DeBERTa's SPMTokenizer as transformers 4's DebertaV2Tokenizer runs it (per-character
  `str.lower()` as transformers' `tokenize` applies it, `_run_split_on_punc`, `spm.encode` pieces,
  `PieceToId`), written out here with the sentencepiece library, plus the library's ids directly;
- "auto": transformers 5's `AutoTokenizer` for the folder (a `tokenizers` Unigram over the same pieces).

Measured (2,100 real sentences + 278 hard strings + 15,491 code-point strings = 17,869, per folder):
- against the slow reference (and the sentencepiece library's ids): 0 differing strings, cased and
  lower_punct (`test_equals_the_slow_reference`);
- against transformers 5: cased 3 (a trailing U+0085) + 1 tie; lower_punct 16,790 + 1 tie, every one but
  the cased residuals a string with punctuation, where its pre-tokenizer is another algorithm
  (`test_versus_transformers_5` names each cause);
- offsets (`pieces_with_offsets`) on the 2,100 real sentences: 73,735 words NFKC leaves alone with no [UNK]
  get each piece's exact text; all spans equal transformers' offset_mapping but for 130 of 73,913 words
  (an [UNK] or an NFKC change of length), whose pieces get the whole word;
- packing equals transformers' `tokenizer(a, b, truncation=True, max_length=L, padding="max_length")` on the
  pairs of test_family_packing but one: both segments cut to an odd budget, where `tokenizers`' LongestFirst
  gives the odd token to the other segment than BERT's `_truncate_seq_pair` (kzoo keeps BERT's, as for ALBERT).
"""

import io
import json
import os
import re
import subprocess
import sys
import textwrap
import unicodedata

import keras
import pytest
import tensorflow as tf

from kzoo.text import (BertPacker, DebertaV2Tokenizer, infer_family, packer_from_tokenizer, pieces_with_offsets,
                       tokenizer_from_folder)
from kzoo.text.saving import RECORD, read_tokenizer, write_tokenizer
from tests.text.test_family_packing import (CODE_POINTS, HARD_STRINGS, PAIRS, TRAINING_EXTRAS, _training_lines,
                                            code_point_text, real_sentences, ref_truncate, tokenizers_truncate)

FOLDERS = {"cased": {"do_lower_case": False, "vocab_type": "spm"},
           "lower_punct": {"do_lower_case": True, "split_by_punct": True, "vocab_type": "spm"}}

REFERENCE = textwrap.dedent(r'''
    import io, json, os, re, sys, unicodedata
    import sentencepiece as spm, transformers

    job = json.load(open(sys.argv[1], encoding="utf-8"))
    strings, code_points, root = job["strings"], job["code_points"], job["root"]
    model = io.BytesIO()  # DeBERTa-v3's spm.model: [PAD]=0 [CLS]=1 [SEP]=2 [UNK]=3
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(job["training"]), model_writer=model, vocab_size=2000, model_type="unigram",
        pad_id=0, pad_piece="[PAD]", bos_id=1, bos_piece="[CLS]", eos_id=2, eos_piece="[SEP]", unk_id=3,
        unk_piece="[UNK]", character_coverage=0.9995, num_threads=2, minloglevel=2)
    for name, tokenizer_config in job["folders"].items():
        folder = os.path.join(root, name)
        os.makedirs(folder, exist_ok=True)
        open(os.path.join(folder, "spm.model"), "wb").write(model.getvalue())
        json.dump({"model_type": "deberta-v2"}, open(os.path.join(folder, "config.json"), "w"))
        json.dump(tokenizer_config, open(os.path.join(folder, "tokenizer_config.json"), "w"))

    def is_punctuation(char):  # DeBERTa's (BERT's) _is_punctuation
        cp = ord(char)
        if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
            return True
        return unicodedata.category(char).startswith("P")

    def split_on_punc(text):  # SPMTokenizer._run_split_on_punc
        output, start_new_word = [], True
        for char in text:
            if is_punctuation(char):
                output.append([char])
                start_new_word = True
            else:
                if start_new_word:
                    output.append([])
                start_new_word = False
                output[-1].append(char)
        return ["".join(x) for x in output]

    def slow(folder, texts, lower, punct):
        """transformers 4's DebertaV2Tokenizer: tokenize() lower-cases each character (re.sub "(.+?)"),
        _tokenize() lower-cases again, SPMTokenizer encodes (per punctuation split), PieceToId."""
        sp = spm.SentencePieceProcessor(model_file=os.path.join(folder, "spm.model"))
        out = []
        for text in texts:
            if lower:
                text = re.sub(r"(.+?)", lambda m: m.group(1).lower(), text).lower()
            words = split_on_punc(text) if punct else [text]
            out.append([sp.piece_to_id(p) for w in words for p in sp.encode(w, out_type=str)])
        return out

    def auto(folder, texts, offsets=0):
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
        result = {"ids": tokenizer(texts, add_special_tokens=False)["input_ids"], "class": type(tokenizer).__name__,
                  "vocab_size": len(tokenizer),
                  "special": {k: getattr(tokenizer, k + "_token_id") for k in ("cls", "sep", "pad", "mask", "unk")},
                  "pairs": [], "offsets": [], "tokens": []}
        for a, b, length in job["pairs"]:
            args = (a,) if b is None else (a, b)
            encoded = tokenizer(*args, truncation=True, max_length=length, padding="max_length",
                                return_token_type_ids=True)
            result["pairs"].append({k: encoded[k] for k in ("input_ids", "attention_mask", "token_type_ids")})
        for text in texts[:offsets]:
            encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            result["offsets"].append([list(o) for o in encoded["offset_mapping"]])
            result["tokens"].append(tokenizer.convert_ids_to_tokens(encoded["input_ids"]))
        return result

    result = {}
    for name, config in job["folders"].items():
        folder = os.path.join(root, name)
        lower, punct = config.get("do_lower_case", False), config.get("split_by_punct", False)
        result[name] = {"slow": slow(folder, strings + code_points, lower, punct),
                        "auto": auto(folder, strings + code_points, offsets=job["num_sentences"] if name == "cased"
                                     else 0)}
    sp = spm.SentencePieceProcessor(model_file=os.path.join(root, "cased", "spm.model"))
    result["cased"]["library"] = sp.encode(strings + code_points)
    assert "tensorflow" not in sys.modules  # the reference is independent of TF and kzoo
    json.dump(result, open(sys.argv[2], "w", encoding="utf-8"))
''')


class Assets:
    def __init__(self, root):
        sentences = real_sentences()  # skips, naming the file, when ../shared is absent
        self.root = root
        self.strings = sentences + HARD_STRINGS
        self.num_sentences = len(sentences)
        self.code_point_texts = [code_point_text(cp) for cp in CODE_POINTS]
        job = {"strings": self.strings, "code_points": self.code_point_texts, "num_sentences": len(sentences),
               "training": [line for line in _training_lines() + TRAINING_EXTRAS], "pairs": PAIRS,
               "folders": FOLDERS, "root": str(root)}
        (root / "job.json").write_text(json.dumps(job), encoding="utf-8")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        run = subprocess.run([sys.executable, "-c", REFERENCE, str(root / "job.json"), str(root / "reference.json")],
                             capture_output=True, text=True, env=env, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        self.reference = json.loads((root / "reference.json").read_text(encoding="utf-8"))
        self.folders = {name: root / name for name in FOLDERS}

    def ids(self, folder, name):
        """Reference ids of `strings`, and of `code_point_texts`."""
        ids = self.reference[folder][name]
        ids = ids["ids"] if isinstance(ids, dict) else ids
        return ids[: len(self.strings)], ids[len(self.strings):]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    for module in ("sentencepiece", "tokenizers", "transformers"):
        pytest.importorskip(module, reason=f"{module} (a keras-hub / test-extra dependency) builds the references")
    return Assets(tmp_path_factory.mktemp("deberta_assets"))


@pytest.fixture(scope="module")
def tokenizers(assets):
    return {name: tokenizer_from_folder(folder) for name, folder in assets.folders.items()}


@pytest.fixture(scope="module")
def ours(assets, tokenizers):
    """kzoo's ids of the strings followed by the code-point strings, per folder (computed once)."""
    texts = tf.constant(assets.strings + assets.code_point_texts)
    return {name: tokenizer(texts).to_list() for name, tokenizer in tokenizers.items()}


def differing(got, texts, reference, ties=True):
    """The texts whose ids (`got`) differ from the reference's (with `ties=False`, not counting the same pieces
    in another order: equal-score segmentations, which SentencePiece and `tokenizers` break differently)."""
    return [text for text, ids, ref in zip(texts, got, reference) if ids != ref and (ties or sorted(ids) != sorted(ref))]


# ---------------------------------------------------------------------------------------------
# Folder -> tokenizer, ids.

def test_folders_give_the_deberta_tokenizer(assets, tokenizers, tmp_path):
    cased, lower_punct = tokenizers["cased"], tokenizers["lower_punct"]
    assert type(cased) is DebertaV2Tokenizer and cased.backend == "fast"
    assert (cased.lower_case, cased.split_by_punct) == (False, False)
    assert (lower_punct.lower_case, lower_punct.split_by_punct) == (True, True)
    assert infer_family(assets.folders["cased"]) == "deberta_v2"
    only_model = tmp_path / "only_model"  # no config.json: the file decides
    only_model.mkdir()
    (only_model / "spm.model").write_bytes(cased.model_proto)
    assert infer_family(only_model) == "deberta_v2" and type(tokenizer_from_folder(only_model)) is DebertaV2Tokenizer
    assert tokenizer_from_folder(assets.folders["cased"], lower_case=True).lower_case is True
    assert tokenizer_from_folder(only_model, family="deberta-v2").lower_case is False
    for name, tokenizer in tokenizers.items():  # what transformers reads from the same folder
        auto = assets.reference[name]["auto"]
        assert auto["class"] == "DebertaV2Tokenizer"
        assert tokenizer.vocab_size == auto["vocab_size"] == 2001
        assert {k: getattr(tokenizer, k + "_token_id") for k in auto["special"]} == auto["special"]
    assert (cased.pad_token_id, cased.cls_token_id, cased.sep_token_id, cased.unk_token_id, cased.mask_token_id) == (
        0, 1, 2, 3, 2000)
    assert cased.vocabulary[:4] == ("[PAD]", "[CLS]", "[SEP]", "[UNK]") and cased.vocabulary[-1] == "[MASK]"
    assert cased.special_token_ids == [0, 1, 2, 2000] and cased.token_to_id("[MASK]") == 2000
    assert cased.ids_to_tokens(tf.constant([1, 2000])).numpy().tolist() == [b"[CLS]", b"[MASK]"]
    assert 3 in cased(["\U0001F9FF"]).to_list()[0]  # a character the model lacks is [UNK]
    packer = packer_from_tokenizer(cased, 8)
    assert type(packer) is BertPacker and (packer.cls_id, packer.sep_id, packer.pad_id) == (1, 2, 0)
    no_model = tmp_path / "no_model"
    no_model.mkdir()
    (no_model / "config.json").write_text('{"model_type": "deberta-v2"}', encoding="utf-8")
    (no_model / "tokenizer.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ValueError, match=r"no_model: the deberta_v2 tokenizer needs spm.model \(SentencePiece\).*"
                                         r"tokenizer.json alone is not enough"):
        tokenizer_from_folder(no_model)


def test_a_model_without_deberta_pieces_is_refused(assets):
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(assets.strings[:300]), model_writer=model, vocab_size=200,
                                   minloglevel=2, num_threads=1)
    with pytest.raises(ValueError, match=r"model_proto lacks the pieces \[PAD\], \[CLS\], \[SEP\], \[UNK\] .*"
                                         r"\['<unk>', '<s>', '</s>'"):
        DebertaV2Tokenizer(model_proto=model.getvalue())


# ---------------------------------------------------------------------------------------------
# Ids against the references.

@pytest.mark.parametrize("name", list(FOLDERS))
def test_equals_the_slow_reference(name, assets, ours):
    """Id for id equal to microsoft/DeBERTa's / transformers 4's tokenizer on every string and code point."""
    assert assets.num_sentences >= 1000
    strings, code_points = assets.ids(name, "slow")
    n = len(assets.strings)
    mismatches = differing(ours[name][:n], assets.strings, strings)
    point_mismatches = differing(ours[name][n:], assets.code_point_texts, code_points)
    print(f"\nDeBERTa ({name}) vs the slow reference: {len(mismatches)} of {len(assets.strings)} strings and "
          f"{len(point_mismatches)} of {len(assets.code_point_texts)} code-point strings differ")
    assert mismatches == [] and point_mismatches == [], (mismatches[:3], point_mismatches[:3])
    if name == "cased":  # the slow reference is the sentencepiece library's ids
        assert assets.reference["cased"]["library"] == assets.reference["cased"]["slow"]


def test_lower_case_and_punctuation_split(tokenizers):
    lower_punct = tokenizers["lower_punct"]
    texts = ["ΟΔΟΣ Straße İstanbul", "nul\x00Byte ǅemal"]
    assert [t.decode() for t in lower_punct.preprocess(tf.constant(texts)).numpy()] == [
        "".join(c.lower() for c in t) for t in texts]
    parts = lower_punct.split_on_punctuation(tf.constant(["Hello, world!! (x)", "", "a\x00,b"])).to_list()
    assert parts == [[b"Hello", b",", b" world", b"!", b"!", b" ", b"(", b"x", b")"], [], [b"a\x00", b",", b"b"]]
    pieces = lower_punct.ids_to_tokens(lower_punct(["Don't stop"])).to_list()[0]
    assert b"".join(pieces).decode() == "▁don▁'▁t▁stop"
    raw = b"caf\xc3\xa9 \xff\xfebad \xe4\xbd end"  # invalid UTF-8: U+FFFD, as the other SentencePiece tokenizers
    for tokenizer in tokenizers.values():
        assert tokenizer(tf.constant([raw])).to_list() == tokenizer([raw.decode("utf-8", "replace")]).to_list()


def _has_punctuation(text):
    """DeBERTa's `_is_punctuation` anywhere in the text, or a character whose NFKC form has one ("‥", "⑴")."""
    return any(33 <= ord(c) <= 47 or 58 <= ord(c) <= 64 or 91 <= ord(c) <= 96 or 123 <= ord(c) <= 126
               or unicodedata.category(c).startswith("P") for c in unicodedata.normalize("NFKC", text) + text)


def test_versus_transformers_5(assets, ours):
    """transformers 5's AutoTokenizer: a `tokenizers` Unigram over the same pieces behind the model's precompiled
    normalizer, Strip(right), Replace(" {2,}", " ") and a Metaspace split. With the released configuration
    ("cased") it differs only where its Strip removes a trailing U+0085 (NEL: whitespace to Rust, a character that
    SentencePiece keeps as a piece) and on ties between equal-score segmentations. With split_by_punct its
    `Punctuation` pre-tokenizer is another algorithm than SPMTokenizer's `_run_split_on_punc`: the space before a
    punctuation mark becomes a piece "▁" of its own (SentencePiece strips it), it splits after normalizing (NFKC
    turns "‥" and "⑴" into punctuation that SPMTokenizer, splitting the raw text, never sees) and its Unicode
    tables are older (e.g. U+061D is not punctuation to it); so it differs on most strings that hold punctuation
    and, besides those, only on the cased residuals."""
    counts = {}
    for name in FOLDERS:
        auto, auto_points = assets.ids(name, "auto")
        texts, reference = assets.strings + assets.code_point_texts, auto + auto_points
        mismatches = differing(ours[name], texts, reference, ties=False)
        ties = sorted(set(differing(ours[name], texts, reference)) - set(mismatches))
        counts[name] = (len(mismatches), len(ties))
        print(f"\nDeBERTa ({name}) vs transformers 5 AutoTokenizer: {len(mismatches)} + {len(ties)} ties of "
              f"{len(texts)} strings differ")
        nel = [t for t in mismatches if "\x85" in t]
        if name == "cased":
            assert mismatches == nel and all(t.endswith("\x85") for t in nel), mismatches[:5]
            assert "a\x85" in nel and len(ties) <= 3
        else:
            assert set(mismatches) - set(nel) <= {t for t in texts if _has_punctuation(t)}
            assert len(set(mismatches) - {t for t in texts if _has_punctuation(t)}) <= counts["cased"][0]
    assert counts["cased"][0] + counts["cased"][1] <= 5


# ---------------------------------------------------------------------------------------------
# Packing, words, offsets.

def layout(a, b, length, truncate):
    """[CLS]=1 a [SEP]=2 b [SEP]=2, padded with [PAD]=0."""
    if b is None:
        ids = [1] + list(a[: length - 2]) + [2]
    else:
        a, b = truncate(a, b, length - 3)
        ids = [1] + a + [2] + b + [2]
    return ids + [0] * (length - len(ids))


def test_packing_matches_transformers(assets, tokenizers):
    tokenizer = tokenizers["cased"]
    differ = []
    for index, (a, b, length) in enumerate(PAIRS):
        packer = BertPacker.from_tokenizer(tokenizer, length)
        a_ids = tokenizer(tf.constant([a]))
        b_ids = None if b is None else tokenizer(tf.constant([b]))
        got = {k: v.numpy()[0].tolist() for k, v in packer(a_ids if b is None else (a_ids, b_ids)).items()}
        ref = assets.reference["cased"]["auto"]["pairs"][index]
        a_ids = a_ids.to_list()[0]
        b_ids = None if b is None else b_ids.to_list()[0]
        assert got["input_word_ids"] == layout(a_ids, b_ids, length, ref_truncate), index
        assert ref["input_ids"] == layout(a_ids, b_ids, length, tokenizers_truncate), index
        if got["input_word_ids"] != ref["input_ids"]:
            differ.append(index)
            continue
        assert got["input_mask"] == ref["attention_mask"] and got["input_type_ids"] == ref["token_type_ids"], index
    # only pairs whose two segments are both cut to an odd budget (see the module docstring)
    odd = [i for i, (a, b, length) in enumerate(PAIRS) if b is not None and ref_truncate(
        *(tokenizer(tf.constant([a, b])).to_list()), length - 3) != tokenizers_truncate(
        *(tokenizer(tf.constant([a, b])).to_list()), length - 3)]
    assert differ == odd and odd and all((PAIRS[i][2] - 3) % 2 for i in odd), (differ, odd)


def test_words_tokenized_alone_equal_the_running_text(assets, tokenizers):
    texts = assets.strings[:assets.num_sentences]
    for name, tokenizer in tokenizers.items():
        words = tokenizer.split_words(tf.constant(texts))
        joined = tokenizer.tokenize_words(words).merge_dims(1, 2).to_list()
        whole = tokenizer(tf.constant([" ".join(t.split()) for t in texts])).to_list()
        assert sum(a != b for a, b in zip(joined, whole)) == 0, name


def test_offsets_exact_on_real_sentences(assets, tokenizers):
    """`pieces_with_offsets` on every real sentence: the tokenizer's ids; in each word that NFKC leaves as it is
    and that has no [UNK], every piece's span is exactly its text (a bare "▁" takes the next piece's span); and
    each span equals transformers' offset_mapping on every sentence whose ids agree, but for the words that do
    not map one to one onto their characters, whose pieces get the whole word (holding the reference's)."""
    tokenizer = tokenizers["cased"]
    texts = assets.strings[:assets.num_sentences]
    ids, begins, ends = pieces_with_offsets(tokenizer, tf.constant(texts))
    ids, begins, ends = ids.to_list(), begins.to_list(), ends.to_list()
    assert ids == tokenizer(tf.constant(texts)).to_list()
    vocabulary, auto = tokenizer.vocabulary, assets.reference["cased"]["auto"]
    compared = whole_words = words_total = exact_words = 0
    for i, text in enumerate(texts):
        spans = list(zip(begins[i], ends[i]))
        assert all(0 <= b <= e <= len(text) for b, e in spans)
        assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in zip(spans, spans[1:]))
        tokens = [vocabulary[j] for j in ids[i]]
        words = [(m.span(), [k for k, (b, _) in enumerate(spans) if m.start() <= b < m.end()])
                 for m in re.finditer(r"\S+", text)]
        assert sum(len(inside) for _, inside in words) == len(spans)
        for (word_begin, word_end), inside in words:
            word = text[word_begin:word_end]
            if unicodedata.normalize("NFKC", word) == word and 3 not in (ids[i][k] for k in inside):
                exact_words += 1
                kept = [k for k in inside if tokens[k] != "\u2581"]
                assert [text[slice(*spans[k])] for k in kept] == [tokens[k].lstrip("\u2581") for k in kept], word
        if ids[i] != auto["ids"][i]:
            continue
        compared += 1
        # transformers' span of a word after a run of spaces holds the run's last space ("a  b": (2, 4)): not ours
        expected = [[b + len(text[b:e]) - len(text[b:e].lstrip()), e] for b, e in auto["offsets"][i]]
        for k in range(len(expected) - 2, -1, -1):
            if auto["tokens"][i][k] == "\u2581":
                expected[k] = list(expected[k + 1])
        for (word_begin, word_end), inside in words:
            words_total += 1
            if any(list(spans[k]) != expected[k] for k in inside):
                whole_words += 1
                assert all(spans[k] == (word_begin, word_end) for k in inside), (text, word_begin)
                assert all(word_begin <= expected[k][0] <= expected[k][1] <= word_end for k in inside), (
                    text[word_begin:word_end], [expected[k] for k in inside], [auto["tokens"][i][k] for k in inside], word_begin)
    print(f"\nDeBERTa offsets: {exact_words} words exact piece by piece; ids equal to transformers' on "
          f"{compared}/{len(texts)} real sentences, spans equal but whole-word spans for {whole_words} of "
          f"{words_total} words")
    assert compared >= 0.99 * len(texts) and whole_words <= 0.005 * words_total


# ---------------------------------------------------------------------------------------------
# Saving: get_config, kzoo_tokenizer.json, a SavedModel served without kzoo.

def test_config_and_record_round_trip(assets, tokenizers, tmp_path):
    texts = tf.constant(assets.strings[:50] + assets.strings[assets.num_sentences:])
    for name, tokenizer in tokenizers.items():
        expected = tokenizer(texts).to_list()
        config = tokenizer.get_config()
        assert {config["lower_case"], config["split_by_punct"]} == {name == "lower_punct"}
        revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(tokenizer))
        assert type(revived) is DebertaV2Tokenizer and revived.get_config() == config
        assert revived(texts).to_list() == expected
        folder = tmp_path / name
        write_tokenizer(tokenizer, str(folder))
        assert sorted(os.listdir(folder)) == [RECORD, "spm.model"]
        record = json.loads((folder / RECORD).read_text(encoding="utf-8"))
        assert record["class"] == "DebertaV2Tokenizer" and record["model_file"] == "spm.model"
        assert (folder / "spm.model").read_bytes() == (assets.folders[name] / "spm.model").read_bytes()
        read = read_tokenizer(str(folder))
        assert type(read) is DebertaV2Tokenizer and read.get_config()["split_by_punct"] == tokenizer.split_by_punct
        assert read.lower_case == tokenizer.lower_case and read(texts).to_list() == expected


FRESH_PROCESS = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    import tensorflow_text  # registers the tf-text ops
    texts = tf.constant(json.loads(sys.argv[2]))
    result = {}
    for name in sys.argv[3:]:
        module = tf.saved_model.load(sys.argv[1] + "/" + name)
        features = module.signatures["serving_default"](text_a=texts, text_b=texts[::-1])
        result[name] = {k: v.numpy().tolist() for k, v in features.items()}
    assert not any(m.startswith(("kzoo", "transformers")) for m in sys.modules)
    print(json.dumps(result))
""")


def test_saved_model_serves_in_a_fresh_process(assets, tokenizers, tmp_path):
    """Tokenizer + packer traced into a SavedModel signature serve in a process that imports only tensorflow
    and tensorflow_text, with the slow reference's ids packed as BERT packs them."""
    length = 48

    class Preprocess(tf.Module):
        def __init__(self, tokenizer):
            super().__init__()
            self.tokenizer, self.packer = tokenizer, BertPacker.from_tokenizer(tokenizer, length)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)] * 2)
        def pack(self, text_a, text_b):
            ids = self.tokenizer(tf.concat([text_a, text_b], 0))
            return self.packer((ids[: tf.shape(text_a)[0]], ids[tf.shape(text_a)[0]:]))

    picks = [0, 1000, 2000] + [assets.strings.index(t) for t in (
        "pay 1,000,000 dollars, 2,500 euros, 3,14", "ΟΔΟΣ ΟΔΟΣ.Α σ Σ", "emoji 😀 ❤️ 🤗 👍🏽!", "nul\x00byte", "")]
    texts = [assets.strings[i] for i in picks]
    for name, tokenizer in tokenizers.items():
        module = Preprocess(tokenizer)
        tf.saved_model.save(module, str(tmp_path / name), signatures={"serving_default": module.pack})
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    run = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(tmp_path), json.dumps(texts), *FOLDERS],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    served = json.loads(run.stdout.strip().splitlines()[-1])
    for name in FOLDERS:
        reference = [assets.ids(name, "slow")[0][i] for i in picks]
        expected = [layout(a, b, length, ref_truncate) for a, b in zip(reference, reference[::-1])]
        assert served[name]["input_word_ids"] == expected, name
        assert served[name]["input_mask"] == [[int(i != 0) for i in row] for row in expected]
