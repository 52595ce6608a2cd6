"""SQuAD reading, features and the tf.data helper: hand-computed cases and the shared dev file."""

import json

import numpy as np
import pytest

from kzoo.text.squad import (
    SquadExample,
    convert_examples_to_features,
    doc_spans,
    features_to_dataset,
    improve_answer_span,
    is_max_context,
    read_squad_examples,
    split_context,
)
from kzoo.text.tokenizer import BertTokenizer
from tests.conftest import minilm_vocab_file, shared_path

VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "what", "year", "who", "won", "?", "the", "war",
    "ended", "in", "1945", ",", "un", "##break", "##able", "peace", "came", ".", "break",
]
# doc tokens: The | war | ended | in | 1945, | unbreakable | peace | came.
# WordPieces: the war ended in 1945 , un ##break ##able peace came .   (12: 0..11)
CONTEXT = "The war ended in 1945, unbreakable peace came."
SQUAD_V2 = {
    "version": "v2.0",
    "data": [{"title": "War", "paragraphs": [{"context": CONTEXT, "qas": [
        {"id": "q-year", "question": "What year?", "is_impossible": False,
         "answers": [{"text": "1945", "answer_start": 17}]},
        {"id": "q-who", "question": "Who won?", "is_impossible": True, "answers": []},
    ]}]}],
}


def hand_tokenizer():
    return BertTokenizer(vocabulary=VOCAB)


def squad_dev_path():
    return shared_path("data", "squad_v1.1", "dev-v1.1-even-articles.json")


def minilm_tokenizer():
    return BertTokenizer(minilm_vocab_file())


def _v1(qas, context=CONTEXT):
    return {"data": [{"paragraphs": [{"context": context, "qas": qas}]}]}


def _qa(qid, text, start):
    return {"id": qid, "question": "What year?", "answers": [{"text": text, "answer_start": start}]}


@pytest.fixture(scope="module")
def dev_examples():
    return read_squad_examples(squad_dev_path(), is_training=True)


@pytest.fixture(scope="module")
def dev_tokenizer():
    return minilm_tokenizer()


# Reading.


def test_split_context_official_whitespace():
    tokens, offsets = split_context(" a\u202fbc\u00a0d \n")
    assert tokens == ["a", "bc\u00a0d"]  # U+202F splits, U+00A0 does not
    assert offsets == [-1, 0, 0, 1, 1, 1, 1, 1, 1]


def test_read_hand_example_positions_and_skip(caplog):
    data = _v1([_qa("ok", "1945", 17), _qa("inside", "break", 25), _qa("bad", "xyz", 0)])
    examples = read_squad_examples(data, is_training=True)
    assert [e.qas_id for e in examples] == ["ok", "inside"]
    assert examples.num_skipped == 1 and "could not find answer 'xyz'" in caplog.text
    assert examples[0].doc_tokens == ["The", "war", "ended", "in", "1945,", "unbreakable", "peace", "came."]
    assert (examples[0].start_position, examples[0].end_position) == (4, 4)
    assert (examples[1].start_position, examples[1].end_position) == (5, 5)
    predict = read_squad_examples(data, is_training=False)
    assert len(predict) == 3 and predict[0].start_position is None


def test_read_v2_impossible():
    examples = read_squad_examples(SQUAD_V2, is_training=True, version_2_with_negative=True)
    impossible = examples[1]
    assert impossible.is_impossible
    assert (impossible.orig_answer_text, impossible.start_position, impossible.end_position) == ("", -1, -1)
    assert not examples[0].is_impossible and examples[0].start_position == 4


def test_read_shared_dev_file(dev_examples):
    with open(squad_dev_path(), encoding="utf-8") as f:
        data = json.load(f)
    assert len(data["data"]) == 24
    predict = read_squad_examples(data, is_training=False)
    assert len(predict) == 5397
    assert len(dev_examples) == 5397 and dev_examples.num_skipped == 0
    first = dev_examples[0]
    assert first.question_text == "Which NFL team represented the AFC at Super Bowl 50?"
    assert " ".join(first.doc_tokens[first.start_position : first.end_position + 1]) == "Denver Broncos"
    for example in dev_examples:  # the official check, which every kept answer passes
        span = " ".join(example.doc_tokens[example.start_position : example.end_position + 1])
        assert " ".join(example.orig_answer_text.split()) in span


@pytest.mark.parametrize(
    "data, field",
    [
        ({"version": "1.1"}, "data is missing"),
        ({"data": [{"paragraphs": []}, {"title": "x"}]}, "data[1].paragraphs is missing"),
        (_v1([_qa("a", "1945", 17)], context=7), "data[0].paragraphs[0].context is int"),
        (_v1([{"id": "a", "question": "q"}]), "data[0].paragraphs[0].qas[0].answers is missing"),
        (_v1([{"id": "a", "question": "q", "answers": []}]), "data[0].paragraphs[0].qas[0].answers is empty"),
        (_v1([_qa("a", "1945", "17")]), "qas[0].answers[0].answer_start is str"),
        (_v1([_qa("a", "1945", 99)]), "qas[0].answers[0]: answer_start 99"),
        (_v1([{"question": "q", "answers": []}]), "qas[0].id is missing"),
    ],
)
def test_malformed_json_names_file_and_field(tmp_path, data, field):
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError) as info:
        read_squad_examples(str(path), is_training=True)
    assert str(path) in str(info.value) and field in str(info.value)


def test_malformed_deep_index_and_invalid_json(tmp_path):
    good = {"context": CONTEXT, "qas": [_qa("a", "1945", 17)]}
    data = {"data": [{"paragraphs": [good]}] * 3 + [{"paragraphs": [good, {"context": CONTEXT, "qas": [{
        "id": "b", "question": "q", "answers": "1945"}]}]}]}
    field = r"data\[3\]\.paragraphs\[1\]\.qas\[0\]\.answers is str"
    with pytest.raises(ValueError, match=r"<SQuAD dict>: " + field):
        read_squad_examples(data, is_training=True)
    path = tmp_path / "cut.json"
    path.write_text('{"data": [')
    with pytest.raises(ValueError, match="cut.json: not valid JSON"):
        read_squad_examples(str(path), is_training=False)


# Features: pieces.


def test_improve_answer_span_and_doc_spans():
    assert improve_answer_span([7, 4, 5, 8], 0, 3, [4, 5]) == (1, 2)
    assert improve_answer_span([7, 4, 5, 8], 0, 3, [9]) == (0, 3)
    assert doc_spans(12, 6, 3) == [(0, 6), (3, 6), (6, 6)]
    assert doc_spans(13, 6, 10) == [(0, 6), (6, 6), (12, 1)]  # stride capped by the length
    assert doc_spans(4, 6, 3) == [(0, 4)]
    spans = [(0, 6), (3, 6), (6, 6)]
    # score min(left, right) + 0.01 * length; ties go to the first window.
    assert [next(i for i in range(3) if is_max_context(spans, i, p)) for p in range(12)] == (
        [0] * 5 + [1] * 3 + [2] * 4
    )


# Features: a hand-computed example, context longer than one window.


def test_hand_features_training():
    data = _v1([_qa("year", "1945", 17), _qa("inside", "break", 25), _qa("tail", "peace came", 35)])
    examples = read_squad_examples(data, is_training=True)
    features = convert_examples_to_features(
        examples, hand_tokenizer(), max_seq_length=12, doc_stride=3, max_query_length=8, is_training=True
    )
    windows = [(e, s) for e in range(3) for s in range(3)]
    assert [(f.example_index, f.doc_span_index) for f in features] == windows
    assert [f.unique_id for f in features] == list(range(1000000001, 1000000010))
    first, second, third = features[:3]
    assert first.tokens == [
        "[CLS]", "what", "year", "?", "[SEP]", "the", "war", "ended", "in", "1945", ",", "[SEP]"]
    assert second.tokens[5:11] == ["in", "1945", ",", "un", "##break", "##able"]
    assert third.tokens[5:11] == ["un", "##break", "##able", "peace", "came", "."]
    assert first.input_word_ids.tolist() == [2, 5, 6, 9, 3, 10, 11, 12, 13, 14, 15, 3]
    assert first.input_type_ids.tolist() == [0] * 5 + [1] * 7
    assert first.input_word_ids.dtype == np.int32 and first.input_mask.tolist() == [1] * 12
    assert second.token_to_orig_map == {5: 3, 6: 4, 7: 4, 8: 5, 9: 5, 10: 5}
    assert second.token_is_max_context == {5: False, 6: False, 7: True, 8: True, 9: True, 10: False}
    # "1945," -> WordPieces "1945 ,": the answer narrows to "1945"; out of the third window.
    assert [(f.start_position, f.end_position) for f in features[:3]] == [(9, 9), (6, 6), (0, 0)]
    # "break" inside "unbreakable": the whole word's pieces "un ##break ##able".
    assert [(f.start_position, f.end_position) for f in features[3:6]] == [(0, 0), (8, 10), (5, 7)]
    # "peace came." at the end of the doc: narrowed to "peace came" (without the ".").
    assert [(f.start_position, f.end_position) for f in features[6:9]] == [(0, 0), (0, 0), (8, 9)]


def test_hand_features_query_truncation_padding_and_v2():
    examples = read_squad_examples(SQUAD_V2, is_training=True, version_2_with_negative=True)
    features = convert_examples_to_features(
        examples, hand_tokenizer(), max_seq_length=16, doc_stride=4, max_query_length=2, is_training=True
    )
    first = features[0]
    assert first.tokens[:4] == ["[CLS]", "what", "year", "[SEP]"]  # "?" cut by max_query_length
    assert len(first.tokens) == 16 and len(features) == 2 * 2  # 11 doc tokens a window, 12 doc tokens
    impossible = [f for f in features if f.example_index == 1]
    assert all(f.is_impossible and f.start_position == f.end_position == 0 for f in impossible)
    short = convert_examples_to_features(
        examples[:1], hand_tokenizer(), max_seq_length=20, doc_stride=4, max_query_length=8, is_training=False
    )
    assert len(short) == 1 and short[0].start_position is None
    assert short[0].input_mask.tolist() == [1] * 18 + [0] * 2
    assert short[0].input_word_ids[17:].tolist() == [3, 0, 0]
    with pytest.raises(ValueError, match="leaves no room"):
        convert_examples_to_features(examples, hand_tokenizer(), 10, 4, 8, is_training=False)
    unread = [SquadExample("x", "What year?", ["1945"])]
    with pytest.raises(ValueError, match="is_training=True"):
        convert_examples_to_features(unread, hand_tokenizer(), 12, 4, 4, is_training=True)


# Features: the shared dev file.


def _doc_pieces(tokenizer, example):
    """The official per-token loop, one tokenizer call per whitespace token."""
    return [tokenizer(token).numpy().tolist() for token in example.doc_tokens]


def test_dev_features_windows_and_labels(dev_examples, dev_tokenizer):
    examples = dev_examples[:400]
    max_seq_length, stride = 128, 48
    features = convert_examples_to_features(
        examples, dev_tokenizer, max_seq_length, stride, 32, is_training=True)
    by_example = {}
    for feature in features:
        by_example.setdefault(feature.example_index, []).append(feature)
    assert sorted(by_example) == list(range(len(examples)))
    assert max(len(f) for f in by_example.values()) > 2  # long contexts give several windows
    pieces_checked = 0
    for index, example_features in by_example.items():
        example = examples[index]
        if pieces_checked < 3:  # batched ragged tokenization equals per-token calls
            expected = [i for word in _doc_pieces(dev_tokenizer, example) for i in word]
            pieces_checked += 1
        else:
            expected = None
        covered, owners = {}, {}
        for span_index, feature in enumerate(example_features):
            assert feature.doc_span_index == span_index
            doc_offset = feature.tokens.index("[SEP]") + 1
            length = int(feature.input_type_ids.sum()) - 1
            span_start = span_index * stride
            assert sorted(feature.token_to_orig_map) == list(range(doc_offset, doc_offset + length))
            for i in range(length):
                covered[span_start + i] = feature.input_word_ids[doc_offset + i]
                if feature.token_is_max_context[doc_offset + i]:
                    assert span_start + i not in owners
                    owners[span_start + i] = span_index
            if feature.start_position > 0:
                orig = feature.token_to_orig_map
                assert (orig[feature.start_position], orig[feature.end_position]) == (
                    example.start_position, example.end_position)
        assert sorted(covered) == sorted(owners) == list(range(len(covered)))
        last = example_features[-1]
        assert last.tokens[-1] == "[SEP]" and len(last.tokens) <= max_seq_length
        if expected is not None:
            assert [covered[i] for i in range(len(covered))] == expected
        # the answer lies in some window unless it is longer than one
        assert any(f.start_position > 0 for f in example_features)


def test_features_to_dataset():
    examples = read_squad_examples(SQUAD_V2, is_training=True, version_2_with_negative=True)
    features = convert_examples_to_features(examples, hand_tokenizer(), 12, 3, 8, is_training=True)
    inputs, labels = next(iter(features_to_dataset(features, is_training=True, batch_size=4)))
    assert sorted(inputs) == ["input_mask", "input_type_ids", "input_word_ids"]
    assert inputs["input_word_ids"].shape == (4, 12) and inputs["input_word_ids"].dtype.name == "int32"
    assert labels["start_positions"].numpy().tolist() == [9, 6, 0, 0]
    assert labels["end_positions"].numpy().tolist() == [9, 6, 0, 0]
    batches = list(features_to_dataset(features, is_training=False, batch_size=4))
    assert [ids.numpy().tolist() for _, ids in batches] == [
        [f.unique_id for f in features[:4]], [f.unique_id for f in features[4:]]]
    assert len(list(features_to_dataset(features, True, 4, shuffle=True, seed=1, drop_remainder=True))) == 1
