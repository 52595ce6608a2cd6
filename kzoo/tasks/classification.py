"""Fine-tune a pretrained encoder as a text classifier, evaluate, export."""

import dataclasses
import os
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from kzoo import io as kzoo_io
from kzoo import checkpoints, data, export, layers, models, text
from kzoo.export.precision import check_serving_dtype
from kzoo.data.masking import MLMMasker
from kzoo.models import distillation, multitask
from kzoo.training.common import load_tokenizer, save_model, save_tokenizer, standard_callbacks
from kzoo.training.freezing import count_parameters, layer_groups
from kzoo.training.losses import distillation_losses
from kzoo.training.metrics import task_metrics
from kzoo.training.recipe import AdaptationOptions, new_variables, prepare_training, save_adaptation, serving_model
from kzoo.training.distribution import DistributionOptions


@dataclasses.dataclass
class ClassifierRun(AdaptationOptions, DistributionOptions):
    """What to fine-tune on what; the defaults are the quickstart.

    The adaptation fields (adapters, LoRA, freezing, schedules, layer-wise
    learning rates, L2-SP) are those of `kzoo.training.AdaptationOptions`;
    strategy, precision and backups those of
    `kzoo.training.DistributionOptions`.

    Attributes:
        task: sst2, cola, mrpc, trec, or a generic format: tsv, csv, jsonl
            (see `kzoo.data.TASKS`); it fixes the reader and the metrics.
        train_file: labelled training file (default: the shipped intents).
        eval_file: labelled evaluation file; without one, a seeded stratified
            `validation_fraction` of the training file is held out.
        predict_file: file to predict (labels not needed).
        output_predictions: predictions TSV (default
            `<model_dir>/predictions.tsv`).
        text_column, text_b_column, label_column, id_column: override the
            task's field names (generic formats need them unless "text" and
            "label").
        fine_labels: TREC's 50 fine classes instead of the 6 coarse ones.
        skip_malformed: drop malformed rows (counted in the log) instead of
            failing.
        init_checkpoint: "minilm" (the pip package), an official prefix or
            folder, or a HF folder.
        bert_config_file, vocab_file: override the files beside the weights.
        pooling: what the head reads (`kzoo.models.bert_classifier`):
            "pooler" (the encoder's pooled output), "cls", "mean" or "max".
            None: what the checkpoint was trained for, the pooling of a
            sentence-transformers folder (all-MiniLM-L6-v2: mean), else
            "pooler".
        max_seq_length: longest packed input.
        train_batch_size, eval_batch_size: global batch sizes.
        learning_rate: peak AdamW learning rate.
        num_train_epochs: epochs over the training split.
        warmup_proportion: fraction of steps spent warming up.
        validation_fraction: share held out when there is no eval_file, in
            [0, 1); 0 trains on the whole training file (and evaluates only
            on eval_file when one is given, else not at all).
        bucket_by_length: batch training examples of similar length together
            (with per-batch dynamic padding).
        static_shapes: pad everything to max_seq_length, drop the last
            partial training batch and compile the train step with XLA
            (`jit_compile`; the TPU path, automatic under TPUStrategy);
            disables bucketing.
        seed: seeds the split (unless split_seed), shuffling, dropout and the
            head's init.
        split_seed: seeds the held-out validation split alone (None: seed);
            a hyperparameter search fixes it so that every trial, whatever
            its seed, is scored on the same examples.
        dropout: dropout rate before the classification layer.
        model_dir: TensorBoard logs, per-epoch weight checkpoints, the final
            `model.keras` and `labels.json`.
        export_dir: the SavedModel base path; empty skips the export.
        serving_dtype: the export's compute precision: "float32", or "bfloat16" (the encoder's
            projections in bfloat16, the rest in float32: `kzoo.export.precision`).
        predict_text: a raw sentence sent through the exported signature.
        verbose: Keras progress output (1: bar, 2: a line per epoch).
        aux_mlm_weight: lambda of an auxiliary masked-LM loss on the task's
            own text (loss = task + lambda * MLM; 0: off). Each batch is also
            encoded with 15% of its wordpieces masked (re-drawn every epoch).
        masked_lm_prob, max_predictions_per_seq: masking rate and cap of the
            auxiliary MLM.
        teacher_model_dir: distil from the classifier fine-tuned in this
            model_dir (its `model.keras`): the student starts from the
            teacher's lowest `student_num_layers` blocks and learns from the
            teacher's soft targets mixed with the hard labels.
        student_num_layers: student depth (0: as deep as the teacher).
        distill_temperature: softmax temperature of the soft targets.
        distill_alpha: weight of the soft-target loss (1 - alpha on the labels).
    """

    task: str = "tsv"
    train_file: str = data.EXAMPLE_INTENTS
    eval_file: str = None
    predict_file: str = None
    output_predictions: str = None
    text_column: str = None
    text_b_column: str = None
    label_column: str = None
    id_column: str = None
    fine_labels: bool = False
    skip_malformed: bool = False
    init_checkpoint: str = checkpoints.MINILM
    bert_config_file: str = None
    vocab_file: str = None
    pooling: str = None
    max_seq_length: int = 64
    train_batch_size: int = 32
    eval_batch_size: int = 64
    learning_rate: float = 2e-4
    num_train_epochs: int = 6
    warmup_proportion: float = 0.1
    validation_fraction: float = 0.2
    bucket_by_length: bool = True
    static_shapes: bool = False
    seed: int = 42
    split_seed: int = None
    dropout: float = 0.1
    model_dir: str = os.path.join("runs", "intents")
    export_dir: str = os.path.join("savedmodels", "intents")
    serving_dtype: str = "float32"
    predict_text: str = "wake me up at 6:30 tomorrow"
    verbose: int = 1
    aux_mlm_weight: float = 0.0
    masked_lm_prob: float = 0.15
    max_predictions_per_seq: int = 20
    teacher_model_dir: str = None
    student_num_layers: int = 0
    distill_temperature: float = 2.0
    distill_alpha: float = 0.5


BUCKETS = (8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384)


def read_inputs(run):
    """Reads and checks every input file before any training starts.

    Returns (train, evaluation, predict, label_names); evaluation is None when
    there is no eval_file and validation_fraction is 0, predict when there is
    no predict_file."""
    columns = dict(text_column=run.text_column, text_b_column=run.text_b_column, label_column=run.label_column,
                   id_column=run.id_column, fine_labels=run.fine_labels, skip_malformed=run.skip_malformed)
    if not 0.0 <= run.validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1) (0: train on the whole training file), "
                         f"got {run.validation_fraction}")
    train = data.read_task(run.task, run.train_file, **columns)
    label_names = sorted(set(train.labels))
    if len(label_names) < 2:
        raise ValueError(f"{run.train_file}: need at least two labels, found {label_names}")
    evaluation = None
    if run.eval_file:
        evaluation = data.read_task(run.task, run.eval_file, **columns)
        evaluation.label_ids(label_names)  # unknown labels fail here, naming file and line
    elif run.validation_fraction > 0:
        split_seed = run.seed if run.split_seed is None else run.split_seed
        train_idx, eval_idx = data.stratified_split(train.label_ids(label_names), run.validation_fraction, split_seed)
        train, evaluation = train.subset(train_idx), train.subset(eval_idx)
    predict = data.read_task(run.task, run.predict_file, labelled=False, **columns) if run.predict_file else None
    return train, evaluation, predict, label_names


def checkpoint_pooling(pooling, pretrained):
    """`pooling` when given, else what the checkpoint was trained for: a sentence-transformers
    folder's pooling, else the encoder's pooler."""
    if pooling is None:
        pooling = pretrained.sentence.pooling if pretrained.sentence else "pooler"
        logging.info("pooling: %s (%s)", pooling, "the checkpoint's sentence-transformers pooling"
                     if pretrained.sentence else "the encoder's pooled output")
    if pooling not in layers.POOLING_MODES:
        raise ValueError(f"pooling must be one of {list(layers.POOLING_MODES)}, got {pooling!r}")
    return pooling


def run_classifier(run):
    """Fine-tunes, evaluates, predicts and exports; returns a dict of results."""
    keras.utils.set_random_seed(run.seed)
    run.validate()
    check_serving_dtype(run.serving_dtype)
    if run.aux_mlm_weight and run.teacher_model_dir:
        raise ValueError("aux_mlm_weight and teacher_model_dir: use one of the two extra training signals")
    train, evaluation, predict, label_names = read_inputs(run)
    spec = data.TASKS[run.task]
    logging.info("%s %s: %d train / %d evaluation examples, %d labels %s", run.task, run.train_file, len(train),
                 len(evaluation) if evaluation else 0, len(label_names), label_names)
    if evaluation is None:
        logging.info("validation_fraction=0 and no eval_file: training on all %d examples, no evaluation",
                     len(train))

    strategy = run.make_strategy()
    run = run.for_this_worker(strategy)
    static = run.static(strategy, run.static_shapes)
    with run.model_scope(strategy):
        pretrained = checkpoints.load_pretrained(run.init_checkpoint, config_file=run.bert_config_file,
                                                 vocab_file=run.vocab_file, **run.encoder_kwargs())
        teacher = load_teacher(run.teacher_model_dir, label_names) if run.teacher_model_dir else None
        if teacher is not None:
            model = distillation.student_from_teacher(teacher, run.student_num_layers or _num_blocks(teacher))
        else:
            model = models.bert_classifier(pretrained.encoder, num_classes=len(label_names), dropout=run.dropout,
                                           pooling=checkpoint_pooling(run.pooling, pretrained))
    tokenizer = pretrained.tokenizer
    packer = text.BertPacker.from_tokenizer(tokenizer, run.max_seq_length, dynamic_length=not static)
    buckets = None if static or not run.bucket_by_length else [
        b for b in BUCKETS if b < run.max_seq_length]
    lengths = None
    if buckets:
        lengths = sum(data.token_lengths(c, tokenizer) for c in (train.texts, train.texts_b) if c is not None)
    steps_per_epoch = data.num_batches(lengths if buckets else np.zeros(len(train)), run.train_batch_size, buckets,
                                       drop_remainder=static)
    steps = steps_per_epoch * run.num_train_epochs

    def dataset(examples, labels, batch_size, training):
        return data.classification_dataset(
            examples.texts, labels, tokenizer, packer, batch_size, texts_b=examples.texts_b, shuffle=training,
            seed=run.seed, drop_remainder=training and static,
            bucket_boundaries=buckets if training else None, lengths=lengths if training else None)

    metrics = task_metrics(spec.metrics, len(label_names))
    task_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    train_labels = train.label_ids(label_names)
    eval_labels = evaluation.label_ids(label_names) if evaluation else None
    with strategy.scope():
        train_model, loss, loss_weights = model, task_loss, None
        if run.aux_mlm_weight:
            train_model = multitask.with_auxiliary_mlm(model)
            (mlm_loss, loss_weights) = multitask.auxiliary_mlm_losses(run.aux_mlm_weight)
            loss = dict(mlm_loss, logits=task_loss)
            metrics = {"logits": metrics}
        elif teacher is not None:
            train_model = distillation.distillation_model(model)
            loss, loss_weights = distillation_losses(run.distill_temperature, run.distill_alpha)
            metrics = {"logits": metrics}
        optimizer, adaptation_callbacks = prepare_training(
            model, run, run.learning_rate, steps, int(steps * run.warmup_proportion),
            os.path.join(run.model_dir, "logs"), added=new_variables(pretrained.encoder, pretrained.report))
        train_model.compile(optimizer=optimizer, loss=loss, loss_weights=loss_weights, metrics=metrics,
                            jit_compile=static)
    trainable_parameters, total_parameters = count_parameters(model)

    if teacher is not None:  # soft targets, computed once, in example order
        def soft(examples, labels):
            logits = distillation.teacher_logits(teacher, dataset(examples, None, run.eval_batch_size, False))
            return {"logits": np.asarray(labels, "int32"), "distill": logits.astype("float32")}
        train_labels = soft(train, train_labels)
        eval_labels = soft(evaluation, eval_labels) if evaluation else None
    train_ds = dataset(train, train_labels, run.train_batch_size, training=True)
    eval_ds = dataset(evaluation, eval_labels, run.eval_batch_size, training=False) if evaluation else None
    if run.aux_mlm_weight:
        masker = MLMMasker(tokenizer.vocab_size, tokenizer.mask_token_id,
                           [tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id],
                           masked_lm_prob=run.masked_lm_prob, max_predictions_per_seq=run.max_predictions_per_seq,
                           seed=run.seed)
        train_ds = multitask.auxiliary_mlm_dataset(train_ds, masker)
        eval_ds = multitask.auxiliary_mlm_dataset(eval_ds, masker) if eval_ds else None

    kzoo_io.makedirs(run.model_dir)
    start = time.time()
    history = train_model.fit(train_ds, validation_data=eval_ds, epochs=run.num_train_epochs,
                              callbacks=adaptation_callbacks + standard_callbacks(
                                  run.model_dir, backup_steps=run.backup_steps, backup_dir=run.backup_dir()),
                              shuffle=False,  # the dataset reshuffles itself every epoch
                              verbose=run.verbose)
    train_seconds = time.time() - start
    if train_model is not model:
        model.compile(loss=task_loss, metrics=task_metrics(spec.metrics, len(label_names)))
    metrics = {}
    if evaluation and train_model is model:  # fit's last epoch scored the final weights on the evaluation data
        metrics = {name[len("val_"):]: float(values[-1]) for name, values in history.history.items()
                   if name.startswith("val_") and values}
    if evaluation and not metrics:  # another training model, or a resumed run with no epoch left
        plain_eval_ds = dataset(evaluation, evaluation.label_ids(label_names), run.eval_batch_size, training=False)
        metrics = model.evaluate(plain_eval_ds, verbose=0, return_dict=True)
        metrics = {name: float(value) for name, value in metrics.items()}
        logging.info("evaluation after %.0f s of training (%d examples): %s", train_seconds, len(evaluation),
                     metrics)
    save_model(model, run.model_dir, labels=label_names)
    save_tokenizer(tokenizer, run.model_dir)

    result = {
        "task": run.task,
        "metrics": metrics,
        "headline_metric": spec.metrics[0],
        "num_train": len(train),
        "num_eval": len(evaluation) if evaluation else 0,
        "train_seconds": train_seconds,
        "history": history.history,
        "label_names": label_names,
        "export_path": None,
        "adaptation_weights": save_adaptation(model, run, run.model_dir),
        "trainable_parameters": trainable_parameters,  # at the start (gradual unfreezing: all of them)
        "total_parameters": total_parameters,
        "model": model,
    }
    if predict is not None:
        path = run.output_predictions or os.path.join(run.model_dir, "predictions.tsv")
        logits = model.predict(dataset(predict, None, run.eval_batch_size, training=False), verbose=0)
        write_predictions(path, predict.ids, label_names, tf.nn.softmax(logits).numpy())
        result["predictions_file"] = path
    if run.export_dir:
        path = export.export_classifier(serving_model(model, run), tokenizer, label_names, run.export_dir,
                                        run.max_seq_length, pair=train.texts_b is not None,
                                        compute_dtype=run.serving_dtype)
        result["export_path"] = path
        logging.info("exported SavedModel to %s", path)
        if run.predict_text and train.texts_b is None:
            serving = tf.saved_model.load(path).signatures["serving_default"]
            out = serving(text=tf.constant([run.predict_text]))
            result["prediction"] = {
                "text": run.predict_text,
                "label": out["labels"][0].numpy().decode(),
                "probability": float(out["probabilities"][0, out["label_ids"][0]]),
            }
    return result


def _num_blocks(classifier):
    return sum(name.startswith("layer_") for name in layer_groups(classifier))


def load_teacher(model_dir, label_names):
    """The fine-tuned classifier saved in `model_dir` by `run_classifier`;
    its labels must be the run's."""
    path = os.path.join(model_dir, "model.keras")
    labels_path = os.path.join(model_dir, "labels.json")
    for p in (path, labels_path):
        if not kzoo_io.exists(p):
            raise ValueError(f"teacher_model_dir: {p} not found (a model_dir written by run_classifier)")
    teacher_labels = kzoo_io.read_json(labels_path)
    if list(teacher_labels) != list(label_names):
        raise ValueError(f"{labels_path}: the teacher's labels {teacher_labels} differ from this task's {label_names}")
    teacher = keras.models.load_model(path, compile=False)
    teacher.trainable = False
    return teacher


def write_predictions(path, ids, label_names, probabilities):
    """TSV: header, then `id`, predicted `label`, one `prob_<label>` per class,
    in input order; written to a temporary file and renamed into place."""
    lines = ["\t".join(["id", "label"] + [f"prob_{name}" for name in label_names])]
    for example_id, row in zip(ids, probabilities):
        lines.append("\t".join([str(example_id), label_names[int(np.argmax(row))]] + [f"{p:.6f}" for p in row]))
    kzoo_io.write_text(path, "\n".join(lines) + "\n")
    return path


def load_classifier_dir(model_dir):
    """(model, labels) of one `run_classifier` model_dir, LoRA folded in."""
    for name in ("model.keras", "labels.json"):
        if not kzoo_io.exists(os.path.join(model_dir, name)):
            raise ValueError(f"{os.path.join(model_dir, name)} not found (a --model_dir of kzoo-run-classifier)")
    model = keras.models.load_model(os.path.join(model_dir, "model.keras"), compile=False)
    if any(isinstance(l, layers.TransformerEncoderBlock) and l.lora_rank
           for l in model._flatten_layers(include_self=False, recursive=True)):
        model = models.merge_lora(model)
    return model, kzoo_io.read_json(os.path.join(model_dir, "labels.json"))


def _same_tokenizer(a, b):
    """Whether two tokenizers give the same ids: same class and options, same vocabulary / model."""
    def config(tokenizer):
        return {k: v for k, v in tokenizer.get_config().items() if k != "name"}
    return type(a) is type(b) and config(a) == config(b)


def load_classifier_dirs(model_dirs, weights=None):
    """(model, tokenizer, labels) of one `run_classifier` model_dir, or of the probability-averaging ensemble of
    several (`kzoo.models.classifier_ensemble`; they must share labels and tokenizer)."""
    members, labels, tokenizer = [], None, None
    for i, model_dir in enumerate(model_dirs):
        model, member_labels = load_classifier_dir(model_dir)
        if labels is not None and member_labels != labels:
            raise ValueError(f"{model_dir}: labels {member_labels} differ from {model_dirs[0]}'s {labels}")
        member_tokenizer = load_tokenizer(model_dir)
        if i and not _same_tokenizer(member_tokenizer, tokenizer):
            raise ValueError(f"{model_dir}: its tokenizer ({type(member_tokenizer).__name__}, kzoo_tokenizer.json and its "
                             f"files) differs from {model_dirs[0]}'s; members must share one tokenizer")
        tokenizer = tokenizer if i else member_tokenizer
        labels = member_labels
        members.append(model)
    if len(members) > 1:
        for i, model in enumerate(members):
            model.name = f"member_{i}"  # Keras needs distinct layer names
        return models.classifier_ensemble(members, weights=weights), tokenizer, labels
    return members[0], tokenizer, labels


def export_classifier_dirs(model_dirs, export_dir, weights=None, max_seq_length=128, pair=False,
                          serving_dtype=None, xla_lengths=None):
    """Exports one `run_classifier` model_dir as a raw-text SavedModel, or the probability-averaging ensemble of
    several (`load_classifier_dirs`); returns the version path under `export_dir`."""
    model, tokenizer, labels = load_classifier_dirs(model_dirs, weights)
    return export.export_classifier(model, tokenizer, labels, export_dir, max_seq_length, pair=pair,
                                    compute_dtype=serving_dtype, xla_lengths=xla_lengths)
