"""The new families' tokenizers and packers end to end: folder -> tokenizer -> packer against
transformers, tf.data, and a SavedModel served in a process that imports only tensorflow and
tensorflow_text.

This module also holds what tests/text/test_sentencepiece.py and tests/text/test_bpe.py share
(`family_assets`): a small ALBERT-style and an XLM-R-style SentencePiece model and a RoBERTa-style
byte-level BPE, trained once per session from ../shared/data, written as Hugging Face folders,
and every reference id computed once, by transformers (`AutoTokenizer`) and by the original
Python rules (google-research/albert + sentencepiece, fairseq's id mapping, GPT-2's
encoder.py), in a subprocess that never imports TensorFlow. Under pytest-xdist the workers
share one build (a file lock in the session's temporary root).
"""

import fcntl
import io
import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import tensorflow as tf

from kzoo.text import (AlbertTokenizer, BertPacker, BertTokenizer, RobertaPacker, RobertaTokenizer,
                       XLMRobertaTokenizer, infer_family, packer_from_tokenizer, tokenizer_from_folder)

from tests.conftest import SHARED

DATA = Path(SHARED) / "data"

# ---------------------------------------------------------------------------------------------
# Test strings.

HARD_STRINGS = [
    "", " ", " \t\r\n ", "Café Ünïcödé naïve résumé", "İstanbul I ıi İ", "ΟΔΟΣ ΟΔΟΣ.Α σ Σ", "Straße ß ẞ",
    "ﬁnance ﬁ ﬀ", "ＡＢＣ ＡＢＣｄ １２３", "我爱北京天安门", "東京タワーはとても高いです。カタカナとひらがな",
    "안녕하세요 세계", "مرحبا بالعالم مَرْحَبًا", "नमस्ते दुनिया हिन्दी ६ ४२", "สวัสดีชาวโลก", "שלום עולם",
    "Привет, мир! Ёлка", "emoji 😀 ❤️ 🤗 👍🏽!", "👨‍👩‍👧‍👦 family 🏳️‍🌈 flag",
    "zero\u200bwidth joiner\u200dhere non\u200cjoiner", "\ufeffbom at start", "nul\x00byte", "bad\ufffdchar",
    "bell\x07char", "x\x85y\x1fz\x0bv\x0cw", "line\u2028separator para\u2029separator", "soft\u00adhyphen",
    "\U000e0041tag", "rtl\u200fmark\u200e", "tab\tnew\nline\rreturn", "a  b   c", "  leading and trailing  ",
    "a\t\t\tb", "a \t b", "no\u00a0break", "\u3000ideographic\u3000space", "thin\u2009space en\u2002space",
    "``quoted'' text", "He said ''hi'' and ``bye``", "'''triple''' ``", "it's they're we've I'm you'll he'd",
    "'S 'T 'RE shouldn't", "a  's  'sup", "1,000,000", "pay 1,000,000 dollars, 2,500 euros, 3,14", "a1,b 12, 9,,",
    "1,2,3,4,5", "²,³, x² y³ ½ ①,②", "１,０００ ٣,٤", "don't stop-believing (really) #1 @home $5 100% a&b",
    "wow!!!...??? --- ...", "3.14159 2024-01-01 +1-800-555-0199", "Ǳ ǲ ǳ ǅemal ǈuka",
    "\u0301\u0301 combining only e\u0301", "private\ue000use \uffff \ufdd0\ufdd2", "𝐀𝐁𝐂 𝒳 ℃ ㎏ Ⅻ",
    'a (b) - c. d–e £5 €3 "q"', "\u00a8 \u00b4 spacing¨marks", "UPPER lower MiXeD",
    "C:\\path\\to\\file.txt http://example.com/a?b=c&d=e", "    ", "\n\n\nparagraph\n\n", "x\x1c\x1d\x1e\x1fy",
    "e-mail: someone@example.org", "ä" * 50, "snow\u2603man \u2764\ufe0f",
]
LONG_STRINGS = [
    ("The quick brown fox jumps over the lazy dog, 1,234 times! Café ``naïve'' 東京. " * 200)[:10000],  # 10k
    "ab" * 5000,  # one 10,000-character word
]
# Whitespace runs of every kind (Python's str.isspace, Unicode White_Space, and two that are
# neither) before, after and between words, contractions and digit-commas.
WHITESPACE = [" ", "\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\xa0", "\u1680", "\u2000", "\u2009",
              "\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\u200b", "\u180e"]
TEMPLATES = ["a{w}b", "a{w}{w}b", "a {w}b", "a{w} b", "a{w}", "{w}a", "a{w}{w}", "a{w} 's", "{w}{w}'s x",
             "1{w}{w}2,{w}3"]
WHITESPACE_STRINGS = [t.replace("{w}", w) for w in WHITESPACE for t in TEMPLATES]
TRAINING_EXTRAS = HARD_STRINGS * 20  # the XLM-R and BPE models get pieces of other scripts
HARD_STRINGS = HARD_STRINGS + LONG_STRINGS + WHITESPACE_STRINGS

# One string per sampled code point: next to letters, doubled, before a digit-comma and a contraction.
CODE_POINTS = sorted({*range(1, 0x3000), *range(0x3000, 0x10000, 37), *range(0x10000, 0x110000, 997),
                      *range(0x1CC00, 0x1CF00), *(c for c in range(0x3000) if chr(c).isspace())}
                     - set(range(0xD800, 0xE000)))


def code_point_text(cp):
    c = chr(cp)
    return f"X{c}Y {c}{c}1,{c} 's{c}"


def require(path):
    if not path.exists():
        pytest.skip(f"shared data {path} is absent (expected <repo root>/../shared, or KZOO_TEST_SHARED)")
    return path


def _tsv_column(path, column, rows, skip=1, encoding="utf-8"):
    lines = require(path).read_text(encoding=encoding).split("\n")[skip:]
    return [line.split("\t")[column] for line in lines[rows] if line]


def _squad_articles():
    return json.loads(require(DATA / "squad_v1.1" / "dev-v1.1-even-articles.json").read_text(encoding="utf-8"))["data"]


def real_sentences():
    """2,100 real strings none of the tokenizers was trained on: 400 SQuAD paragraphs and 600 questions
    (articles 12-23), 500 TREC questions, 300 SST-2 phrases, 300 MRPC sentences."""
    articles = _squad_articles()[12:]
    contexts = [p["context"] for a in articles for p in a["paragraphs"]][:400]
    questions = [q["question"] for a in articles for p in a["paragraphs"] for q in p["qas"]][:600]
    trec = [line.split(" ", 1)[1] for line in
            require(DATA / "trec" / "train_5500.label").read_text(encoding="utf-8").splitlines()[:500]]
    sst2 = _tsv_column(DATA / "sst2" / "train.tsv", 0, slice(60000, 60300))
    mrpc = [s for row in require(DATA / "mrpc" / "train.tsv").read_text(encoding="utf-8-sig").split("\n")[1:151]
            for s in row.split("\t")[3:5]]
    texts = contexts + questions + trec + sst2 + mrpc
    assert len(texts) == 2100, len(texts)
    return texts


def _training_lines():
    """SQuAD paragraphs of articles 0-11, 4,000 SST-2 phrases and 1,000 lines with numbers such as
    "1,234" (so that the ALBERT model has pieces like "▁12," for `encode_pieces`' rule)."""
    contexts = [p["context"] for a in _squad_articles()[:12] for p in a["paragraphs"]]
    sst2 = _tsv_column(DATA / "sst2" / "train.tsv", 0, slice(0, 4000))
    rng = random.Random(0)
    numbers = [f"In {rng.randint(1900, 2020)}, about {rng.randint(1, 9)},{rng.randint(100, 999)} people and "
               f"{rng.randint(1, 99)}, or so." for _ in range(1000)]
    return contexts + sst2 + numbers


# Pairs for the packing tests: (a, b or None, max_length). They cover no truncation, one segment,
# the longer segment cut, and both cut to an odd budget (the same sentence twice: with L=10 BERT's
# budget 7 is odd, with L=11 RoBERTa's).
SAME = "The same sentence, twice over, for a tie."
PAIRS = [
    ("The quick brown fox.", "It jumps over the lazy dog!", 32),
    ("The quick brown fox jumps over the lazy dog again and again.", "Short one.", 12),
    ("Short one.", "The quick brown fox jumps over the lazy dog again and again.", 12),
    ("Who founded ABC in 1943?", None, 8),
    ("Café ``naïve'' costs 1,000,000 dollars, they said.", "東京 is big", 16),
    ("", "An empty first segment.", 9),
    (SAME, SAME, 10),
    (SAME, SAME, 11),
]

# ---------------------------------------------------------------------------------------------
# The reference, in a subprocess without TensorFlow: transformers' AutoTokenizer, and the original
# rules in Python (the sentencepiece library for both SentencePiece families).

REFERENCE = textwrap.dedent(r'''
    import json, sys, unicodedata
    import regex, sentencepiece as spm, transformers

    job = json.load(open(sys.argv[1], encoding="utf-8"))
    folders, strings, code_points = job["folders"], job["strings"], job["code_points"]

    def albert_slow(model, texts):
        """google-research/albert preprocess_text + encode_pieces, with transformers' quote rule."""
        sp = spm.SentencePieceProcessor(model_file=model)
        def preprocess(s):
            s = " ".join(s.strip().split()).replace("``", '"').replace("''", '"')
            s = unicodedata.normalize("NFKD", s)
            return "".join(c for c in s if not unicodedata.combining(c)).lower()
        out = []
        for s in texts:
            pieces = []
            for piece in sp.encode(preprocess(s), out_type=str):
                if len(piece) > 1 and piece[-1] == "," and piece[-2].isdigit():
                    cur = sp.encode(piece[:-1].replace("\u2581", ""), out_type=str)
                    if piece[0] != "\u2581" and cur[0][0] == "\u2581":
                        cur = cur[1:] if len(cur[0]) == 1 else [cur[0][1:]] + cur[1:]
                    pieces += cur + [piece[-1]]
                else:
                    pieces.append(piece)
            out.append([sp.piece_to_id(p) for p in pieces])
        return out

    def xlmr_slow(model, texts):
        """fairseq's dictionary over the SentencePiece ids (transformers 4's XLMRobertaTokenizer)."""
        sp = spm.SentencePieceProcessor(model_file=model)
        return [[i + 1 if i else 3 for i in ids] for ids in sp.encode(texts)]

    def gpt2(folder, texts):
        """openai/gpt-2 encoder.py with the `regex` module."""
        encoder = json.load(open(folder + "/vocab.json", encoding="utf-8"))
        lines = open(folder + "/merges.txt", encoding="utf-8").read().split("\n")[1:]
        ranks = {tuple(line.split()): i for i, line in enumerate(l for l in lines if l)}
        bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
        cs, n = bs[:], 0
        for b in range(256):
            if b not in bs:
                bs.append(b); cs.append(256 + n); n += 1
        byte_encoder = dict(zip(bs, map(chr, cs)))
        pattern = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
        cache = {}
        def bpe(token):
            if token in cache:
                return cache[token]
            word = tuple(token)
            while len(word) > 1:
                first, second = min(zip(word, word[1:]), key=lambda p: ranks.get(p, float("inf")))
                if (first, second) not in ranks:
                    break
                new, i = [], 0
                while i < len(word):
                    try:
                        j = word.index(first, i)
                    except ValueError:
                        new.extend(word[i:]); break
                    new.extend(word[i:j]); i = j
                    if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                        new.append(first + second); i += 2
                    else:
                        new.append(word[i]); i += 1
                word = tuple(new)
            cache[token] = word
            return word
        out = []
        for s in texts:
            out.append([encoder[p] for t in pattern.findall(s)
                        for p in bpe("".join(byte_encoder[b] for b in t.encode("utf-8")))])
        return out

    def auto(folder, texts, pairs=True, **kwargs):
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, **kwargs)
        result = {"ids": tokenizer(texts, add_special_tokens=False)["input_ids"], "class": type(tokenizer).__name__,
                  "vocab_size": len(tokenizer),
                  "special": {k: getattr(tokenizer, k + "_token_id") for k in ("cls", "sep", "pad", "mask", "unk")}}
        if pairs:
            result["pairs"] = []
            for a, b, length in job["pairs"]:
                args = (a,) if b is None else (a, b)
                encoded = tokenizer(*args, truncation=True, max_length=length, padding="max_length",
                                    return_token_type_ids=True)
                result["pairs"].append({k: encoded[k] for k in ("input_ids", "attention_mask", "token_type_ids")})
        return result

    albert, xlmr, roberta = folders["albert"], folders["xlm_roberta"], folders["roberta"]
    result = {
        "albert": {"auto": auto(albert, strings),
                   "slow": albert_slow(albert + "/spiece.model", strings + code_points)},
        "xlm_roberta": {"auto": auto(xlmr, strings),
                        "slow": xlmr_slow(xlmr + "/sentencepiece.bpe.model", strings + code_points)},
        "roberta": {"auto": auto(roberta, strings + code_points), "gpt2": gpt2(roberta, strings),
                    "auto_prefix_space": auto(roberta, strings, pairs=False, add_prefix_space=True)["ids"]},
    }
    assert "tensorflow" not in sys.modules  # the reference is independent of TF and kzoo
    json.dump(result, open(sys.argv[2], "w", encoding="utf-8"))
''')


class FamilyAssets:
    """Folders, test strings and reference ids (see the module docstring)."""

    def __init__(self, root):
        self.root = root
        job = json.loads((root / "job.json").read_text(encoding="utf-8"))
        self.folders = {k: Path(v) for k, v in job["folders"].items()}
        self.strings = job["strings"]  # real sentences, then the hard strings
        self.num_sentences = job["num_sentences"]
        self.code_points = CODE_POINTS
        self.code_point_texts = job["code_points"]
        self.reference = json.loads((root / "reference.json").read_text(encoding="utf-8"))

    def ids(self, family, name):
        """Reference ids of `strings` (and of `code_point_texts`, where computed: a second list)."""
        ids = self.reference[family][name]
        ids = ids["ids"] if isinstance(ids, dict) else ids
        return ids[: len(self.strings)], ids[len(self.strings):]


def _build(root):
    """Trains the three tokenizer models, writes the folders and runs the reference (~15 s)."""
    import sentencepiece as spm
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    lines = _training_lines()
    folders = {name: root / name for name in ("albert", "xlm_roberta", "roberta")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    common = dict(vocab_size=2000, model_type="unigram", num_threads=2, minloglevel=2)
    # ALBERT's 30k-clean.model: <pad>=0 <unk>=1, control [CLS] [SEP] [MASK], user-defined pieces (README).
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=model, pad_id=0, unk_id=1, bos_id=-1,
                                   eos_id=-1, control_symbols=["[CLS]", "[SEP]", "[MASK]"],
                                   user_defined_symbols=["(", ")", '"', "-", ".", "–", "£", "€"],
                                   character_coverage=0.99995, **common)
    (folders["albert"] / "spiece.model").write_bytes(model.getvalue())
    # XLM-R's sentencepiece.bpe.model: <unk>=0 <s>=1 </s>=2; the hard strings add other scripts.
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines + TRAINING_EXTRAS), model_writer=model,
                                   unk_id=0, bos_id=1, eos_id=2, pad_id=-1, character_coverage=0.9995, **common)
    (folders["xlm_roberta"] / "sentencepiece.bpe.model").write_bytes(model.getvalue())
    # RoBERTa: byte-level BPE, <s> <pad> </s> <unk> first and <mask> last, as in roberta-base.
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(lines + TRAINING_EXTRAS, trainers.BpeTrainer(
        vocab_size=3000, special_tokens=["<s>", "<pad>", "</s>", "<unk>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    bpe.model.save(str(folders["roberta"]))
    vocab = json.loads((folders["roberta"] / "vocab.json").read_text(encoding="utf-8"))
    vocab["<mask>"] = len(vocab)
    (folders["roberta"] / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    for name, model_type in (("albert", "albert"), ("xlm_roberta", "xlm-roberta"), ("roberta", "roberta")):
        (folders[name] / "config.json").write_text(json.dumps({"model_type": model_type}), encoding="utf-8")

    sentences = real_sentences()
    job = {"strings": sentences + HARD_STRINGS, "num_sentences": len(sentences),
           "code_points": [code_point_text(cp) for cp in CODE_POINTS], "pairs": PAIRS,
           "folders": {k: str(v) for k, v in folders.items()}}
    (root / "job.json").write_text(json.dumps(job), encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-c", REFERENCE, str(root / "job.json"), str(root / "reference.json")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]


_ASSETS = {}


def family_assets(tmp_path_factory):
    """The session's `FamilyAssets`, built once (per run, across xdist workers)."""
    for module in ("sentencepiece", "tokenizers", "transformers"):
        pytest.importorskip(module, reason=f"{module} (a keras-hub / test-extra dependency) builds the references")
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "kzoo_family_assets"
    if root not in _ASSETS:
        real_sentences()  # skips, naming the file, when ../shared is absent
        root.mkdir(parents=True, exist_ok=True)
        with open(root.parent / "kzoo_family_assets.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (root / "reference.json").exists():
                _build(root)
        _ASSETS[root] = FamilyAssets(root)
    return _ASSETS[root]


@pytest.fixture(scope="session")
def assets(tmp_path_factory):
    return family_assets(tmp_path_factory)


@pytest.fixture(scope="session")
def tokenizers(assets):
    return {"albert": tokenizer_from_folder(assets.folders["albert"]),
            "xlm_roberta": tokenizer_from_folder(assets.folders["xlm_roberta"]),
            "roberta": tokenizer_from_folder(assets.folders["roberta"])}


# ---------------------------------------------------------------------------------------------
# Folders -> tokenizers.

def test_folders_give_the_family_tokenizer(assets, tokenizers):
    assert {k: type(v) for k, v in tokenizers.items()} == {
        "albert": AlbertTokenizer, "xlm_roberta": XLMRobertaTokenizer, "roberta": RobertaTokenizer}
    assert {k: infer_family(v) for k, v in assets.folders.items()} == {
        "albert": "albert", "xlm_roberta": "xlm_roberta", "roberta": "roberta"}
    # transformers reads the same folders as the same classes, with the same ids and sizes.
    for family, tokenizer in tokenizers.items():
        auto = assets.reference[family]["auto"]
        assert auto["class"] == {"albert": "AlbertTokenizer", "xlm_roberta": "XLMRobertaTokenizer",
                                 "roberta": "RobertaTokenizer"}[family]
        assert tokenizer.vocab_size == auto["vocab_size"]
        assert {k: getattr(tokenizer, k + "_token_id") for k in auto["special"]} == auto["special"]
    assert tokenizers["albert"].lower_case is True
    assert (tokenizers["xlm_roberta"].pad_token_id, tokenizers["roberta"].pad_token_id) == (1, 1)


def test_folder_errors_name_the_folder_and_the_missing_files(tmp_path, assets):
    only_json = tmp_path / "only_tokenizer_json"
    only_json.mkdir()
    (only_json / "tokenizer.json").write_text("{}", encoding="utf-8")
    (only_json / "config.json").write_text('{"model_type": "roberta"}', encoding="utf-8")
    with pytest.raises(ValueError, match=r"only_tokenizer_json: the roberta tokenizer needs vocab.json and "
                                         r"merges.txt .*tokenizer.json alone is not enough"):
        tokenizer_from_folder(only_json)
    with pytest.raises(ValueError, match=r"the albert tokenizer needs spiece.model or 30k-clean.model"):
        tokenizer_from_folder(only_json, family="albert")
    with pytest.raises(ValueError, match=r"the xlm_roberta tokenizer needs sentencepiece.bpe.model"):
        tokenizer_from_folder(only_json, family="xlm-roberta")
    with pytest.raises(ValueError, match=r"the distilbert tokenizer needs vocab.txt"):
        tokenizer_from_folder(only_json, family="distilbert")
    half = tmp_path / "half_bpe"
    half.mkdir()
    (half / "vocab.json").write_text('{"a": 0}', encoding="utf-8")
    with pytest.raises(ValueError, match=r"half_bpe: the roberta tokenizer needs merges.txt \(byte-level BPE\)"):
        tokenizer_from_folder(half, family="roberta")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"empty: cannot tell the family.*it has: nothing"):
        tokenizer_from_folder(empty)
    with pytest.raises(ValueError, match=r"family 'gpt2' is not one of bert, albert"):
        tokenizer_from_folder(empty, family="gpt2")
    with pytest.raises(ValueError, match=r"does not lower-case"):
        tokenizer_from_folder(assets.folders["roberta"], lower_case=True)
    with pytest.raises(ValueError, match=r"model_type 'gpt2' is not a kzoo family"):
        (empty / "config.json").write_text('{"model_type": "gpt2"}', encoding="utf-8")
        tokenizer_from_folder(empty)


def test_wordpiece_families_and_official_albert_folder(tmp_path, assets):
    for family in ("electra", "distilbert", "bert"):
        folder = tmp_path / f"{family}-base-cased"
        folder.mkdir()
        (folder / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\nHello\n", encoding="utf-8")
        (folder / "config.json").write_text(json.dumps({"model_type": family}), encoding="utf-8")
        tokenizer = tokenizer_from_folder(folder)
        assert isinstance(tokenizer, BertTokenizer) and tokenizer.lower_case is False  # "cased" in the name
        assert tokenizer(["Hello hello"]).to_list() == [[6, 5]]
        assert type(packer_from_tokenizer(tokenizer, 8)) is BertPacker
        (folder / "tokenizer_config.json").write_text('{"do_lower_case": true}', encoding="utf-8")
        assert tokenizer_from_folder(folder).lower_case is True
    official = tmp_path / "albert_base"  # the official archive's names
    official.mkdir()
    (official / "30k-clean.model").write_bytes((assets.folders["albert"] / "spiece.model").read_bytes())
    (official / "albert_config.json").write_text("{}", encoding="utf-8")
    tokenizer = tokenizer_from_folder(official)
    assert isinstance(tokenizer, AlbertTokenizer) and tokenizer.lower_case
    assert tokenizer_from_folder(official, lower_case=False).lower_case is False


# ---------------------------------------------------------------------------------------------
# Packing against transformers' tokenizer(a, b, truncation=True, max_length=L, padding="max_length").

def ref_truncate(a, b, budget):
    """google-research/bert's `_truncate_seq_pair` (transformers' Python `truncate_sequences` too)."""
    a, b = list(a), list(b)
    while len(a) + len(b) > budget:
        (a if len(a) > len(b) else b).pop()
    return a, b


def tokenizers_truncate(a, b, budget):
    """`tokenizers`' LongestFirst (utils/truncation.rs), which transformers 5 runs: when both
    segments are cut, the odd token of an odd budget goes to the longer one, the second on a tie."""
    n1, n2 = len(a), len(b)
    if n1 + n2 <= budget:
        return list(a), list(b)
    swap = n1 > n2
    if swap:
        n1, n2 = n2, n1
    n2 = n1 if n1 > budget else max(n1, budget - n1)
    if n1 + n2 > budget:
        n1 = budget // 2
        n2 = n1 + budget % 2
    if swap:
        n1, n2 = n2, n1
    return list(a[:n1]), list(b[:n2])


def layout(family, a, b, length, truncate):
    """Packed ids with the family's special tokens, truncated by `truncate` and padded."""
    if family == "albert":  # ALBERT's model: [CLS]=2 [SEP]=3 <pad>=0
        start, middle, end, pad, specials = [2], [3], [3], 0, 3
    else:  # <s>=0 </s>=2 <pad>=1
        start, middle, end, pad, specials = [0], [2, 2], [2], 1, 4
    if b is None:
        ids = start + list(a[: length - 2]) + end
    else:
        a, b = truncate(a, b, length - specials)
        ids = start + a + middle + b + end
    return ids + [pad] * (length - len(ids))


@pytest.mark.parametrize("family", ["albert", "xlm_roberta", "roberta"])
def test_packing_matches_transformers(family, assets, tokenizers):
    """kzoo packs as BERT truncates; transformers 5 (`tokenizers`) differs only when both segments
    are cut to an odd budget, and then exactly as `tokenizers_truncate` says."""
    tokenizer = tokenizers[family]
    expected_class = BertPacker if family == "albert" else RobertaPacker
    differing = []
    for index, (a, b, length) in enumerate(PAIRS):
        packer = BertPacker.from_tokenizer(tokenizer, length)
        assert type(packer) is expected_class
        a_ids = tokenizer(tf.constant([a]))
        b_ids = None if b is None else tokenizer(tf.constant([b]))
        got = packer(a_ids if b is None else (a_ids, b_ids))
        got = {k: v.numpy()[0].tolist() for k, v in got.items()}
        ref = assets.reference[family]["auto"]["pairs"][index]
        a_ids = a_ids.to_list()[0]
        b_ids = None if b is None else b_ids.to_list()[0]
        assert got["input_word_ids"] == layout(family, a_ids, b_ids, length, ref_truncate), (family, index)
        assert ref["input_ids"] == layout(family, a_ids, b_ids, length, tokenizers_truncate), (family, index)
        n = sum(got["input_mask"])
        assert got["input_mask"] == [1] * n + [0] * (length - n)
        if got["input_word_ids"] != ref["input_ids"]:
            differing.append(index)
            continue
        assert got["input_mask"] == ref["attention_mask"]
        assert got["input_type_ids"] == ref["token_type_ids"]
        if family != "albert":
            assert got["input_type_ids"] == [0] * length
    assert differing == [6 if family == "albert" else 7]


def test_roberta_layout_dynamic_length_and_errors():
    packer = RobertaPacker(seq_length=10, cls_id=0, sep_id=2, dynamic_length=True)
    a, b = tf.ragged.constant([[5, 6], [5, 6, 7, 8, 9, 10]]), tf.ragged.constant([[7], [11, 12, 13, 14]])
    out = packer((a, b))
    assert out["input_word_ids"].numpy().tolist() == [[0, 5, 6, 2, 2, 7, 2, 1, 1, 1],
                                                      [0, 5, 6, 7, 2, 2, 11, 12, 13, 2]]
    assert out["input_mask"].numpy().tolist() == [[1] * 7 + [0] * 3, [1] * 10]
    assert out["input_type_ids"].numpy().tolist() == [[0] * 10] * 2
    single = packer(tf.ragged.constant([[5, 6], [5]]))
    assert single["input_word_ids"].numpy().tolist() == [[0, 5, 6, 2], [0, 5, 2, 1]]
    with pytest.raises(ValueError, match="must be >= 4"):
        RobertaPacker(seq_length=3, cls_id=0, sep_id=2)((a, b))
    fixed = RobertaPacker(seq_length=16, cls_id=0, sep_id=2)
    spec = tf.RaggedTensorSpec([None, None], tf.int32)
    outputs = tf.function(lambda x, y: fixed((x, y))).get_concrete_function(spec, spec).structured_outputs
    assert {k: v.shape.as_list() for k, v in outputs.items()} == {k: [None, 16] for k in outputs}
    import keras

    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(packer))
    assert type(revived) is RobertaPacker and revived.get_config() == packer.get_config()
    assert revived((a, b))["input_word_ids"].numpy().tolist() == out["input_word_ids"].numpy().tolist()


# ---------------------------------------------------------------------------------------------
# tf.data and a SavedModel served without kzoo.

DATA_TEXTS = ["Hello, world! 1,000,000 dollars.", "Café ``naïve'' 東京", "", "a  b\t\tc \u00a0d nul\x00byte",
              "it's 'sup", "ΟΔΟΣ"]


@pytest.mark.parametrize("family", ["albert", "xlm_roberta", "roberta"])
def test_tf_data(family, tokenizers):
    """Tokenizing and packing pairs in a batched `tf.data` map gives the eager results."""
    tokenizer = tokenizers[family]
    packer = BertPacker.from_tokenizer(tokenizer, 16)

    def pack(a, b):  # one tokenizer call for both segments: one graph to build
        ids = tokenizer(tf.concat([a, b], 0))
        return packer((ids[: tf.shape(a)[0]], ids[tf.shape(a)[0]:]))

    pairs = tf.data.Dataset.from_tensor_slices((DATA_TEXTS, DATA_TEXTS[::-1])).batch(4).map(pack)
    direct = packer((tokenizer(tf.constant(DATA_TEXTS)), tokenizer(tf.constant(DATA_TEXTS[::-1]))))
    for name in direct:
        assert [row for batch in pairs for row in batch[name].numpy().tolist()] == direct[name].numpy().tolist()
    assert pairs.element_spec["input_word_ids"].shape.as_list() == [None, 16]


FRESH_PROCESS = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    import tensorflow_text  # registers the tf-text ops
    texts = tf.constant(json.loads(sys.argv[2]))
    result = {}
    for family in ("albert", "xlm_roberta", "roberta"):
        module = tf.saved_model.load(sys.argv[1] + "/" + family)
        features = module.signatures["serving_default"](text_a=texts, text_b=texts[::-1])
        result[family] = {k: v.numpy().tolist() for k, v in features.items()}
    print(json.dumps(result))
""")


def test_saved_models_serve_in_a_fresh_process(assets, tokenizers, tmp_path):
    """Each family's tokenizer and packer, traced into a SavedModel signature, serve in a process that
    imports only tensorflow and tensorflow_text, and give the reference's ids, packed."""
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
        "pay 1,000,000 dollars, 2,500 euros, 3,14", "ΟΔΟΣ ΟΔΟΣ.Α σ Σ", "नमस्ते दुनिया हिन्दी ६ ४२", "a  's  'sup",
        "nul\x00byte", "")]
    texts = [assets.strings[i] for i in picks]
    for family, tokenizer in tokenizers.items():
        module = Preprocess(tokenizer)
        tf.saved_model.save(module, str(tmp_path / family), signatures={"serving_default": module.pack})
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    run = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(tmp_path), json.dumps(texts)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    served = json.loads(run.stdout.strip().splitlines()[-1])
    for family, name in {"albert": "slow", "xlm_roberta": "slow", "roberta": "auto"}.items():
        reference = [assets.ids(family, name)[0][i] for i in picks]
        expected = [layout(family, a, b, length, ref_truncate) for a, b in zip(reference, reference[::-1])]
        assert served[family]["input_word_ids"] == expected, family
        assert served[family]["input_mask"] == [[int(i != (0 if family == "albert" else 1)) for i in row]
                                                for row in expected]


# ---------------------------------------------------------------------------------------------
# Words: what word-level tasks (tagging, SQuAD) split and tokenize.

def test_words_tokenized_alone_equal_the_running_text(assets, tokenizers):
    """`tokenize_words(split_words(text))`, joined, is the tokenization of the text with its whitespace
    runs made single spaces (RoBERTa: with a space in front, as `is_split_into_words` adds one): on every
    real sentence, for every family."""
    texts = assets.strings[:assets.num_sentences]
    for family, tokenizer in tokenizers.items():
        words = tokenizer.split_words(tf.constant(texts))
        assert words.to_list()[:1] == [[w.encode() for w in texts[0].split()]], family
        joined = tokenizer.tokenize_words(words).merge_dims(1, 2).to_list()
        prefix = " " if family == "roberta" else ""
        whole = tokenizer(tf.constant([prefix + " ".join(t.split()) for t in texts])).to_list()
        assert sum(a != b for a, b in zip(joined, whole)) == 0, family
    words = tokenizers["roberta"].split_words(tf.constant(["a\u3000b\u2028c  d\x85e", ""]))
    assert words.to_list() == [[b"a", b"b", b"c", b"d", b"e"], []]
