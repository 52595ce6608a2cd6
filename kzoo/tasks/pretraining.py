"""Pretrain, or continue pretraining, an encoder of any kzoo family on raw text.

The workflow of google-research/bert's `create_pretraining_data.py` +
`run_pretraining.py` in one call: documents of raw text (one sentence per
line, a blank line between documents) become sentence pairs (or single
segments, RoBERTa-style), masked on the fly in tf.data, and train a
`bert_pretrainer` (masked LM + a sentence-pair head) or ELECTRA's
replaced-token detection.

Families (`init_checkpoint` of any family `kzoo.checkpoints.load_pretrained`
reads; its tokenizer, packer, special ids and word-start convention are used):

| family | objective "bert" | pair head (`nsp`) | output folder |
|---|---|---|---|
| BERT | MLM (+ NSP) | next-sentence prediction | official: bert_config.json, bert_model.ckpt.* (cls/*) |
| ALBERT | MLM (+ SOP) | sentence-order prediction (google-research/albert's pairs: A and B swapped half of the time), on the checkpoint's SOP head | official: albert_config.json, bert_model.ckpt.* (ALBERT's names) |
| RoBERTa, XLM-R, DistilBERT | MLM only (single segments, `<s> A </s>` / `[CLS] A [SEP]`; `nsp` is ignored, with a log line) | none | Hugging Face: config.json, model.safetensors (the init folder's weight names) |
| ELECTRA | refused: use objective "electra" | - | official, generator and heads included |

With objective "electra", an ELECTRA checkpoint continues with its own
generator when it has one (official checkpoints; an HF ElectraForPreTraining
folder holds only the discriminator and its head, so the generator starts
new, sized by `generator_num_layers`); another family's encoder gets a new
generator, and only the encoder (discriminator) is saved, as before.

Every output folder also holds the tokenizer (`kzoo.training.common.
save_tokenizer`: the family's files and `kzoo_tokenizer.json`, which
`load_tokenizer` reads) and a `tokenizer_config.json` with the casing options,
so `kzoo.checkpoints.load_pretrained(model_dir)`, `load_masked_lm` and the
fine-tuning commands read it back. From scratch (`bert_config_file` +
`vocab_file`) is WordPiece only; SentencePiece / BPE tokenizer files from
scratch are not supported yet.
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
from kzoo.checkpoints import mapping
from kzoo.checkpoints.hf import weights_file
from kzoo.checkpoints.official import CHECKPOINT_NAME, save_official_bert
from kzoo.data import pretraining as pretraining_data
from kzoo.data.masking import MLMMasker
from kzoo.models import pretrainer as pretrainer_lib
from kzoo.text.family import WORDPIECE_FAMILIES
from kzoo.training.common import save_tokenizer, standard_callbacks, write_json_atomically
from kzoo.training.optimization import create_optimizer
from kzoo.training.distribution import DistributionOptions

OBJECTIVES = ("bert", "electra")
TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords")
# Families pretrained with masked LM only (no sentence-pair head), saved as Hugging Face folders.
MLM_ONLY_FAMILIES = ("roberta", "xlm_roberta", "distilbert", "deberta_v2")
HF_WEIGHTS = "model.safetensors"


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
        init_checkpoint: official folder / prefix, HF folder (BERT, ALBERT,
            ELECTRA, RoBERTa, XLM-R, DistilBERT), preset or "minilm" to
            continue from (its pretraining heads too, when it has them; see
            the module docstring); empty to start from scratch (then
            `bert_config_file` and `vocab_file`).
        bert_config_file, vocab_file: the model's config and WordPiece
            vocabulary (override those beside init_checkpoint; `vocab_file`
            only for the WordPiece families).
        lower_case: from scratch: whether the vocabulary is uncased.
        objective: "bert" (masked LM, + the pair head with `nsp`) or
            "electra" (replaced-token detection with a small generator sharing
            the embeddings; no pair head).
        nsp: the sentence-pair objective: next-sentence prediction, for
            ALBERT sentence-order prediction (False: RoBERTa-style MLM only,
            single segments). Ignored (MLM only) for RoBERTa, XLM-R and
            DistilBERT.
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


@dataclasses.dataclass
class BuiltModel:
    """What `build_model` returns."""

    model: object  # BertPretrainer or ElectraPretrainer
    encoder: object
    tokenizer: object
    config: configs.BertConfig
    family: str
    pair: bool  # a sentence-pair head trains (NSP; for ALBERT SOP)
    sop: bool  # the pairs are ALBERT's sentence-order ones
    report: object = None  # LoadReport of init_checkpoint
    pretrained: object = None  # the `Pretrained` of init_checkpoint

    def __iter__(self):  # the tuple earlier versions returned
        vocab_file = self.pretrained.vocab_file if self.pretrained is not None else None
        lower_case = getattr(self.tokenizer, "lower_case", None)
        return iter((self.model, self.encoder, self.tokenizer, self.config, vocab_file, lower_case, self.report))


def _copy_weights(source_layer, target_layer):
    target_layer.set_weights(source_layer.get_weights())


def _new_paths(layer):
    return [v.path for v in layer.weights]


def _pair_head(run, family):
    """(pair head trains, pairs are sentence-order) for a family, with a log line when `nsp` is
    overruled or means SOP."""
    if not (run.nsp and run.objective == "bert"):
        return False, False
    if family in MLM_ONLY_FAMILIES:
        logging.info("%s was pretrained with masked LM only: continuing with masked LM only, single segments "
                     "(nsp ignored)", family)
        return False, False
    if family == "albert":
        logging.info("albert: the pair objective is sentence-order prediction (ALBERT's SOP: consecutive "
                     "segments, swapped half of the time) on the checkpoint's sentence-order head")
        return True, True
    return True, False


def _bert_objective(run, pretrained):
    """The BertPretrainer of a loaded checkpoint, its pair head as the family and `nsp` want."""
    family, encoder = pretrained.family, pretrained.encoder
    if family == "electra":
        raise ValueError(f"{run.init_checkpoint}: an ELECTRA checkpoint continues with objective='electra' (its "
                         "generator and discriminator heads); masked LM on ELECTRA's discriminator is not offered")
    pair, sop = _pair_head(run, family)
    model, report = pretrained.pretrainer, pretrained.report
    if model.nsp != pair:  # the checkpoint has a pair head we drop, or lacks one we add
        rebuilt = pretrainer_lib.bert_pretrainer(encoder, nsp=pair)
        _copy_weights(model.masked_lm, rebuilt.masked_lm)
        if pair:
            added = _new_paths(rebuilt.next_sentence)
            report.missing = list(report.missing) + [p for p in added if p not in report.missing]
            logging.info("%s has no %s head: a new one is trained", run.init_checkpoint,
                         "sentence-order" if sop else "next-sentence")
        model = rebuilt
    return model, pair, sop


def _electra_objective(run, pretrained):
    """The ElectraPretrainer: an ELECTRA checkpoint's own (generator and heads) when it has a
    generator, else a new generator (ELECTRA's discriminator head kept when loaded)."""
    encoder = pretrained.encoder
    options = dict(generator_num_layers=run.generator_num_layers or None,
                   discriminator_weight=run.discriminator_weight, seed=run.seed)
    if pretrained.family != "electra":
        from kzoo.models.electra import electra_pretrainer

        return electra_pretrainer(encoder, **options)
    model = pretrained.pretrainer
    missing = set(pretrained.report.missing)
    if model.generator_head.output_bias.path not in missing:
        model.discriminator_weight = float(run.discriminator_weight)
        if run.generator_num_layers:
            logging.info("generator_num_layers=%d ignored: the checkpoint's generator (%d layers) continues",
                         run.generator_num_layers, model.generator_num_layers)
        return model
    from kzoo.models.electra import electra_pretrainer

    logging.info("%s holds no ELECTRA generator (a Hugging Face ElectraForPreTraining folder has only the "
                 "discriminator): a new generator is trained", run.init_checkpoint)
    rebuilt = electra_pretrainer(encoder, **options)
    if not missing.intersection(_new_paths(model.rtd_dense) + _new_paths(model.rtd_logit)):
        _copy_weights(model.rtd_dense, rebuilt.rtd_dense)
        _copy_weights(model.rtd_logit, rebuilt.rtd_logit)
    return rebuilt


def build_model(run):
    """The pretraining model, from init_checkpoint (any family) or from scratch (BERT,
    WordPiece), as a `BuiltModel` (which also unpacks as the earlier tuple `(model, encoder,
    tokenizer, config, vocab_file, lower_case, report)`)."""
    if run.init_checkpoint:
        pretrained = checkpoints.load_pretrained(run.init_checkpoint, config_file=run.bert_config_file,
                                                 vocab_file=run.vocab_file, with_heads=True)
        family, encoder, config = pretrained.family, pretrained.encoder, pretrained.config
        if run.vocab_file and family not in WORDPIECE_FAMILIES:
            raise ValueError(f"vocab_file {run.vocab_file}: a WordPiece vocabulary, but {run.init_checkpoint} is a "
                             f"{family} checkpoint, whose tokenizer comes from its own folder's files")
        if run.objective == "bert":
            model, pair, sop = _bert_objective(run, pretrained)
        else:
            model, pair, sop = _electra_objective(run, pretrained), False, False
        tokenizer, report = pretrained.tokenizer, pretrained.report
    else:
        config = configs.BertConfig.from_json_file(run.bert_config_file)
        family = config.family
        if family not in WORDPIECE_FAMILIES:
            raise ValueError(f"{run.bert_config_file}: a {family} config; from scratch kzoo pretrains the WordPiece "
                             f"families only (vocab_file); continue a {family} checkpoint with init_checkpoint")
        encoder = models.bert_encoder(config)
        pair, sop = _pair_head(run, family)
        if run.objective == "bert":
            model = pretrainer_lib.bert_pretrainer(encoder, nsp=pair)
        else:
            from kzoo.models.electra import electra_pretrainer

            model = electra_pretrainer(encoder, generator_num_layers=run.generator_num_layers or None,
                                       discriminator_weight=run.discriminator_weight, seed=run.seed)
        tokenizer, report, pretrained = text.BertTokenizer(run.vocab_file, lower_case=run.lower_case), None, None
    source = run.vocab_file or run.init_checkpoint
    if tokenizer.vocab_size > config.vocab_size or (pretrained is None and tokenizer.vocab_size != config.vocab_size):
        raise ValueError(f"{source}: {tokenizer.vocab_size} entries, but the config has vocab_size "
                         f"{config.vocab_size}")
    if tokenizer.vocab_size < config.vocab_size:
        logging.info("the tokenizer has %d ids, the model's vocabulary %d: the extra rows are never input",
                     tokenizer.vocab_size, config.vocab_size)
    return BuiltModel(model, encoder, tokenizer, config, family, pair, sop, report, pretrained)


def make_datasets(run, tokenizer, nsp, static=False, sop=False):
    """(train dataset, eval dataset or None, number of training instances), for any kzoo
    tokenizer: its family's packing, special ids (never masked) and word-start convention
    (whole-word masking); `nsp` makes sentence pairs, with `sop` ALBERT's sentence-order ones."""
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
    options = dict(max_seq_length=run.max_seq_length, short_seq_prob=run.short_seq_prob, nsp=nsp, sop=sop and nsp)
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


def _hf_names(reference_folder, family):
    """{canonical name: [(HF weight name, transpose?)]} of the weights in a Hugging Face folder."""
    path = weights_file(reference_folder)
    if path.endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(path, framework="numpy") as f:
            keys = list(f.keys())
    else:
        from kzoo.checkpoints.hf import _read_all

        keys = list(_read_all(path))
    names = {}
    for key in keys:
        mapped = family.hf_name(key)
        if mapped is not None:
            names.setdefault(mapped[0], []).append((key, mapped[1]))
    return names


def save_hf_weights(model, path, reference_folder, encoder=None):
    """Writes the encoder (and masked-LM head) of `model` as a Hugging Face `model.safetensors`
    at `path` (atomically), under the weight names of `reference_folder` (the folder it was
    loaded from), with torch's [out, in] Linear layout: what `kzoo.checkpoints.load_pretrained`
    and transformers' `from_pretrained` read. For RoBERTa, XLM-R and DistilBERT, which have no
    official TF1 format. Variables the reference folder has no name for (a pooler new since the
    load, not trained without a pair head) are not written; they are new again on reload.
    Returns `path`."""
    from safetensors.numpy import save_file

    encoder = encoder if encoder is not None else models.find_encoder(model)
    family = mapping.family_map(encoder)
    names = _hf_names(reference_folder, family)
    arrays, unnamed = {}, []
    for entry in family.encoder_entries(encoder) + family.head_entries(model, encoder):
        targets = names.get(entry.name)
        if not targets:
            unnamed.append(entry.name)
            continue
        value = entry.to_official(np.asarray(entry.variable.numpy(), dtype=np.float32))
        for key, transpose in targets:
            arrays[key] = np.ascontiguousarray(value.T if transpose else value)
    if unnamed:
        logging.info("not written (no name in %s): %s", reference_folder, unnamed)
    with kzoo_io.atomic_path(path) as tmp:
        save_file(arrays, tmp, metadata={"format": "pt"})
    return path


class SaveCheckpoint(keras.callbacks.Callback):
    """Calls `save()` (which writes the checkpoint atomically) after every epoch, so an
    interrupted run leaves its last complete checkpoint."""

    def __init__(self, save):
        super().__init__()
        self.save = save

    def on_epoch_end(self, epoch, logs=None):
        self.save()


def _tokenizer_config(tokenizer):
    """The tokenizer_config.json keys `kzoo.text.tokenizer_from_folder` (and transformers) read."""
    keys = {"lower_case": "do_lower_case", "keep_accents": "keep_accents", "add_prefix_space": "add_prefix_space"}
    return {theirs: bool(getattr(tokenizer, ours)) for ours, theirs in keys.items() if hasattr(tokenizer, ours)}


def _write_folder_files(run, built):
    """Config and tokenizer files of the output folder; returns the `save()` of its weights."""
    family, encoder, model_dir = built.family, built.encoder, run.model_dir
    pretrained = built.pretrained
    kzoo_io.makedirs(model_dir)
    save_tokenizer(built.tokenizer, model_dir)
    kzoo_io.write_json(kzoo_io.join(model_dir, "tokenizer_config.json"), _tokenizer_config(built.tokenizer))
    if family in MLM_ONLY_FAMILIES:  # no official format: a Hugging Face folder
        if pretrained is None or pretrained.format != "hf":
            raise ValueError(f"{family} is saved as a Hugging Face folder, which needs the folder it was loaded from")
        config_json = os.path.join(pretrained.folder, "config.json")
        if run.bert_config_file is None and os.path.exists(config_json):
            kzoo_io.copy(config_json, kzoo_io.join(model_dir, "config.json"))
        else:
            built.config.to_json_file(kzoo_io.join(model_dir, "config.json"), format="hf")
        return lambda: save_hf_weights(built.model, kzoo_io.join(model_dir, HF_WEIGHTS), pretrained.folder, encoder)
    name = "albert_config.json" if family == "albert" else "bert_config.json"
    built.config.to_json_file(os.path.join(model_dir, name))
    # ELECTRA keeps the discriminator (the encoder), and for an ELECTRA checkpoint its generator and
    # heads too (so pretraining continues again from the folder); BERT and ALBERT their cls/* heads.
    if run.objective == "bert" or family == "electra":
        to_save = built.model
    else:
        to_save = encoder
    return lambda: save_official_bert(to_save, os.path.join(model_dir, CHECKPOINT_NAME), encoder=encoder)


def run_pretraining(run):
    """Pretrains and writes the checkpoint folder (official, or Hugging Face for RoBERTa, XLM-R
    and DistilBERT: see the module docstring); returns a dict of results (held-out metrics
    before and after, history, paths)."""
    run.validate()
    keras.utils.set_random_seed(run.seed)
    if run.objective == "electra" and run.nsp:
        logging.info("objective electra: no next-sentence prediction (nsp ignored)")
    strategy = run.make_strategy()
    run = run.for_this_worker(strategy)
    static = run.static(strategy, run.static_shapes)
    with run.model_scope(strategy):
        built = build_model(run)
    model, encoder, tokenizer, report, nsp = built.model, built.encoder, built.tokenizer, built.report, built.pair
    if not nsp:  # nothing reads the pooled output: keep the pooler as loaded (and Keras quiet about it)
        for layer in encoder.layers:
            if layer.name == "pooler":
                layer.trainable = False
    train_ds, eval_ds, num_instances = make_datasets(run, tokenizer, nsp, static, sop=built.sop)
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

    save = _write_folder_files(run, built)
    result = {"objective": run.objective, "family": built.family, "nsp": nsp, "sop": built.sop,
              "num_train_instances": num_instances, "total_steps": total_steps}
    if report is not None:
        result["init_report"] = {"loaded": len(report.loaded), "unused": report.unused, "missing": report.missing}
    if eval_ds is not None:
        result["eval_before"] = _evaluate(model, eval_ds)
        logging.info("held-out before training: %s", result["eval_before"])
    callbacks = [SaveCheckpoint(save),
                 *standard_callbacks(run.model_dir, backup_steps=run.backup_steps, backup_dir=run.backup_dir())]
    start = time.time()
    history = model.fit(train_ds, epochs=epochs, steps_per_epoch=fit_steps, validation_data=eval_ds,
                        callbacks=callbacks, shuffle=False, verbose=run.verbose)
    result["train_seconds"] = time.time() - start
    result["history"] = {k: [float(v) for v in values] for k, values in history.history.items()}
    if eval_ds is not None:
        result["eval_after"] = _evaluate(model, eval_ds)
        logging.info("held-out after training: %s", result["eval_after"])
    result["checkpoint"] = save()
    write_json_atomically(os.path.join(run.model_dir, "results.json"),
                          {k: v for k, v in result.items() if k != "model"})
    result["model"] = model
    return result


def _evaluate(model, dataset):
    return {k: float(v) for k, v in model.evaluate(dataset, verbose=0, return_dict=True).items()}
