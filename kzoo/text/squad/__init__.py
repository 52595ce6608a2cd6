"""SQuAD v1.1 / v2.0 question answering, with google-research/bert's `run_squad.py` rules:
reading (`read_squad_examples`), windowed features (`convert_examples_to_features`), a `tf.data`
pipeline (`features_to_dataset`), logits to answers (`postprocess`) and the official evaluation
(`evaluate`). WordPiece follows the official code exactly; SentencePiece (ALBERT, XLM-R) and
byte-level BPE (RoBERTa) tokenizers align answers by characters (`char_span_to_token_span`,
`kzoo.text.alignment.pieces_with_offsets`) and answer with exact context characters.

Example:
>>> examples = read_squad_examples("train-v1.1.json", is_training=True)  # doctest: +SKIP
>>> features = convert_examples_to_features(examples, tokenizer, max_seq_length=384,
...     doc_stride=128, max_query_length=64, is_training=True)  # doctest: +SKIP
>>> model.fit(features_to_dataset(features, is_training=True, batch_size=32))  # doctest: +SKIP
"""

from kzoo.text.squad.evaluation import evaluate, exact_match_score, f1_score, normalize_answer
from kzoo.text.squad.features import (
    SquadFeature,
    char_span_to_token_span,
    convert_examples_to_features,
    doc_spans,
    features_to_dataset,
    improve_answer_span,
    is_max_context,
)
from kzoo.text.squad.postprocess import basic_tokenize, get_final_text, postprocess
from kzoo.text.squad.reading import SquadExample, SquadExamples, read_squad_examples, split_context

__all__ = [
    "SquadExample",
    "SquadExamples",
    "SquadFeature",
    "basic_tokenize",
    "char_span_to_token_span",
    "convert_examples_to_features",
    "doc_spans",
    "evaluate",
    "exact_match_score",
    "f1_score",
    "features_to_dataset",
    "get_final_text",
    "improve_answer_span",
    "is_max_context",
    "normalize_answer",
    "postprocess",
    "read_squad_examples",
    "split_context",
]
