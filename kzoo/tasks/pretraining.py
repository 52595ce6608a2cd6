"""Pretrain, or continue pretraining, a BERT encoder on raw text.

The workflow of google-research/bert's `create_pretraining_data.py` +
`run_pretraining.py` in one call: documents of raw text (one sentence per
line, a blank line between documents) become NSP pairs (or single segments,
RoBERTa-style), masked on the fly in tf.data, and train a `bert_pretrainer`
(masked LM + next-sentence prediction) or ELECTRA's replaced-token detection.
The result is written as an official checkpoint folder (`bert_config.json`,
`vocab.txt`, `bert_model.ckpt.*` with the `cls/*` heads) that
`kzoo.checkpoints.load_pretrained`, the fine-tuning scripts and
`tools/fill_mask.py` read.
"""

import dataclasses
import math
import os
import time

import keras
import numpy as np
from absl import logging

from kzoo import io as kzoo_io
from kzoo import checkpoints, configs, data, models, text
from kzoo.checkpoints.official import CHECKPOINT_NAME, save_official_bert
from kzoo.data import pretraining as pretraining_data
from kzoo.data.masking import MLMMasker
from kzoo.models import pretrainer as pretrainer_lib
from kzoo.training.common import save_tokenizer, standard_callbacks, write_json_atomically
from kzoo.training.optimization import create_optimizer
from kzoo.training.distribution import DistributionOptions

OBJECTIVES = ("bert", "electra")
TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords")


@dataclasses.dataclass
class PretrainingRun(DistributionOptions):
    """What to pretrain on what.

    Attributes:
        input_files: comma-separated files or globs: raw text (one sentence
            per line, blank line between documents) or TFRecords written by
            `kzoo.data.write_pretraining_tfrecords` / google-research/bert's
            `create_pretraining_data.py` (`*.tfrecord`).
        eval_files: held-out files of the same kind; without them (raw text
            only) a seeded `validation_fraction` of the documents is held out.
        validation_fraction: share of documents held out.
        init_checkpoint: official folder / prefix, HF folder or "minilm" to
            continue from (its `cls/*` heads too, when it has them); empty to
            start from scratch (then `bert_config_file` and `vocab_file`).
        bert_config_file, vocab_file: the model's config and vocabulary
            (override those beside init_checkpoint).
        lower_case: from scratch: whether the vocabulary is uncased.
        objective: "bert" (masked LM, + NSP with `nsp`) or "electra"
            (replaced-token detection with a small generator sharing the
            embeddings; no NSP).
        nsp: next-sentence prediction (False: RoBERTa-style MLM only, single
            segments).
        max_seq_length, max_predictions_per_seq, masked_lm_prob,
        short_seq_prob, dupe_factor, whole_word_masking: the official
            create_pretraining_data options (`dupe_factor` copies of the
            instances with different pairs; the masks are drawn afresh on
            every pass).
        train_batch_size, eval_batch_size: global batch sizes.
        learning_rate, warmup_proportion, weight_decay: AdamW with linear
            warm-up and decay, as the official optimizer.
        num_train_epochs: passes over the instances.
        num_train_steps: when > 0, train exactly this many steps (repeating
            the data) instead of epochs.
        generator_num_layers, discriminator_weight: ELECTRA options (0: the
            default generator depth, a third of the discriminator's).
        static_shapes: drop the last partial batch and compile the step with
            XLA (`jit_compile=True`; the TPU path, automatic under
            TPUStrategy). Inputs are always padded to max_seq_length.
        (strategy, precision and backups: `kzoo.training.DistributionOptions`)
        seed: seeds pairs, masks, the split and new weights.
        model_dir: output folder.
        verbose: Keras progress output.
    """

    input_files: str = None
    eval_files: str = None
    validation_fraction: float = 0.05
    init_checkpoint: str = None
    bert_config_file: str = None
    vocab_file: str = None
    lower_case: bool = True
    objective: str = "bert"
    nsp: bool = True
    max_seq_length: int = 128
    max_predictions_per_seq: int = 20
    masked_lm_prob: float = 0.15
    short_seq_prob: float = 0.1
    dupe_factor: int = 1
    whole_word_masking: bool = False
    train_batch_size: int = 32
    eval_batch_size: int = 32
    learning_rate: float = 1e-4
    warmup_proportion: float = 0.1
    weight_decay: float = 0.01
    num_train_epochs: int = 1
    num_train_steps: int = 0
    generator_num_layers: int = 0
    discriminator_weight: float = 50.0
    static_shapes: bool = False
    seed: int = 12345
    model_dir: str = os.path.join("runs", "pretraining")
    verbose: int = 1

    def validate(self):
        if not self.input_files:
            raise ValueError("input_files: give the raw-text or TFRecord files to pretrain on")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if not self.init_checkpoint and not (self.bert_config_file and self.vocab_file):
            raise ValueError("from scratch (no init_checkpoint) needs bert_config_file and vocab_file")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")
        for name in ("max_seq_length", "max_predictions_per_seq", "train_batch_size", "eval_batch_size",
                     "dupe_factor"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def _is_tfrecord(paths):
    kinds = {p.endswith(TFRECORD_SUFFIXES) for p in paths}
    if len(kinds) > 1:
        raise ValueError(f"mix of TFRecord and raw-text files: {paths}")
    return kinds.pop()


def build_model(run):
    """(model, encoder, tokenizer, config, vocab_file, lower_case, report):
    the pretraining model, from init_checkpoint or from scratch."""
    nsp = run.nsp and run.objective == "bert"
    if run.init_checkpoint:
        pretrained = checkpoints.load_pretrained(run.init_checkpoint, config_file=run.bert_config_file,
                                                 vocab_file=run.vocab_file, with_heads=run.objective == "bert",
                                                 nsp=nsp)
        encoder, config, vocab_file = pretrained.encoder, pretrained.config, pretrained.vocab_file
        lower_case, report = pretrained.lower_case, pretrained.report
        model = pretrained.pretrainer
    else:
        config = configs.BertConfig.from_json_file(run.bert_config_file)
        encoder = models.bert_encoder(config)
        vocab_file, lower_case, report = run.vocab_file, run.lower_case, None
        model = pretrainer_lib.bert_pretrainer(encoder, nsp=nsp) if run.objective == "bert" else None
    if run.objective == "electra":
        from kzoo.models.electra import electra_pretrainer

        model = electra_pretrainer(encoder, generator_num_layers=run.generator_num_layers or None,
                                   discriminator_weight=run.discriminator_weight, seed=run.seed)
    tokenizer = text.BertTokenizer(vocab_file, lower_case=lower_case)
    if tokenizer.vocab_size != config.vocab_size:
        raise ValueError(f"{vocab_file}: {tokenizer.vocab_size} entries, but the config has vocab_size "
                         f"{config.vocab_size}")
    return model, encoder, tokenizer, config, vocab_file, lower_case, report


def make_datasets(run, tokenizer, nsp, static=False):
    """(train dataset, eval dataset or None, number of training instances)."""
    masker = MLMMasker.from_tokenizer(tokenizer, masked_lm_prob=run.masked_lm_prob,
                                      max_predictions_per_seq=run.max_predictions_per_seq, seed=run.seed,
                                      count_special_tokens=True, whole_word_masking=run.whole_word_masking)
    eval_masker = MLMMasker.from_tokenizer(tokenizer, masked_lm_prob=run.masked_lm_prob,
                                           max_predictions_per_seq=run.max_predictions_per_seq,
                                           seed=run.seed + 1, count_special_tokens=True,
                                           whole_word_masking=run.whole_word_masking)
    paths = pretraining_data.expand_paths(run.input_files, "input_files")
    eval_paths = pretraining_data.expand_paths(run.eval_files, "eval_files") if run.eval_files else []
    common = dict(drop_remainder=static)
    if _is_tfrecord(paths):
        if eval_paths and not _is_tfrecord(eval_paths):
            raise ValueError("eval_files must be TFRecords too when input_files are")

        def records(files, batch_size, shuffle):
            return pretraining_data.pretraining_tfrecord_dataset(
                files, run.max_seq_length, run.max_predictions_per_seq, batch_size, nsp=nsp, shuffle=shuffle,
                seed=run.seed, **common)

        count = sum(1 for _ in pretraining_data.pretraining_tfrecord_dataset(
            paths, run.max_seq_length, run.max_predictions_per_seq, 1, nsp=nsp, shuffle=False))
        train = records(paths, run.train_batch_size, True)
        evaluation = records(eval_paths, run.eval_batch_size, False).cache() if eval_paths else None
        return train, evaluation, count

    documents = pretraining_data.read_documents(paths)
    if eval_paths:
        eval_documents = pretraining_data.read_documents(eval_paths)
    elif run.validation_fraction > 0:
        order = np.random.default_rng(run.seed).permutation(len(documents))
        held = max(1, int(round(len(documents) * run.validation_fraction)))
        if nsp:
            held = max(held, 2)  # a random next segment needs another document
        if len(documents) - held < (2 if nsp else 1):
            raise ValueError(f"{run.input_files}: {len(documents)} documents are too few to hold out "
                             f"validation_fraction={run.validation_fraction}; give eval_files")
        eval_documents = [documents[i] for i in sorted(order[:held])]
        documents = [documents[i] for i in sorted(order[held:])]
    else:
        eval_documents = []
    options = dict(max_seq_length=run.max_seq_length, short_seq_prob=run.short_seq_prob, nsp=nsp)
    instances = pretraining_data.create_instances(documents, tokenizer, dupe_factor=run.dupe_factor, seed=run.seed,
                                                  **options)
    train = pretraining_data.pretraining_dataset(instances, masker, run.train_batch_size, nsp=nsp, shuffle=True,
                                                 seed=run.seed, **common)
    evaluation = None
    if eval_documents:
        eval_instances = pretraining_data.create_instances(eval_documents, tokenizer, seed=run.seed + 1, **options)
        # Masked once and cached: every evaluation scores the same masked positions.
        evaluation = pretraining_data.pretraining_dataset(eval_instances, eval_masker, run.eval_batch_size, nsp=nsp,
                                                          shuffle=False, **common).cache()
    n = len(instances["input_word_ids"])
    logging.info("pretraining data: %d documents -> %d instances (%d held-out documents)", len(documents), n,
                 len(eval_documents))
    return train, evaluation, n


class SaveOfficialCheckpoint(keras.callbacks.Callback):
    """Writes `<folder>/bert_model.ckpt` (official names, atomically) after
    every epoch, so an interrupted run leaves its last complete checkpoint."""

    def __init__(self, model_to_save, folder):
        super().__init__()
        self.model_to_save = model_to_save
        self.folder = folder

    def on_epoch_end(self, epoch, logs=None):
        save_official_bert(self.model_to_save, os.path.join(self.folder, CHECKPOINT_NAME))


def run_pretraining(run):
    """Pretrains and writes the official checkpoint folder; returns a dict of
    results (held-out metrics before and after, history, paths)."""
    run.validate()
    keras.utils.set_random_seed(run.seed)
    nsp = run.nsp and run.objective == "bert"
    if run.objective == "electra" and run.nsp:
        logging.info("objective electra: no next-sentence prediction (nsp ignored)")
    strategy = run.make_strategy()
    run = run.for_this_worker(strategy)
    static = run.static(strategy, run.static_shapes)
    with run.model_scope(strategy):
        model, encoder, tokenizer, config, vocab_file, lower_case, report = build_model(run)
    if not nsp:  # nothing reads the pooled output: keep the pooler as loaded (and Keras quiet about it)
        for layer in encoder.layers:
            if layer.name == "pooler":
                layer.trainable = False
    train_ds, eval_ds, num_instances = make_datasets(run, tokenizer, nsp, static)
    if static:
        steps_per_epoch = num_instances // run.train_batch_size
    else:
        steps_per_epoch = math.ceil(num_instances / run.train_batch_size)
    if steps_per_epoch < 1:
        raise ValueError(f"{num_instances} training instances are fewer than one batch of {run.train_batch_size}")
    if run.num_train_steps > 0:
        total_steps, epochs = run.num_train_steps, 1
        train_ds = train_ds.repeat()
        fit_steps = run.num_train_steps
    else:
        total_steps, epochs, fit_steps = steps_per_epoch * run.num_train_epochs, run.num_train_epochs, None
        train_ds = data.with_num_batches(train_ds, steps_per_epoch)  # TFRecords hide the count

    with strategy.scope():
        optimizer = create_optimizer(run.learning_rate, total_steps, int(total_steps * run.warmup_proportion),
                                     weight_decay=run.weight_decay)
        if run.objective == "bert":
            pretrainer_lib.compile_pretrainer(model, optimizer, jit_compile=static)
        else:
            model.compile(optimizer=optimizer, jit_compile=static)

    kzoo_io.makedirs(run.model_dir)
    config.to_json_file(os.path.join(run.model_dir, "bert_config.json"))
    save_tokenizer(vocab_file, lower_case, run.model_dir)
    result = {"objective": run.objective, "nsp": nsp, "num_train_instances": num_instances,
              "total_steps": total_steps}
    if report is not None:
        result["init_report"] = {"loaded": len(report.loaded), "unused": report.unused, "missing": report.missing}
    if eval_ds is not None:
        result["eval_before"] = _evaluate(model, eval_ds)
        logging.info("held-out before training: %s", result["eval_before"])
    # ELECTRA keeps the discriminator (the encoder); its generator is a training device.
    to_save = model if run.objective == "bert" else encoder
    callbacks = [SaveOfficialCheckpoint(to_save, run.model_dir),
                 *standard_callbacks(run.model_dir, backup_steps=run.backup_steps, backup_dir=run.backup_dir())]
    start = time.time()
    history = model.fit(train_ds, epochs=epochs, steps_per_epoch=fit_steps, validation_data=eval_ds,
                        callbacks=callbacks, shuffle=False, verbose=run.verbose)
    result["train_seconds"] = time.time() - start
    result["history"] = {k: [float(v) for v in values] for k, values in history.history.items()}
    if eval_ds is not None:
        result["eval_after"] = _evaluate(model, eval_ds)
        logging.info("held-out after training: %s", result["eval_after"])
    result["checkpoint"] = save_official_bert(to_save, os.path.join(run.model_dir, CHECKPOINT_NAME))
    write_json_atomically(os.path.join(run.model_dir, "results.json"),
                          {k: v for k, v in result.items() if k != "model"})
    result["model"] = model
    return result


def _evaluate(model, dataset):
    return {k: float(v) for k, v in model.evaluate(dataset, verbose=0, return_dict=True).items()}
