"""Fine-tune a pretrained encoder for SQuAD v1.1 / v2.0 extractive question answering, as
google-research/bert's `run_squad.py`: train, predict, write the official prediction files,
evaluate. Any kzoo family: WordPiece checkpoints (BERT, ELECTRA, DistilBERT) follow the official
pre- and post-processing exactly; ALBERT and XLM-R (SentencePiece) and RoBERTa (byte-level BPE)
align answers by characters and predict exact substrings of the context
(`kzoo.text.squad`, `kzoo.text.alignment`), packed in the family's layout."""

import dataclasses
import json
import math
import os
import time

import keras
import numpy as np
from absl import logging

from kzoo import io as kzoo_io
from kzoo import checkpoints, models, text
from kzoo.text import squad
from kzoo.training.common import save_model, save_tokenizer, standard_callbacks, write_json_atomically
from kzoo.export import export_span_labeler
from kzoo.export.precision import check_serving_dtype
from kzoo.training.recipe import AdaptationOptions, prepare_training, save_adaptation, serving_model
from kzoo.training.distribution import DistributionOptions

_DICT_SOURCE = "<SQuAD dict>"  # what kzoo.text.squad calls a parsed dict in its errors


@dataclasses.dataclass
class SquadRun(AdaptationOptions, DistributionOptions):
    """What to fine-tune on what; the defaults are the official run_squad.py's.
    The adaptation fields (adapters, LoRA, freezing, schedules, layer-wise
    learning rates, L2-SP) are those of `kzoo.training.AdaptationOptions`.

    Attributes:
        train_file: SQuAD JSON training file.
        predict_file: SQuAD JSON file to predict; evaluated too (official EM / F1) when its
            questions carry answers.
        version_2_with_negative: SQuAD 2.0: questions may be `is_impossible` (trained to point
            at [CLS]); predictions may be "" and `null_odds.json` is written.
        max_seq_length: tokens per window, special tokens included.
        doc_stride: the most doc tokens by which consecutive windows of a context are shifted.
        max_query_length: the most tokens kept of a question.
        n_best_size: candidate answers kept per question (and start / end indexes tried per
            window), written to `nbest_predictions.json`.
        max_answer_length: the most tokens in a predicted answer.
        null_score_diff_threshold: SQuAD 2.0: predict "" when the null score minus the best
            answer's score exceeds this.
        init_checkpoint: "minilm" (the pip package), an official prefix or folder, or a HF
            folder.
        bert_config_file, vocab_file: override the files beside the weights (vocab_file:
            WordPiece families only).
        do_lower_case: lower-case text (tokenizer and answer projection); None takes the
            checkpoint's casing. RoBERTa and XLM-R never lower-case.
        train_batch_size, predict_batch_size: global batch sizes (windows).
        learning_rate: peak AdamW learning rate.
        num_train_epochs: epochs over the training windows.
        warmup_proportion: fraction of steps spent warming up.
        max_train_examples: train on the first N questions only (CPU-budget runs); None: all.
        holdout_articles: when > 0 and there is no predict_file, the last N articles of
            train_file are not trained on but predicted and evaluated.
        max_eval_examples: predict / evaluate the first N questions of the evaluation data only
            (quick checks); None: all.
        export_dir: SavedModel base path for `kzoo.export.export_span_labeler`
            (raw question and context in, answer text and character span
            out, doc stride in the graph); empty: no export.
        serving_dtype: the export's compute precision: "float32", or "bfloat16" (the encoder's
            projections in bfloat16, the rest in float32: `kzoo.export.precision`).
        static_shapes: drop the last partial training batch and compile the
            train step with XLA (windows are always max_seq_length long;
            automatic under TPUStrategy).
        seed: seeds shuffling, dropout and the head's init.
        model_dir: TensorBoard logs, per-epoch weight checkpoints, the final `model.keras`, the
            tokenizer (`kzoo.training.common.save_tokenizer`), `predictions.json`, `nbest_predictions.json` and (v2) `null_odds.json`.
        verbose: Keras progress output (1: bar, 2: a line per epoch).
    """

    train_file: str = None
    predict_file: str = None
    version_2_with_negative: bool = False
    max_seq_length: int = 384
    doc_stride: int = 128
    max_query_length: int = 64
    n_best_size: int = 20
    max_answer_length: int = 30
    null_score_diff_threshold: float = 0.0
    init_checkpoint: str = checkpoints.MINILM
    bert_config_file: str = None
    vocab_file: str = None
    do_lower_case: bool = None
    train_batch_size: int = 32
    predict_batch_size: int = 64
    learning_rate: float = 5e-5
    num_train_epochs: int = 2
    warmup_proportion: float = 0.1
    max_train_examples: int = None
    holdout_articles: int = 0
    max_eval_examples: int = None
    static_shapes: bool = False
    export_dir: str = ""
    serving_dtype: str = "float32"
    seed: int = 42
    model_dir: str = os.path.join("runs", "squad")
    verbose: int = 1


@dataclasses.dataclass
class SquadInputs:
    """What `read_inputs` returns.

    Attributes:
        train_examples: training `SquadExample`s (with answer positions).
        num_skipped: training answers dropped because their text is not in the context.
        eval_examples: `SquadExample`s to predict (no answer positions).
        eval_dataset: the parsed SQuAD dict of exactly these questions (for `evaluate`).
        eval_source: where they come from, for the log.
        has_answers: the evaluation questions carry answers (so they are scored).
    """

    train_examples: list
    num_skipped: int
    eval_examples: list
    eval_dataset: dict
    eval_source: str
    has_answers: bool


def _load_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise ValueError(f"{path}: cannot read: {e.strerror or e}") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid SQuAD JSON: {e}") from e


def _named(path, call, *args, **kwargs):
    """call(...) with the file's name instead of `<SQuAD dict>` in a ValueError."""
    try:
        return call(*args, **kwargs)
    except ValueError as e:
        raise ValueError(str(e).replace(_DICT_SOURCE, path)) from e


def _first_questions(dataset, n):
    """A copy of a parsed SQuAD dict with only its first `n` questions (empty paragraphs and
    articles dropped)."""
    result = {k: v for k, v in dataset.items() if k != "data"}
    result["data"], left = [], n
    for article in dataset["data"]:
        if left <= 0:
            break
        paragraphs = []
        for paragraph in article["paragraphs"]:
            if left <= 0:
                break
            kept = dict(paragraph, qas=paragraph["qas"][:left])
            left -= len(kept["qas"])
            if kept["qas"]:
                paragraphs.append(kept)
        if paragraphs:
            result["data"].append(dict(article, paragraphs=paragraphs))
    return result


def _has_answers(dataset, version_2):
    """Every question has an `answers` list, and (v1.1) some are non-empty: the data is scored."""
    questions = list(squad.reading.iter_questions(dataset))
    if not questions or not all(isinstance(qa.get("answers"), list) for _, _, _, qa in questions):
        return False
    return version_2 or any(qa["answers"] for _, _, _, qa in questions)


def read_inputs(run):
    """Reads and checks every input before any training starts.

    Raises:
        ValueError naming the file (and the field, e.g. `data[3].paragraphs[1].qas[0].answers`)
        for a missing, unreadable or malformed file, or for inconsistent options.
    """
    if not run.train_file:
        raise ValueError("train_file is required")
    for name in ("max_train_examples", "max_eval_examples"):
        value = getattr(run, name)
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1 (or None for all), got {value}")
    if run.max_seq_length - run.max_query_length - 3 < 1:
        raise ValueError(f"max_seq_length {run.max_seq_length} leaves no room for the context after a question "
                         f"of max_query_length {run.max_query_length} and 3 special tokens")
    if run.doc_stride < 1:
        raise ValueError(f"doc_stride must be >= 1, got {run.doc_stride}")
    if run.holdout_articles < 0:
        raise ValueError(f"holdout_articles must be >= 0, got {run.holdout_articles}")
    v2 = run.version_2_with_negative
    train_dict = _load_json(run.train_file)
    # Structure, ids and questions of the whole file, with its own field paths in errors.
    all_examples = _named(run.train_file, squad.read_squad_examples, train_dict, is_training=False,
                          version_2_with_negative=v2)
    if run.predict_file:
        eval_source = run.predict_file
        eval_dict = _load_json(run.predict_file)
        eval_examples = _named(eval_source, squad.read_squad_examples, eval_dict, is_training=False,
                               version_2_with_negative=v2)
        train_part = train_dict
    elif run.holdout_articles:
        articles = train_dict["data"]
        if run.holdout_articles >= len(articles):
            raise ValueError(f"{run.train_file}: holdout_articles {run.holdout_articles} leaves no "
                             f"training article of {len(articles)}")
        cut = len(articles) - run.holdout_articles
        train_part = dict(train_dict, data=articles[:cut])
        eval_dict = dict(train_dict, data=articles[cut:])
        eval_source = f"{run.train_file} (last {run.holdout_articles} articles, not trained on)"
        num_train_questions = sum(1 for _ in squad.reading.iter_questions(train_part))
        eval_examples = all_examples[num_train_questions:]  # questions are read in file order
    else:
        raise ValueError("nothing to predict: pass predict_file, or holdout_articles > 0 to hold "
                         "back the last articles of train_file")
    # The training part is a prefix of train_file, so field paths in its errors are the file's.
    train_examples = _named(run.train_file, squad.read_squad_examples, train_part, is_training=True,
                            version_2_with_negative=v2)
    num_skipped = train_examples.num_skipped
    if run.max_train_examples:
        train_examples = train_examples[: run.max_train_examples]
    if not train_examples:
        raise ValueError(f"{run.train_file}: no training questions")
    if run.max_eval_examples:
        eval_examples = eval_examples[: run.max_eval_examples]
        eval_dict = _first_questions(eval_dict, run.max_eval_examples)
    if not eval_examples:
        raise ValueError(f"{eval_source}: no questions to predict")
    has_answers = _has_answers(eval_dict, v2)
    if has_answers:  # answers are well-formed: fail now rather than after training
        _named(run.predict_file or run.train_file, squad.evaluate, eval_dict, {})
    return SquadInputs(list(train_examples), num_skipped, list(eval_examples), eval_dict, eval_source,
                       has_answers)


def squad_losses(model):
    """The official loss: the mean of the start and the end sparse cross-entropies (from
    logits), as Keras dict losses and weights keyed by the model's output names."""
    names = ("start_logits", "end_logits")
    missing = [n for n in names if n not in model.output_names]
    if missing:
        raise ValueError(f"model outputs {model.output_names} lack {missing}")
    losses = {n: keras.losses.SparseCategoricalCrossentropy(from_logits=True) for n in names}
    return losses, {n: 0.5 for n in names}


def _rename_labels(inputs, labels):
    """The dataset's label keys -> the model's output names."""
    return inputs, {"start_logits": labels["start_positions"], "end_logits": labels["end_positions"]}


def squad_tokenizer(pretrained, do_lower_case=None):
    """The tokenizer of a `Pretrained` with `do_lower_case` applied (None: the checkpoint's casing).

    WordPiece families: a `BertTokenizer` of the vocabulary with that casing, as before the other
    families; ALBERT: its tokenizer rebuilt with that casing; RoBERTa / XLM-R never lower-case
    (`do_lower_case=True` is a ValueError naming the folder)."""
    if pretrained.vocab_file is not None:
        lower_case = pretrained.lower_case if do_lower_case is None else do_lower_case
        return text.BertTokenizer(pretrained.vocab_file, lower_case=lower_case)
    tokenizer = pretrained.tokenizer
    if do_lower_case is not None and bool(do_lower_case) != bool(getattr(tokenizer, "lower_case", False)):
        tokenizer = text.tokenizer_from_folder(pretrained.folder, pretrained.family, lower_case=do_lower_case)
    return tokenizer


def run_squad(run):
    """Fine-tunes, predicts, writes the prediction files and evaluates; returns a dict of results.

    Returns:
        dict with `metrics` (the `kzoo.text.squad.evaluate` result, or None when the evaluation
        data has no answers), `num_train` / `num_train_features` / `num_skipped`, `num_eval` /
        `num_eval_features`, `train_seconds`, `history`, `lower_case`, `predictions_file`,
        `nbest_file` and `null_odds_file` (None for SQuAD 1.1).
    """
    keras.utils.set_random_seed(run.seed)
    run.validate()
    check_serving_dtype(run.serving_dtype)
    inputs = read_inputs(run)
    logging.info("%s: %d training questions (%d skipped answers); %s: %d questions to predict%s",
                 run.train_file, len(inputs.train_examples), inputs.num_skipped, inputs.eval_source,
                 len(inputs.eval_examples), "" if inputs.has_answers else " (no answers: not scored)")

    strategy = run.make_strategy()
    run = run.for_this_worker(strategy)
    static = run.static(strategy, run.static_shapes)
    with run.model_scope(strategy):
        pretrained = checkpoints.load_pretrained(run.init_checkpoint, config_file=run.bert_config_file,
                                                 vocab_file=run.vocab_file, **run.encoder_kwargs())
        model = models.bert_span_labeler(pretrained.encoder)
    tokenizer = squad_tokenizer(pretrained, run.do_lower_case)
    lower_case = bool(getattr(tokenizer, "lower_case", False))

    def features(examples, is_training):
        return squad.convert_examples_to_features(
            examples, tokenizer, max_seq_length=run.max_seq_length, doc_stride=run.doc_stride,
            max_query_length=run.max_query_length, is_training=is_training)

    train_features = features(inputs.train_examples, True)
    eval_features = features(inputs.eval_examples, False)
    logging.info("%d training windows, %d windows to predict", len(train_features), len(eval_features))
    steps = (len(train_features) // run.train_batch_size if static
             else math.ceil(len(train_features) / run.train_batch_size)) * run.num_train_epochs
    with strategy.scope():
        loss, loss_weights = squad_losses(model)
        optimizer, adaptation_callbacks = prepare_training(
            model, run, run.learning_rate, steps, int(steps * run.warmup_proportion),
            os.path.join(run.model_dir, "logs"))
        model.compile(optimizer=optimizer, loss=loss, loss_weights=loss_weights, jit_compile=static)
    train_ds = squad.features_to_dataset(train_features, is_training=True, batch_size=run.train_batch_size,
                                         shuffle=True, seed=run.seed, drop_remainder=static).map(_rename_labels)

    kzoo_io.makedirs(run.model_dir)
    start = time.time()
    history = model.fit(train_ds, epochs=run.num_train_epochs,
                        callbacks=adaptation_callbacks + standard_callbacks(
                            run.model_dir, backup_steps=run.backup_steps, backup_dir=run.backup_dir()),
                        shuffle=False,  # the dataset reshuffles itself every epoch
                        verbose=run.verbose)
    train_seconds = time.time() - start
    save_model(model, run.model_dir)
    save_tokenizer(tokenizer, run.model_dir)
    adaptation_weights = save_adaptation(model, run, run.model_dir)

    predict_ds = squad.features_to_dataset(eval_features, is_training=False, batch_size=run.predict_batch_size)
    logits = model.predict(predict_ds, verbose=0)
    results = {f.unique_id: (logits["start_logits"][i], logits["end_logits"][i])
               for i, f in enumerate(eval_features)}
    predictions, nbest, null_odds = squad.postprocess(
        inputs.eval_examples, eval_features, results, n_best_size=run.n_best_size,
        max_answer_length=run.max_answer_length, do_lower_case=lower_case,
        version_2_with_negative=run.version_2_with_negative,
        null_score_diff_threshold=run.null_score_diff_threshold)
    predictions_file = write_json(os.path.join(run.model_dir, "predictions.json"), predictions)
    nbest_file = write_json(os.path.join(run.model_dir, "nbest_predictions.json"), nbest)
    null_odds_file = None
    if run.version_2_with_negative:
        null_odds_file = write_json(os.path.join(run.model_dir, "null_odds.json"), null_odds)

    metrics = squad.evaluate(inputs.eval_dataset, predictions) if inputs.has_answers else None
    if metrics is not None:
        logging.info("evaluation after %.0f s of training (%d questions): %s", train_seconds,
                     metrics["total"], metrics)
    export_path = None
    if run.export_dir:
        export_path = export_span_labeler(
            serving_model(model, run), tokenizer, run.export_dir, max_seq_length=run.max_seq_length,
            doc_stride=run.doc_stride, max_query_length=run.max_query_length,
            max_answer_length=run.max_answer_length, version_2_with_negative=run.version_2_with_negative,
            null_score_diff_threshold=run.null_score_diff_threshold, n_best_size=run.n_best_size,
            compute_dtype=run.serving_dtype)
        logging.info("exported SavedModel to %s", export_path)
    return {
        "export_path": export_path,
        "metrics": metrics,
        "num_train": len(inputs.train_examples),
        "num_train_features": len(train_features),
        "num_skipped": inputs.num_skipped,
        "num_eval": len(inputs.eval_examples),
        "num_eval_features": len(eval_features),
        "train_seconds": train_seconds,
        "adaptation_weights": adaptation_weights,
        "history": history.history,
        "lower_case": lower_case,
        "predictions_file": predictions_file,
        "nbest_file": nbest_file,
        "null_odds_file": null_odds_file,
    }


def _jsonable(value):
    """numpy scalars -> Python; an infinite null-odds value -> a large float (JSON has no inf)."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else math.copysign(1e30, value)
    return value


def write_json(path, obj):
    """Writes `obj` as JSON (infinite floats as +-1e30) atomically; returns the path."""
    return write_json_atomically(path, _jsonable(obj))
