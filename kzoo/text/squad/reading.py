"""Reading SQuAD JSON into `SquadExample`s, as google-research/bert's `read_squad_examples`."""

import dataclasses
import json
import logging
import os

logger = logging.getLogger(__name__)

# The official `is_whitespace`: Python's `str.isspace` is not used, so e.g. U+00A0 stays inside
# a token, while U+202F (narrow no-break space) splits.
_WHITESPACE = frozenset(" \t\r\n\u202f")


@dataclasses.dataclass
class SquadExample:
    """One question on one context.

    Attributes:
        qas_id: the question's `id`.
        question_text: the question.
        doc_tokens: the context split on whitespace (the official rule, see `split_context`).
        orig_answer_text: the (first) answer's text; "" if impossible; None when not training.
        start_position: index in `doc_tokens` of the answer's first token; -1 if impossible;
            None when not training.
        end_position: index in `doc_tokens` of the answer's last token (inclusive).
        is_impossible: the question has no answer (SQuAD 2.0).
        context_text: the context itself (what the answers of tokenizers other than WordPiece,
            which align by characters, are cut from); None when built by hand without it.
        answer_start_char: the (first) answer's `answer_start`, a character index into
            `context_text`; None when not training or impossible.
    """

    qas_id: str
    question_text: str
    doc_tokens: list
    orig_answer_text: str = None
    start_position: int = None
    end_position: int = None
    is_impossible: bool = False
    context_text: str = None
    answer_start_char: int = None


class SquadExamples(list):
    """The list of `SquadExample`s `read_squad_examples` returns, plus `num_skipped`: the number
    of training answers dropped because their text is not in the context."""

    def __init__(self, examples, num_skipped=0):
        super().__init__(examples)
        self.num_skipped = num_skipped


def split_context(text):
    """Whitespace tokens of `text` and, per character, the index of its token.

    A whitespace character maps to the token before it (-1 before the first token).
    """
    doc_tokens, char_to_word_offset = [], []
    prev_is_whitespace = True
    for char in text:
        if char in _WHITESPACE:
            prev_is_whitespace = True
        else:
            if prev_is_whitespace:
                doc_tokens.append(char)
            else:
                doc_tokens[-1] += char
            prev_is_whitespace = False
        char_to_word_offset.append(len(doc_tokens) - 1)
    return doc_tokens, char_to_word_offset


def _load(path_or_dict):
    """(parsed dict, a name of the source for error messages)."""
    if isinstance(path_or_dict, dict):
        return path_or_dict, "<SQuAD dict>"
    path = os.fspath(path_or_dict)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f), path
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from e


def _field(source, container, key, kind, where):
    """container[key], checked to be a `kind`; a ValueError naming source and field otherwise."""
    if not isinstance(container, dict) or key not in container:
        raise ValueError(f"{source}: {where} is missing (expected {kind.__name__})")
    value = container[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{source}: {where} is {type(value).__name__}, expected {kind.__name__}")
    return value


def iter_questions(path_or_dict):
    """Yields (source, field path, context, qa dict) per question, checking the structure
    `data[i].paragraphs[j].{context, qas[k]}` on the way."""
    data, source = _load(path_or_dict)
    articles = _field(source, data, "data", list, "data")
    for i, article in enumerate(articles):
        paragraphs = _field(source, article, "paragraphs", list, f"data[{i}].paragraphs")
        for j, paragraph in enumerate(paragraphs):
            where = f"data[{i}].paragraphs[{j}]"
            context = _field(source, paragraph, "context", str, f"{where}.context")
            qas = _field(source, paragraph, "qas", list, f"{where}.qas")
            for k, qa in enumerate(qas):
                yield source, f"{where}.qas[{k}]", context, qa


def _answer_span(source, where, qa, context, doc_tokens, char_to_word_offset):
    """(text, start token, end token) of the first answer, checked against the context."""
    answers = _field(source, qa, "answers", list, f"{where}.answers")
    if not answers:
        raise ValueError(f"{source}: {where}.answers is empty; a training question needs an answer")
    text = _field(source, answers[0], "text", str, f"{where}.answers[0].text")
    start = _field(source, answers[0], "answer_start", int, f"{where}.answers[0].answer_start")
    if not text or start < 0 or start + len(text) > len(context):
        raise ValueError(
            f"{source}: {where}.answers[0]: answer_start {start} with text of length {len(text)} "
            f"does not fit in the context of length {len(context)}"
        )
    return text, start, char_to_word_offset[start], char_to_word_offset[start + len(text) - 1]


def read_squad_examples(path_or_dict, is_training, version_2_with_negative=False):
    """Reads SQuAD v1.1 / v2.0 JSON into `SquadExample`s with the official rules.

    Training examples take the first answer (the official code demands exactly one; dev sets have
    several). A training answer whose whitespace-normalised text is not in the whitespace-joined
    doc tokens it spans (e.g. it starts mid-token... and the tokens do not contain it) is skipped
    with a warning and counted in `num_skipped`, as the official `actual_text.find(...) == -1`.

    Args:
        path_or_dict: path of a SQuAD JSON file, or the parsed dict.
        is_training: read answer positions (needed by `convert_examples_to_features` for
            training labels).
        version_2_with_negative: honour `is_impossible` (SQuAD 2.0): such an example has
            start = end = -1 and an empty answer.

    Returns:
        `SquadExamples`, a list of `SquadExample` with the attribute `num_skipped`.

    Raises:
        ValueError: naming the file and the field (e.g. `data[3].paragraphs[1].qas[0].answers`)
            for malformed structure or an answer outside its context.
    """
    examples, num_skipped = [], 0
    contexts = {}
    for source, where, context, qa in iter_questions(path_or_dict):
        if context not in contexts:
            contexts = {context: split_context(context)}  # questions of a paragraph are adjacent
        doc_tokens, char_to_word_offset = contexts[context]
        example = SquadExample(
            qas_id=_field(source, qa, "id", str, f"{where}.id"),
            question_text=_field(source, qa, "question", str, f"{where}.question"),
            doc_tokens=doc_tokens,
            context_text=context,
        )
        if version_2_with_negative and "is_impossible" in qa:
            example.is_impossible = _field(source, qa, "is_impossible", bool, f"{where}.is_impossible")
        if is_training and example.is_impossible:
            example.orig_answer_text, example.start_position, example.end_position = "", -1, -1
        elif is_training:
            text, start_char, start, end = _answer_span(source, where, qa, context, doc_tokens, char_to_word_offset)
            actual_text = " ".join(doc_tokens[start : end + 1])
            if actual_text.find(" ".join(text.split())) == -1:
                logger.warning("%s: %s: could not find answer %r in %r; skipped",
                               source, where, text, actual_text)
                num_skipped += 1
                continue
            example.orig_answer_text, example.start_position, example.end_position = text, start, end
            example.answer_start_char = start_char
        examples.append(example)
    return SquadExamples(examples, num_skipped)
