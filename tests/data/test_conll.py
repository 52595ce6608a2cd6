import keras
import numpy as np
import pytest

from kzoo.data.conll import IGNORE_LABEL, read_conll, tag_vocabulary, tagging_dataset, word_predictions
from kzoo.text.tokenizer import BertTokenizer
from tests.conftest import minilm_vocab_file

# CoNLL-2003 layout: token, POS, chunk, NER (IOB2). Ten sentences in two documents.
CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O
to TO B-VP O
boycott VB I-VP O
British JJ B-NP B-MISC
lamb NN I-NP O
. . O O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER

BRUSSELS NNP B-NP B-LOC
1996-08-22 CD I-NP O

Schwarzenegger NNP B-NP B-PER
visited VBD B-VP O
Zürich NNP B-NP B-LOC
. . O O

The DT B-NP O
European NNP I-NP B-ORG
Commission NNP I-NP I-ORG
said VBD B-VP O
on IN B-PP O
Thursday NNP B-NP O
it PRP B-NP O
disagreed VBD B-VP O
with IN B-PP O
German JJ B-NP B-MISC
advice NN I-NP O
. . O O

-DOCSTART- -X- -X- O

Müller NNP B-NP B-PER
joined VBD B-VP O
Bayern NNP B-NP B-ORG
Munich NNP I-NP I-ORG
( ( O O
Bundesliga NNP B-NP B-MISC
) ) O O
. . O O

U.S. NNP B-NP B-LOC
officials NNS I-NP O
met VBD B-VP O
in IN B-PP O
Kapoorthala NNP B-NP B-LOC
, , O O
India NNP B-NP B-LOC
. . O O

Rome NNP B-NP B-LOC
wins VBZ B-VP O

Spain NNP B-NP B-LOC
, , O O
too RB B-ADVP O
! . O O

Thanks NNS B-NP O
, , O O
Anna NNP B-NP B-PER
\x07 SYM O O
"""
SCHWARZENEGGER = 3  # sentence index of "Schwarzenegger visited Zürich ."
CLS, SEP, PAD = 101, 102, 0


@pytest.fixture(scope="module")
def tokenizer():
    return BertTokenizer(minilm_vocab_file())


def _write(tmp_path, content, name="ner.txt"):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(path)


@pytest.fixture
def corpus(tmp_path):
    return read_conll(_write(tmp_path, CONLL))


def test_read_conll(corpus):
    sentences, tags = corpus
    assert len(sentences) == len(tags) == 10
    assert [len(s) for s in sentences] == [len(t) for t in tags] == [9, 2, 2, 4, 12, 8, 8, 2, 4, 4]
    assert sentences[SCHWARZENEGGER] == ["Schwarzenegger", "visited", "Zürich", "."]
    assert tags[SCHWARZENEGGER] == ["B-PER", "O", "B-LOC", "O"]
    assert sentences[-1][-1] == "\x07"
    assert tag_vocabulary(tags) == ["O", "B-LOC", "B-MISC", "B-ORG", "B-PER", "I-ORG", "I-PER"]


def test_read_conll_columns_and_trailing_sentence(tmp_path):
    path = _write(tmp_path, "\ufeffB-PER Anna x\nO sings y\n\n\nI-LOC Oslo z")
    assert read_conll(path, token_column=1, tag_column=0) == ([["Anna", "sings"], ["Oslo"]],
                                                              [["B-PER", "O"], ["I-LOC"]])


@pytest.mark.parametrize(
    "content, message",
    [
        (b"EU B-ORG\nbad\xff O\n", r"ner.txt:2: not valid UTF-8"),
        ("-DOCSTART- O\n\nEU B-ORG\nrejects\n", r"ner.txt:4: expected at least 2 whitespace-separated columns, found 1"),
        ("EU B-ORG\n\nPeter PER\n", r"ner.txt:3: tag 'PER' is not O, B-TYPE or I-TYPE"),
        ("EU S-ORG\n", r"ner.txt:1: tag 'S-ORG'"),
        ("EU b-org\n", r"ner.txt:1: tag 'b-org'"),
        ("EU B-\n", r"ner.txt:1: tag 'B-'"),
        ("", r"ner.txt: no sentences"),
        ("-DOCSTART- -X- -X- O\n\n\n", r"ner.txt: no sentences"),
    ],
)
def test_read_conll_errors_name_file_and_line(tmp_path, content, message):
    with pytest.raises(ValueError, match=message):
        read_conll(_write(tmp_path, content))


def test_read_conll_missing_file(tmp_path):
    with pytest.raises(ValueError, match="absent.txt: cannot read"):
        read_conll(tmp_path / "absent.txt")


def test_one_sentence_exact_arrays(corpus, tokenizer):
    sentences, tags = corpus
    names = tag_vocabulary(tags)
    data = tagging_dataset([sentences[SCHWARZENEGGER]], [tags[SCHWARZENEGGER]], tokenizer, 10, names, 1,
                           dynamic_length=False)
    features, labels = next(iter(data.dataset))
    # [CLS] schwarz ##ene ##gger visited zurich . [SEP] [PAD] [PAD]
    expected_ids = [CLS, 29058, 8625, 13327, 4716, 10204, 1012, SEP, PAD, PAD]
    assert features["input_word_ids"].numpy().tolist() == [expected_ids]
    assert [t.decode() for t in tokenizer.ids_to_tokens(expected_ids[1:7]).numpy()] == [
        "schwarz", "##ene", "##gger", "visited", "zurich", "."]
    assert features["input_mask"].numpy().tolist() == [[1] * 8 + [0] * 2]
    assert features["input_type_ids"].numpy().tolist() == [[0] * 10]
    b_per, o, b_loc, x = names.index("B-PER"), names.index("O"), names.index("B-LOC"), IGNORE_LABEL
    assert labels.numpy().tolist() == [[x, b_per, x, x, o, b_loc, o, x, x, x]]
    assert labels.dtype == "int32" and features["input_word_ids"].shape == (1, 10)
    assert [p.tolist() for p in data.first_piece_positions] == [[1, 4, 5, 6]]
    assert (data.truncated_sentences, data.dropped_words) == (0, 0)


def test_first_piece_labels_cover_every_word_and_nothing_else(corpus, tokenizer):
    sentences, tags = corpus
    names = tag_vocabulary(tags)
    data = tagging_dataset(sentences, tags, tokenizer, 32, names, 4)
    batches = list(data.dataset)
    assert [b[0]["input_word_ids"].shape[1] for b in batches] == [
        2 + max(np.sum(b[0]["input_mask"].numpy(), axis=1) - 2) for b in batches]  # dynamic length
    labels = np.concatenate([b[1].numpy().ravel() for b in batches])
    assert np.sum(labels != IGNORE_LABEL) == sum(len(s) for s in sentences)
    rows = [row for b in batches for row in b[1].numpy()]
    words = [row for b in batches for row in b[0]["input_word_ids"].numpy()]
    for row, ids, positions, sentence_tags in zip(rows, words, data.first_piece_positions, tags):
        assert np.flatnonzero(row != IGNORE_LABEL).tolist() == positions.tolist()
        assert [names[i] for i in row[positions]] == sentence_tags
        assert ids[0] == CLS and np.all(row[ids == SEP] == IGNORE_LABEL) and np.all(row[ids == PAD] == IGNORE_LABEL)
    # "U.S." is u . s . : one label on "u", none on the other three pieces.
    us = rows[6]
    assert words[6][1:5].tolist() == [1057, 1012, 1055, 1012]
    assert us[1:5].tolist() == [names.index("B-LOC")] + [IGNORE_LABEL] * 3
    # The control-character word tokenises to nothing and is kept as one [UNK].
    last = data.first_piece_positions[-1]
    assert words[-1][last[-1]] == tokenizer.unk_token_id and rows[-1][last[-1]] == names.index("O")


def test_truncation_drops_whole_trailing_words(corpus, tokenizer):
    sentences, tags = corpus
    names = tag_vocabulary(tags)
    # 6 - 2 = 4 pieces: "schwarz ##ene ##gger visited" fits, "zurich ." is dropped; the five
    # pieces of "1996-08-22" never fit, which leaves an empty segment.
    data = tagging_dataset([sentences[SCHWARZENEGGER], ["1996-08-22"], ["a", "b"]],
                           [tags[SCHWARZENEGGER], ["O"], ["O", "O"]], tokenizer, 6, names, 3,
                           dynamic_length=False)
    assert [p.tolist() for p in data.first_piece_positions] == [[1, 4, -1, -1], [-1], [1, 2]]
    assert (data.truncated_sentences, data.dropped_words) == (2, 3)
    features, labels = next(iter(data.dataset))
    assert features["input_word_ids"].numpy().tolist() == [
        [CLS, 29058, 8625, 13327, 4716, SEP], [CLS, SEP, PAD, PAD, PAD, PAD], [CLS, 1037, 1038, SEP, PAD, PAD]]
    x, o = IGNORE_LABEL, names.index("O")
    assert labels.numpy().tolist() == [[x, names.index("B-PER"), x, x, o, x], [x] * 6, [x, o, o, x, x, x]]


def test_truncation_keeps_words_that_fit(corpus, tokenizer):
    sentences, tags = corpus
    data = tagging_dataset(sentences, tags, tokenizer, 8, tag_vocabulary(tags), 16, dynamic_length=False)
    # Sentence 4 ("The European Commission said on Thursday ...") has 12 one-piece words: 6 fit.
    assert data.first_piece_positions[4].tolist() == [1, 2, 3, 4, 5, 6] + [-1] * 6
    assert data.truncated_sentences == 4
    assert data.dropped_words == sum(int(np.sum(p < 0)) for p in data.first_piece_positions)
    features, labels = next(iter(data.dataset))
    assert features["input_word_ids"].shape == labels.shape == (10, 8)


def test_word_predictions_round_trip(corpus, tokenizer):
    sentences, tags = corpus
    names = tag_vocabulary(tags)
    data = tagging_dataset(sentences, tags, tokenizer, 8, names, 4)
    gold = [np.array([names.index(t) for t in s]) for s in tags]
    batches = [b[1].numpy() for b in data.dataset]
    logits = [np.eye(len(names))[np.maximum(b, 0)] for b in batches]  # one-hot "logits" of the labels
    for predictions in (logits, batches):
        words = word_predictions(predictions, data.first_piece_positions)
        for ids, truth, positions in zip(words, gold, data.first_piece_positions):
            np.testing.assert_array_equal(ids, np.where(positions >= 0, truth, 0))
    with pytest.raises(ValueError, match="3 rows of predictions for 10 sentences"):
        word_predictions(batches[0][:3], data.first_piece_positions)


def test_features_only_and_masked_loss(corpus, tokenizer):
    sentences, tags = corpus
    names = tag_vocabulary(tags)
    features = next(iter(tagging_dataset(sentences, None, tokenizer, 16, names, 2).dataset))
    assert sorted(features) == ["input_mask", "input_type_ids", "input_word_ids"]
    _, labels = next(iter(tagging_dataset(sentences[:2], tags[:2], tokenizer, 16, names, 2).dataset))
    logits = np.random.default_rng(0).normal(size=labels.shape + (len(names),)).astype("float32")
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=IGNORE_LABEL)
    kept = labels.numpy() != IGNORE_LABEL
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -np.mean(np.take_along_axis(log_probs, np.maximum(labels.numpy(), 0)[..., None], -1)[..., 0][kept])
    np.testing.assert_allclose(float(loss(labels, logits)), expected, rtol=1e-5)


def test_tagging_dataset_errors(corpus, tokenizer):
    sentences, tags = corpus
    with pytest.raises(ValueError, match="sentence 1 has 2 words but 1 tags"):
        tagging_dataset(sentences[:2], [tags[0], ["O"]], tokenizer, 16, tag_vocabulary(tags), 2)
    with pytest.raises(ValueError, match="sentence 0: tag 'B-ORG' is not in tag_names"):
        tagging_dataset(sentences[:1], tags[:1], tokenizer, 16, ["O"], 2)
    with pytest.raises(ValueError, match="non-empty sentences"):
        tagging_dataset([["a"], []], None, tokenizer, 16, ["O"], 2)


def test_byte_level_bpe_words_get_a_space_and_the_roberta_layout():
    """A RoBERTa tokenizer: each word is tokenized with a space in front ("Ġhi", as transformers'
    add_prefix_space=True + is_split_into_words), and packed `<s> pieces </s>` with pad id 1."""
    from kzoo.text import RobertaTokenizer

    vocabulary = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "Ġ": 4, "h": 5, "i": 6, "hi": 7, "Ġhi": 8, "Ġh": 9,
                  "!": 10, "Ġ!": 11, "<mask>": 12}
    tokenizer = RobertaTokenizer(vocabulary=vocabulary, merges=["h i", "Ġ hi", "Ġ h", "Ġ !"])
    data = tagging_dataset([["hi", "ih!", "hi"], ["hi", "x"]], [["B-X", "O", "B-X"], ["O", "B-X"]], tokenizer, 8,
                           ["O", "B-X"], batch_size=2, dynamic_length=False)
    features, labels = next(iter(data.dataset))
    # "Ġhi" | "Ġ" "i" "h" "!" | "Ġhi"   and   "Ġhi" | "Ġ" "x" (not in the vocabulary: <unk>)
    assert features["input_word_ids"].numpy().tolist() == [[0, 8, 4, 6, 5, 10, 8, 2], [0, 8, 4, 3, 2, 1, 1, 1]]
    assert features["input_type_ids"].numpy().max() == 0
    assert [p.tolist() for p in data.first_piece_positions] == [[1, 2, 6], [1, 2]]
    assert labels.numpy().tolist() == [[IGNORE_LABEL, 1, 0, IGNORE_LABEL, IGNORE_LABEL, IGNORE_LABEL, 1, IGNORE_LABEL],
                                       [IGNORE_LABEL, 0, 1] + [IGNORE_LABEL] * 5]
