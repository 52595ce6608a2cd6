"""Contrastive fine-tuning of sentence embeddings: read pairs -> build towers -> fit -> evaluate
retrieval -> save -> export.

Pairs come from a TSV/CSV/JSONL file (`kzoo.data.pairs.read_pairs`: anchor, positive, optional
hard negative) or from a SQuAD file (`squad_file`: each question with its paragraph, from the
articles `kzoo.tasks.retrieval.squad_retrieval_split` does not hold back, so the retrieval
evaluation on the held-back articles never sees a training paragraph). Batches never repeat a
text (`no_duplicate_batches`). The objective is `kzoo.models.dual_encoder`'s in-batch softmax
over scaled cosine similarities, with the whole global batch as negatives under every
`tf.distribute` strategy.
"""

import dataclasses
import os
import time

import keras
import numpy as np
from absl import logging

from kzoo import checkpoints, export, models, text
from kzoo import io as kzoo_io
from kzoo.data.pairs import no_duplicate_batches, pair_dataset, read_pairs
from kzoo.export.precision import check_serving_dtype
from kzoo.export.sentence import sentence_seq_length
from kzoo.models.dual_encoder import DualEncoder
from kzoo.tasks.retrieval import SPLIT_SEED, RetrievalEval, evaluate_retrieval, squad_retrieval_split, text_embedder
from kzoo.training.common import save_model, save_tokenizer, standard_callbacks, write_json_atomically
from kzoo.training.distribution import DistributionOptions
from kzoo.training.recipe import AdaptationOptions, new_variables, prepare_training, save_adaptation, serving_model

# Adaptation options that walk one encoder (they do not apply to two separate towers).
_ONE_ENCODER = ("freeze_layers", "feature_extraction", "gradual_unfreezing", "layerwise_lr_decay", "l2sp_alpha",
                "l2sp_beta", "adapter_type", "lora_rank")


@dataclasses.dataclass
class DualEncoderRun(AdaptationOptions, DistributionOptions):
    """What to fine-tune on which pairs.

    Attributes:
        train_file: pairs (TSV, CSV or JSONL; see `kzoo.data.pairs`); or
        squad_file: SQuAD JSON: (question, paragraph) pairs of the articles not held back by
            `eval_fraction` / `split_seed`, which are then the retrieval evaluation after training.
        format: tsv, csv or jsonl (None: from the extension).
        anchor_column, positive_column, negative_column: the pair file's columns (no negative
            column: in-batch negatives only).
        init_checkpoint: every source `load_pretrained` takes ("minilm", presets, folders).
        pooling, normalize: the embedding (None: as the checkpoint was trained; else mean,
            unnormalised). The loss always compares cosine similarities.
        max_seq_length: truncation in tokens, specials included (None: the checkpoint's, else 512).
        shared_towers: one encoder for both sides; else the positives (and negatives) get a
            copy of their own.
        scale: similarity scale of the softmax (sentence-transformers' default 20).
        symmetric: also the positive -> anchor direction.
        train_batch_size: global batch (the number of in-batch candidates).
        learning_rate, num_train_epochs, warmup_proportion: the AdamW schedule.
        eval_fraction, split_seed: SQuAD's held-back articles (`evaluate_retrieval`'s defaults).
        seed: the batch order, dropout and new weights.
        model_dir: TensorBoard logs (the loss; with squad_file the retrieval metrics before and after
            training under `logs/retrieval`), checkpoints, `model.keras` (the anchor tower; with separate
            towers also `positive_model.keras`), the tokenizer, `results.json`.
        export_dir: the embedding SavedModel's base path (`export_sentence_encoder`; separate
            towers: the positive tower at `<export_dir>_positive`); empty: no export.
        serving_dtype: the export's compute precision: "float32", or "bfloat16" (the encoder's
            projections in bfloat16, the rest in float32: `kzoo.export.precision`).
        verbose: Keras progress output.
        static_shapes: refused (the flag is shared by every command).
    """

    train_file: str = None
    squad_file: str = None
    format: str = None
    anchor_column: str = "anchor"
    positive_column: str = "positive"
    negative_column: str = None
    init_checkpoint: str = checkpoints.MINILM
    bert_config_file: str = None
    vocab_file: str = None
    pooling: str = None
    normalize: bool = None
    max_seq_length: int = None
    shared_towers: bool = True
    scale: float = 20.0
    symmetric: bool = False
    train_batch_size: int = 32
    learning_rate: float = 2e-5
    num_train_epochs: int = 1
    warmup_proportion: float = 0.1
    eval_fraction: float = 0.25
    split_seed: int = SPLIT_SEED
    seed: int = 42
    model_dir: str = os.path.join("runs", "dual_encoder")
    export_dir: str = os.path.join("savedmodels", "embeddings")
    serving_dtype: str = "float32"
    verbose: int = 2
    static_shapes: bool = False

    def check(self):
        self.validate()
        check_serving_dtype(self.serving_dtype)
        if self.static_shapes:
            raise ValueError("static_shapes: the dual encoder pads each batch to its longest text; static shapes "
                             "(and so TPUs) are not supported yet")
        if bool(self.train_file) == bool(self.squad_file):
            raise ValueError("give one of train_file (pairs) and squad_file")
        if self.train_batch_size < 2:
            raise ValueError(f"train_batch_size must be >= 2 (in-batch negatives), got {self.train_batch_size}")
        if not self.scale > 0:
            raise ValueError(f"scale must be positive, got {self.scale}")
        if not self.shared_towers:
            default = AdaptationOptions()
            changed = [name for name in _ONE_ENCODER if getattr(self, name) != getattr(default, name)]
            if changed:
                raise ValueError(f"{', '.join(changed)}: these adaptation options apply to shared towers only")


def read_training_pairs(run):
    """(anchors, positives, negatives or None, description)."""
    if run.squad_file:
        split = squad_retrieval_split(run.squad_file, run.eval_fraction, run.split_seed)
        if not split.train_pairs:
            raise ValueError(f"{run.squad_file}: eval_fraction {run.eval_fraction} leaves no training articles")
        questions, paragraphs = zip(*split.train_pairs)
        return list(questions), list(paragraphs), None, (f"{len(split.train_pairs)} (question, paragraph) pairs of "
                                                          f"{len(split.train_titles)} SQuAD articles")
    pairs = read_pairs(run.train_file, run.format, run.anchor_column, run.positive_column, run.negative_column)
    return pairs.anchors, pairs.positives, pairs.negatives, f"{len(pairs)} pairs from {run.train_file}"


def run_dual_encoder(run):
    """Fine-tunes, evaluates (SQuAD retrieval before and after, with `squad_file`), saves and exports;
    returns a dict of results."""
    keras.utils.set_random_seed(run.seed)
    run.check()
    anchors, positives, negatives, description = read_training_pairs(run)
    logging.info("dual encoder: %s", description)
    strategy = run.make_strategy()
    run = run.for_this_worker(strategy)
    with run.model_scope(strategy):
        pretrained = checkpoints.load_pretrained(run.init_checkpoint, config_file=run.bert_config_file,
                                                 vocab_file=run.vocab_file, **run.encoder_kwargs())
        anchor_model = models.sentence_encoder(pretrained, pooling=run.pooling, normalize=run.normalize,
                                               name="anchor_encoder" if not run.shared_towers else "sentence_encoder")
        positive_model = None
        if not run.shared_towers:
            second = checkpoints.load_pretrained(run.init_checkpoint, config_file=run.bert_config_file,
                                                 vocab_file=run.vocab_file)
            pool = anchor_model.get_layer("pooling")
            positive_model = models.sentence_encoder(second.encoder, pooling=pool.mode, normalize=pool.normalize,
                                                     max_seq_length=pool.max_seq_length, name="positive_encoder")
    length = sentence_seq_length(anchor_model, run.max_seq_length)
    tokenizer = pretrained.tokenizer
    packer = text.BertPacker.from_tokenizer(tokenizer, length, dynamic_length=True)

    columns = [anchors, positives] + ([negatives] if negatives is not None else [])
    rows = list(zip(*columns))
    # Every epoch its own seeded order of duplicate-free batches, one dataset for the whole run.
    orders = [no_duplicate_batches(rows, run.train_batch_size, np.random.default_rng(run.seed + epoch))
              for epoch in range(run.num_train_epochs)]
    steps = min(len(order) for order in orders) // run.train_batch_size
    if not steps:
        raise ValueError(f"{description}: not one batch of {run.train_batch_size} pairs without a repeated text")
    logging.info("%d batches of %d pairs per epoch (%d pairs left out of batches with a repeated text)", steps,
                 run.train_batch_size, len(rows) - steps * run.train_batch_size)
    order = np.concatenate([order[:steps * run.train_batch_size] for order in orders])
    train_ds = pair_dataset(anchors, positives, negatives, tokenizer, packer, run.train_batch_size, order=order)

    with strategy.scope():
        model = DualEncoder(anchor_model, positive_model, scale=run.scale, symmetric=run.symmetric)
        total = steps * run.num_train_epochs
        optimizer, callbacks = prepare_training(
            model, run, run.learning_rate, total, int(total * run.warmup_proportion),
            os.path.join(run.model_dir, "logs"),
            added=new_variables(pretrained.encoder, pretrained.report) if run.shared_towers else ())
        model.compile(optimizer=optimizer)

    before = None
    if run.squad_file:
        before = _retrieval(run, anchor_model, positive_model, tokenizer, packer)
        logging.info("retrieval before training: %s", before["metrics"])
    kzoo_io.makedirs(run.model_dir)
    start = time.time()
    history = model.fit(train_ds, epochs=run.num_train_epochs, steps_per_epoch=steps, shuffle=False,
                        callbacks=callbacks + standard_callbacks(run.model_dir, backup_steps=run.backup_steps,
                                                                 backup_dir=run.backup_dir()),
                        verbose=run.verbose)
    train_seconds = time.time() - start
    after = _retrieval(run, anchor_model, positive_model, tokenizer, packer) if run.squad_file else None
    if after:
        logging.info("retrieval after %.0f s of training: %s", train_seconds, after["metrics"])
        _log_retrieval(os.path.join(run.model_dir, "logs", "retrieval"), {0: before, total: after})

    save_model(anchor_model, run.model_dir)
    if positive_model is not None:
        with kzoo_io.atomic_path(kzoo_io.join(run.model_dir, "positive_model.keras")) as tmp:
            positive_model.save(tmp)
    save_tokenizer(tokenizer, run.model_dir)
    result = {"pairs": description, "num_pairs": len(rows), "steps_per_epoch": steps,
              "train_seconds": train_seconds, "history": history.history, "retrieval_before": before,
              "retrieval_after": after, "export_path": None, "positive_export_path": None,
              "adaptation_weights": save_adaptation(model, run, run.model_dir) if run.shared_towers else None,
              "max_seq_length": length}
    if run.export_dir:
        result["export_path"] = export.export_sentence_encoder(serving_model(anchor_model, run), tokenizer,
                                                               run.export_dir, seq_length=length,
                                                               compute_dtype=run.serving_dtype)
        logging.info("exported the embedding SavedModel to %s", result["export_path"])
        if positive_model is not None:
            result["positive_export_path"] = export.export_sentence_encoder(
                positive_model, tokenizer, f"{os.path.normpath(run.export_dir)}_positive", seq_length=length,
                compute_dtype=run.serving_dtype)
    write_json_atomically(kzoo_io.join(run.model_dir, "results.json"),
                          {k: v for k, v in result.items() if k != "history"} | {"history": {
                              k: [float(x) for x in v] for k, v in history.history.items()}})
    result["model"] = model
    return result


def _log_retrieval(log_dir, results):
    """The retrieval metrics as TensorBoard scalars (`retrieval/recall@1`, ...) at each optimizer step."""
    import tensorflow as tf

    writer = tf.summary.create_file_writer(log_dir)
    with writer.as_default():
        for step, result in results.items():
            for name, value in result["metrics"].items():
                if name != "queries":
                    tf.summary.scalar(f"retrieval/{name}", value, step=step)
    writer.close()


def _retrieval(run, anchor_model, positive_model, tokenizer, packer):
    """SQuAD retrieval of the held-back articles with the towers as they are now (questions
    through the anchor tower, paragraphs through the positive tower)."""
    query_fn = text_embedder(anchor_model, tokenizer, packer)
    corpus_fn = text_embedder(positive_model, tokenizer, packer) if positive_model is not None else query_fn
    evaluation = RetrievalEval(squad_file=run.squad_file, eval_fraction=run.eval_fraction,
                               split_seed=run.split_seed)
    return evaluate_retrieval(evaluation, embedder=(query_fn, "the dual encoder"), corpus_embedder=corpus_fn)
