"""Fine-tune a pretrained encoder as a CoNLL token tagger (NER, chunking), evaluate, predict.

Any family `kzoo.checkpoints.load_pretrained` reads works (BERT, ALBERT, ELECTRA, RoBERTa,
XLM-RoBERTa, DistilBERT): the words are tokenized with the checkpoint's own tokenizer
(`Pretrained.tokenizer`, each word alone, its first piece labelled; see `kzoo.data.conll`) and
packed in the family's layout, and that tokenizer is saved beside the model and exported."""

import dataclasses
import math
import os
import time

import keras
import numpy as np
from absl import logging

from kzoo import io as kzoo_io
from kzoo import checkpoints, models
from kzoo.data import conll
from kzoo.training.common import save_model, save_tokenizer, standard_callbacks
from kzoo.export import export_tagger
from kzoo.export.precision import check_serving_dtype
from kzoo.training.recipe import AdaptationOptions, prepare_training, save_adaptation, serving_model
from kzoo.training.distribution import DistributionOptions
from kzoo.training.tagging_metrics import EntityMetricsCallback, evaluate_tagger


@dataclasses.dataclass
class TaggerRun(AdaptationOptions, DistributionOptions):
    """What to fine-tune on what. The adaptation fields (adapters, LoRA,
    freezing, schedules, layer-wise learning rates, L2-SP) are those of
    `kzoo.training.AdaptationOptions`.

    Attributes:
        train_file: CoNLL training file (one token a line, whitespace-separated columns,
            blank lines between sentences, `-DOCSTART-` lines skipped; tags O, B-X, I-X).
        eval_file: CoNLL evaluation file; without one, a seeded random
            `validation_fraction` of the training sentences is held out.
        predict_file: CoNLL file to tag; only the token column is read (tags not needed).
        output_predictions: predictions file (default `<model_dir>/predictions.conll`):
            `token<TAB>tag` lines, a blank line between sentences, in input order.
        token_column, tag_column: column indices of the token and the tag (negative counts
            from the end; the defaults fit CoNLL-2003 and 2-column files).
        init_checkpoint: "minilm" (the pip package), an official prefix or folder, or a HF
            folder of any kzoo family; its tokenizer files (vocab.txt, spiece.model,
            sentencepiece.bpe.model, vocab.json + merges.txt) give the tokenizer.
        bert_config_file, vocab_file: override the files beside the weights (vocab_file:
            WordPiece families only).
        max_seq_length: most pieces per sentence, the two special tokens ([CLS] and [SEP],
            or <s> and </s>) included; longer sentences lose trailing words (counted in the
            log; predicted "O").
        train_batch_size, eval_batch_size: global batch sizes (sentences).
        learning_rate: peak AdamW learning rate.
        num_train_epochs: epochs over the training split.
        warmup_proportion: fraction of steps spent warming up.
        validation_fraction: share of training sentences held out when there is no eval_file, in [0, 1);
            0 trains on every training sentence (evaluating only on eval_file when given, else not at all).
        strict_iob2: score entities with seqeval's strict IOB2 rules instead of conlleval's.
        export_dir: SavedModel base path for `kzoo.export.export_tagger`
            (raw text in, words and tags out); empty: no export.
        serving_dtype: the export's compute precision: "float32", or "bfloat16" (the encoder's
            projections in bfloat16, the rest in float32: `kzoo.export.precision`).
        static_shapes: pad to max_seq_length, drop the last partial training
            batch and compile the train step with XLA (automatic under
            TPUStrategy).
        seed: seeds the split, shuffling, dropout and the head's init.
        model_dir: TensorBoard logs, per-epoch weight checkpoints, the final `model.keras`,
            `tags.json` and the tokenizer (`kzoo.training.common.save_tokenizer`: its files
            and `kzoo_tokenizer.json`; `load_tokenizer(model_dir)` reads it back).
        verbose: Keras progress output (1: bar, 2: a line per epoch).
    """

    train_file: str = None
    eval_file: str = None
    predict_file: str = None
    output_predictions: str = None
    token_column: int = 0
    tag_column: int = -1
    init_checkpoint: str = checkpoints.MINILM
    bert_config_file: str = None
    vocab_file: str = None
    max_seq_length: int = 128
    train_batch_size: int = 32
    eval_batch_size: int = 64
    learning_rate: float = 5e-5
    num_train_epochs: int = 3
    warmup_proportion: float = 0.1
    validation_fraction: float = 0.1
    strict_iob2: bool = False
    static_shapes: bool = False
    export_dir: str = ""
    serving_dtype: str = "float32"
    seed: int = 42
    model_dir: str = os.path.join("runs", "tagger")
    verbose: int = 1


def read_tokens(path, token_column=0):
    """Sentences (lists of tokens) of a CoNLL file, ignoring every other column.

    Raises:
        ValueError naming the file and line for unreadable input or a line without the token
        column, or naming the file when it has no sentences.
    """
    path = os.fspath(path)
    needed = token_column + 1 if token_column >= 0 else -token_column
    sentences, words = [], []
    for number, line in enumerate(conll._decoded_lines(path), start=1):
        columns = line.split()
        if not columns or columns[0] == conll.DOCSTART:
            if words:
                sentences.append(words)
                words = []
            continue
        if len(columns) < needed:
            raise ValueError(f"{path}:{number}: expected at least {needed} whitespace-separated columns, "
                             f"found {len(columns)}: {line!r}")
        words.append(columns[token_column])
    if words:
        sentences.append(words)
    if not sentences:
        raise ValueError(f"{path}: no sentences (empty file or only -DOCSTART- lines)")
    return sentences


def _first_line_with_tag(path, tag_column, tag):
    """The 1-based number of the first token line of `path` whose tag is `tag`, or None."""
    for number, line in enumerate(conll._decoded_lines(path), start=1):
        columns = line.split()
        if columns and columns[0] != conll.DOCSTART and len(columns) >= 2 and columns[tag_column] == tag:
            return number
    return None


def sentence_split(num_sentences, validation_fraction, seed=0):
    """Seeded random split of sentence indices: (train, validation), sorted, both non-empty."""
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    if num_sentences < 2:
        raise ValueError(f"need at least two training sentences to hold some out, found {num_sentences}")
    order = np.random.default_rng(seed).permutation(num_sentences)
    count = min(max(int(round(num_sentences * validation_fraction)), 1), num_sentences - 1)
    return np.sort(order[count:]), np.sort(order[:count])


def read_inputs(run):
    """Reads and checks every input file before any training starts.

    Returns:
        (train, evaluation, predict, tag_names): train and evaluation are (sentences, tags),
        predict is a list of sentences or None; tag ids index `tag_names`. evaluation is None
        when there is no eval_file and validation_fraction is 0.
    """
    if not 0.0 <= run.validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1) (0: train on every training sentence), "
                         f"got {run.validation_fraction}")
    if not run.train_file:
        raise ValueError("a training file is required (train_file / --train_file)")
    columns = dict(token_column=run.token_column, tag_column=run.tag_column)
    train = conll.read_conll(run.train_file, **columns)
    tag_names = conll.tag_vocabulary(train[1])
    if len(tag_names) < 2:
        raise ValueError(f"{run.train_file}: need at least one tag besides 'O', found {tag_names}")
    if run.eval_file:
        evaluation = conll.read_conll(run.eval_file, **columns)
        unknown = sorted({tag for sentence in evaluation[1] for tag in sentence} - set(tag_names))
        if unknown:
            line = _first_line_with_tag(run.eval_file, run.tag_column, unknown[0])
            where = f"{run.eval_file}:{line}" if line else run.eval_file
            raise ValueError(f"{where}: tag {unknown[0]!r} does not occur in the training file "
                             f"{run.train_file} (its tags: {tag_names})")
    elif run.validation_fraction > 0:
        train_idx, eval_idx = sentence_split(len(train[0]), run.validation_fraction, run.seed)
        evaluation = tuple([part[i] for i in eval_idx] for part in train)
        train = tuple([part[i] for i in train_idx] for part in train)
    else:
        evaluation = None
    predict = read_tokens(run.predict_file, run.token_column) if run.predict_file else None
    return train, evaluation, predict, tag_names


def run_tagger(run):
    """Fine-tunes, evaluates (entity P/R/F1 every epoch) and predicts; returns a dict of results."""
    keras.utils.set_random_seed(run.seed)
    run.validate()
    check_serving_dtype(run.serving_dtype)
    train, evaluation, predict, tag_names = read_inputs(run)
    num_eval = len(evaluation[0]) if evaluation else 0
    logging.info("%s: %d train / %d evaluation sentences, %d tags %s", run.train_file, len(train[0]), num_eval,
                 len(tag_names), tag_names)

    strategy = run.make_strategy()
    run = run.for_this_worker(strategy)
    static = run.static(strategy, run.static_shapes)
    with run.model_scope(strategy):
        pretrained = checkpoints.load_pretrained(run.init_checkpoint, config_file=run.bert_config_file,
                                                 vocab_file=run.vocab_file, **run.encoder_kwargs())
        model = models.bert_token_classifier(pretrained.encoder, num_tags=len(tag_names))
    tokenizer = pretrained.tokenizer  # the family's own: WordPiece, SentencePiece or byte-level BPE

    def dataset(sentences, tags, batch_size, training):
        return conll.tagging_dataset(sentences, tags, tokenizer, run.max_seq_length, tag_names, batch_size,
                                     shuffle=training, seed=run.seed, dynamic_length=not static,
                                     drop_remainder=training and static)

    train_data = dataset(*train, run.train_batch_size, training=True)
    eval_data = dataset(*evaluation, run.eval_batch_size, training=False) if evaluation else None
    steps = (len(train[0]) // run.train_batch_size if static else math.ceil(len(train[0]) / run.train_batch_size))
    steps *= run.num_train_epochs
    with strategy.scope():
        optimizer, adaptation_callbacks = prepare_training(
            model, run, run.learning_rate, steps, int(steps * run.warmup_proportion),
            os.path.join(run.model_dir, "logs"))
        model.compile(
            optimizer=optimizer,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=conll.IGNORE_LABEL),
            jit_compile=static,
        )

    kzoo_io.makedirs(run.model_dir)
    callbacks = [  # entity metrics first, so TensorBoard and History see them in the logs
        *adaptation_callbacks,
        *([EntityMetricsCallback(eval_data, evaluation[1], tag_names, strict=run.strict_iob2)] if evaluation else []),
        *standard_callbacks(run.model_dir, backup_steps=run.backup_steps, backup_dir=run.backup_dir()),
    ]
    start = time.time()
    history = model.fit(train_data.dataset, validation_data=eval_data.dataset if evaluation else None,
                        epochs=run.num_train_epochs,
                        callbacks=callbacks, shuffle=False,  # the dataset reshuffles itself every epoch
                        verbose=run.verbose)
    train_seconds = time.time() - start
    metrics = {}
    if evaluation:
        metrics = evaluate_tagger(model, eval_data, evaluation[1], tag_names, strict=run.strict_iob2)
        logging.info("entity evaluation after %.0f s of training (%d sentences): precision %.4f, recall %.4f, "
                     "f1 %.4f", train_seconds, num_eval, metrics["precision"], metrics["recall"], metrics["f1"])
    save_model(model, run.model_dir, tags=tag_names)
    save_tokenizer(tokenizer, run.model_dir)
    adaptation_weights = save_adaptation(model, run, run.model_dir)

    result = {
        "metrics": metrics,
        "num_train": len(train[0]),
        "num_eval": num_eval,
        "train_seconds": train_seconds,
        "adaptation_weights": adaptation_weights,
        "history": history.history,
        "tag_names": tag_names,
        "predictions_file": None,
    }
    if predict is not None:
        path = run.output_predictions or os.path.join(run.model_dir, "predictions.conll")
        predict_data = dataset(predict, None, run.eval_batch_size, training=False)
        logits = [model.predict_on_batch(batch) for batch in predict_data.dataset]
        ids = conll.word_predictions(logits, predict_data.first_piece_positions, fill_id=tag_names.index("O"))
        write_predictions(path, predict, [[tag_names[i] for i in row] for row in ids])
        result["predictions_file"] = path
    result["export_path"] = None
    if run.export_dir:
        result["export_path"] = export_tagger(serving_model(model, run), tokenizer, tag_names, run.export_dir,
                                              seq_length=run.max_seq_length, compute_dtype=run.serving_dtype)
        logging.info("exported SavedModel to %s", result["export_path"])
    return result


def write_predictions(path, sentences, tags):
    """CoNLL: `token<TAB>tag` per line, a blank line after each sentence, in input order;
    written to a temporary file and renamed into place."""
    text = "".join("".join(f"{word}\t{tag}\n" for word, tag in zip(words, word_tags)) + "\n"
                   for words, word_tags in zip(sentences, tags))
    return kzoo_io.write_text(path, text)
