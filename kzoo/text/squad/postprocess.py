"""From start/end logits to answer texts, as google-research/bert's `write_predictions`."""

import collections
import dataclasses
import math
import unicodedata

import numpy as np

from kzoo.text.tokenizer import _ASCII_PUNCTUATION, _CJK_RANGES


def _is_punctuation(char):
    return ord(char) in _ASCII_PUNCTUATION or unicodedata.category(char).startswith("P")


def _clean_char(char):
    """The official `_clean_text` on one character: "" (dropped), " " or the character."""
    cp = ord(char)
    if char in "\t\n\r" or unicodedata.category(char) == "Zs" or char == " ":
        return " "
    if cp in (0, 0xFFFD) or unicodedata.category(char).startswith("C"):
        return ""
    if any(start <= cp <= end for start, end in _CJK_RANGES):
        return f" {char} "
    return char


def basic_tokenize(text, lower_case):
    """The official `BasicTokenizer.tokenize` in plain Python (what `get_final_text` aligns
    against; `BertTokenizer.basic_tokenize` is its in-graph twin)."""
    words = []
    for word in "".join(_clean_char(c) for c in text).split():
        if lower_case:
            word = "".join(
                c for c in unicodedata.normalize("NFD", word.lower()) if unicodedata.category(c) != "Mn"
            )
        piece = ""
        for char in word:
            if _is_punctuation(char):
                words.extend([piece, char] if piece else [char])
                piece = ""
            else:
                piece += char
        if piece:
            words.append(piece)
    return " ".join(words).split()


def _strip_spaces(text):
    """`text` without spaces, and a map from its positions to positions in `text`."""
    kept = [(i, c) for i, c in enumerate(text) if c != " "]
    return "".join(c for _, c in kept), {n: i for n, (i, _) in enumerate(kept)}


def get_final_text(pred_text, orig_text, lower_case):
    """Projects a prediction (detokenized WordPieces) back onto the original text.

    `orig_text` ("Steve Smith's") is basic-tokenized ("steve smith ' s"); `pred_text`
    ("steve smith") is found in it; with spaces stripped the two texts align character by
    character, which maps the match to "Steve Smith". Any failure returns `orig_text`.

    Args:
        pred_text: the predicted WordPieces joined, "##" removed.
        orig_text: the original whitespace tokens the prediction spans, joined by spaces.
        lower_case: the tokenizer lower-cases (uncased model).
    """
    tok_text = " ".join(basic_tokenize(orig_text, lower_case))
    start = tok_text.find(pred_text)
    if start == -1:
        return orig_text
    end = start + len(pred_text) - 1
    orig_ns_text, orig_ns_to_s = _strip_spaces(orig_text)
    tok_ns_text, tok_ns_to_s = _strip_spaces(tok_text)
    if len(orig_ns_text) != len(tok_ns_text):
        return orig_text
    tok_s_to_ns = {s: ns for ns, s in tok_ns_to_s.items()}
    orig_start = orig_ns_to_s.get(tok_s_to_ns.get(start))
    orig_end = orig_ns_to_s.get(tok_s_to_ns.get(end))
    if orig_start is None or orig_end is None:
        return orig_text
    return orig_text[orig_start : orig_end + 1]


def _best_indexes(logits, n_best_size):
    """Indexes of the n largest logits, ties in index order (the official stable sort)."""
    return np.argsort(-np.asarray(logits), kind="stable")[:n_best_size].tolist()


def _softmax(scores):
    if not scores:
        return []
    top = max(scores)
    exps = [math.exp(s - top) for s in scores]
    return [e / sum(exps) for e in exps]


@dataclasses.dataclass
class _Candidate:
    feature_index: int
    start_index: int
    end_index: int
    start_logit: float
    end_logit: float


def _feature_candidates(feature_index, feature, start_logits, end_logits, n_best_size, max_answer_length):
    """Spans from the top start and end indexes of one feature that pass the official checks."""
    for start in _best_indexes(start_logits, n_best_size):
        for end in _best_indexes(end_logits, n_best_size):
            if start not in feature.token_to_orig_map or end not in feature.token_to_orig_map:
                continue  # outside the doc part (query, special tokens, padding)
            if not feature.token_is_max_context.get(start, False):
                continue
            if end < start or end - start + 1 > max_answer_length:
                continue
            yield _Candidate(feature_index, start, end, float(start_logits[start]), float(end_logits[end]))


def _candidate_text(candidate, example, feature, lower_case):
    if feature.token_char_spans is not None:  # tokenizers that align by characters: exact context text
        begin = feature.token_char_spans[candidate.start_index][0]
        end = feature.token_char_spans[candidate.end_index][1]
        return example.context_text[begin:end]
    tok_text = " ".join(feature.tokens[candidate.start_index : candidate.end_index + 1])
    tok_text = " ".join(tok_text.replace(" ##", "").replace("##", "").split())
    orig_start = feature.token_to_orig_map[candidate.start_index]
    orig_end = feature.token_to_orig_map[candidate.end_index]
    orig_text = " ".join(example.doc_tokens[orig_start : orig_end + 1])
    return get_final_text(tok_text, orig_text, lower_case)


def _nbest(candidates, example, features, n_best_size, lower_case):
    """The best `n_best_size` candidates with distinct final texts, as (text, start, end logit)."""
    nbest, seen = [], set()
    for candidate in sorted(candidates, key=lambda c: c.start_logit + c.end_logit, reverse=True):
        if len(nbest) >= n_best_size:
            break
        if candidate.start_index > 0:
            text = _candidate_text(candidate, example, features[candidate.feature_index], lower_case)
            if text in seen:
                continue
        else:
            text = ""  # the null answer (SQuAD 2.0)
        seen.add(text)
        nbest.append((text, candidate.start_logit, candidate.end_logit))
    return nbest, seen


def _example_candidates(example, features, results, n_best_size, max_answer_length, with_null):
    """Candidate spans of one example over its features, and (with_null) the [CLS] candidate of
    the feature with the smallest [CLS] start + end logit (else None)."""
    candidates, null = [], None
    for feature_index, feature in enumerate(features):
        if feature.unique_id not in results:
            raise ValueError(f"results lack unique_id {feature.unique_id} (example {example.qas_id})")
        start_logits, end_logits = (np.asarray(r) for r in results[feature.unique_id])
        null_score = float(start_logits[0] + end_logits[0])
        if with_null and (null is None or null_score < null.start_logit + null.end_logit):
            null = _Candidate(feature_index, 0, 0, float(start_logits[0]), float(end_logits[0]))
        candidates.extend(_feature_candidates(
            feature_index, feature, start_logits, end_logits, n_best_size, max_answer_length))
    return candidates, null


def postprocess(examples, features, results, n_best_size=20, max_answer_length=30, do_lower_case=True,
                version_2_with_negative=False, null_score_diff_threshold=0.0):
    """Answer texts from model logits with the official `write_predictions` rules.

    Per example, across its features: the `n_best_size` top start and end indexes give candidate
    spans; spans outside the doc part, starting on a token that is not max-context in that
    feature, with end < start or longer than `max_answer_length` are dropped. Candidates sorted
    by start + end logit are mapped to original text (`get_final_text`), deduplicated by that
    text and cut to `n_best_size`; probabilities are a softmax over them. SQuAD 2.0: the null
    score is the smallest [CLS] start + end logit over the features; the answer is "" when
    null score - best non-null start logit - its end logit > `null_score_diff_threshold`.
    Features of tokenizers other than WordPiece carry their tokens' character spans
    (`token_char_spans`): their answer text is exactly `example.context_text[begin:end]`, from the
    first character of the start token to the last of the end token, not `get_final_text`'s.

    Args:
        examples: list of `SquadExample`.
        features: list of `SquadFeature` of these examples.
        results: dict unique_id -> (start_logits, end_logits), arrays [max_seq_length].
        n_best_size: candidates per example kept (and start/end indexes tried per feature).
        max_answer_length: the most tokens in an answer.
        do_lower_case: the tokenizer lower-cases (for `get_final_text`; WordPiece only).
        version_2_with_negative: allow the null answer.
        null_score_diff_threshold: predict null above this null-odds margin.

    Returns:
        (predictions, nbest, null_odds): dicts keyed by qas_id of the answer text, of the list of
        {"text", "probability", "start_logit", "end_logit"} dicts, and (SQuAD 2.0, else empty) of
        the null score minus the best non-null score.
    """
    by_example = collections.defaultdict(list)
    for feature in features:
        by_example[feature.example_index].append(feature)
    predictions, all_nbest, null_odds = {}, {}, {}
    for example_index, example in enumerate(examples):
        example_features = by_example[example_index]
        candidates, null = _example_candidates(
            example, example_features, results, n_best_size, max_answer_length, version_2_with_negative)
        nbest, seen = _nbest(candidates + ([null] if null else []), example, example_features, n_best_size,
                             do_lower_case)
        if null is not None and "" not in seen:
            nbest.append(("", null.start_logit, null.end_logit))
        if not nbest:
            nbest.append(("empty", 0.0, 0.0))
        probabilities = _softmax([start + end for _, start, end in nbest])
        all_nbest[example.qas_id] = [
            {"text": text, "probability": p, "start_logit": start, "end_logit": end}
            for (text, start, end), p in zip(nbest, probabilities)
        ]
        if not version_2_with_negative:
            predictions[example.qas_id] = nbest[0][0]
            continue
        best = next(((text, start + end) for text, start, end in nbest if text), None)
        if null is None or best is None:  # no features, or only the null answer survived
            predictions[example.qas_id], null_odds[example.qas_id] = "", math.inf
        else:
            odds = null.start_logit + null.end_logit - best[1]
            null_odds[example.qas_id] = odds
            predictions[example.qas_id] = "" if odds > null_score_diff_threshold else best[0]
    return predictions, all_nbest, null_odds
