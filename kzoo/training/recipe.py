"""The adaptation options every fine-tuning workflow shares, and the one
place that turns them into an encoder, frozen layers, an optimizer and
callbacks. `run_classifier`, `run_tagger` and `run_squad` all call it; the
absl scripts define one flag per field (`kzoo/cli/flags.py`).
"""

import dataclasses
import os

from absl import logging

from kzoo import io as kzoo_io
from kzoo.checkpoints.mapping import encoder_entries
from kzoo.models.walk import find_encoder
from kzoo.models import adaptation
from kzoo.training import callbacks as kzoo_callbacks
from kzoo.training import freezing, optimization, regularizers

ADAPTER_TYPES = ("none", "houlsby", "pfeiffer")
LORA_TARGETS = ("query", "key", "value", "attention_output", "intermediate", "output")


@dataclasses.dataclass
class AdaptationOptions:
    """How the pretrained encoder is adapted (defaults: full fine-tuning as BERT).

    Attributes:
        adapter_type: "none", "houlsby" (an adapter after the attention and
            after the feed-forward sub-layer of every block) or "pfeiffer"
            (after the feed-forward only). Adapters or LoRA switch on
            parameter-efficient training: only adapters/LoRA, the encoder's
            LayerNorms (`train_layer_norms`), the pooler and the task head train.
        adapter_size: adapter bottleneck width.
        lora_rank: LoRA rank on `lora_targets` (0: off).
        lora_alpha: LoRA scale numerator (delta W = alpha / rank * A B);
            None means alpha = rank.
        lora_targets: comma-separated projections of every block that get LoRA
            (query, key, value, attention_output, intermediate, output).
        train_layer_norms: with adapters or LoRA, train the encoder's LayerNorms.
        freeze_layers: 0 nothing frozen; -1 the embeddings only; k > 0 the
            embeddings and the lowest k blocks.
        feature_extraction: freeze the whole encoder (pooler included); train
            the task head only.
        gradual_unfreezing: start with the head trainable and unfreeze one more
            block from the top every `unfreezing_interval` `unfreezing_unit`s
            (ULMFiT), the embeddings last.
        unfreezing_interval, unfreezing_unit: stage length, in "epoch"s or
            optimizer "step"s.
        chain_thaw: with gradual unfreezing, Felbo et al.'s order instead: the
            head alone, each group alone from the bottom, then everything.
        layerwise_lr_decay: discriminative learning rates: block l of L
            (1-based) gets lr * decay^(L-l), the embeddings lr * decay^L, the
            pooler and head lr (1.0: off).
        lr_schedule: "linear" (warm-up, linear decay to 0; BERT),
            "slanted_triangular" (ULMFiT; the warm-up proportion is its cut
            fraction), "cosine" (warm-up, cosine decay to 0) or "constant"
            (warm-up, if any, then the peak rate; keras-hub's compile()).
        optimizer: "adamw" (BERT's: epsilon 1e-6, decoupled weight decay) or
            "adam" (Keras' and keras-hub's default: epsilon 1e-7, no weight
            decay; needs weight_decay=0).
        clip_norm: global gradient-norm clip (0: none).
        weight_decay: AdamW decoupled weight decay (never on biases or
            LayerNorm parameters).
        l2sp_alpha: L2-SP: alpha/2 * ||w - w_pretrained||^2 on the pretrained
            encoder's variables (Li et al. 2018); use with weight_decay=0.
        l2sp_beta: L2-SP: beta/2 * ||w||^2 on every new variable (head,
            adapters, LoRA).
    """

    adapter_type: str = "none"
    adapter_size: int = 64
    lora_rank: int = 0
    lora_alpha: float = None
    lora_targets: str = "query,value"
    train_layer_norms: bool = True
    freeze_layers: int = 0
    feature_extraction: bool = False
    gradual_unfreezing: bool = False
    unfreezing_interval: int = 1
    unfreezing_unit: str = "epoch"
    chain_thaw: bool = False
    layerwise_lr_decay: float = 1.0
    lr_schedule: str = "linear"
    optimizer: str = "adamw"
    clip_norm: float = 1.0
    weight_decay: float = 0.01
    l2sp_alpha: float = 0.0
    l2sp_beta: float = 0.0

    @property
    def parameter_efficient(self):
        return self.adapter_type != "none" or self.lora_rank > 0

    def validate(self):
        """Rejects impossible combinations with a message naming the flags."""
        if self.adapter_type not in ADAPTER_TYPES:
            raise ValueError(f"adapter_type={self.adapter_type!r}: expected one of {list(ADAPTER_TYPES)}")
        targets = self.lora_target_tuple
        unknown = sorted(set(targets) - set(LORA_TARGETS))
        if unknown:
            raise ValueError(f"lora_targets: unknown {unknown}; expected some of {list(LORA_TARGETS)}")
        if self.lora_rank < 0 or self.adapter_size < 1:
            raise ValueError(f"lora_rank ({self.lora_rank}) must be >= 0 and adapter_size ({self.adapter_size}) >= 1")
        strategies = [name for name, on in (("adapters/LoRA", self.parameter_efficient),
                                            ("freeze_layers", self.freeze_layers != 0),
                                            ("feature_extraction", self.feature_extraction),
                                            ("gradual_unfreezing", self.gradual_unfreezing)) if on]
        if len(strategies) > 1:
            raise ValueError(f"choose one way of freezing: {' and '.join(strategies)} were both asked for")
        if self.chain_thaw and not self.gradual_unfreezing:
            raise ValueError("chain_thaw is an order of gradual unfreezing: add --gradual_unfreezing")
        if self.unfreezing_unit not in ("epoch", "step") or self.unfreezing_interval < 1:
            raise ValueError(f"unfreezing_interval ({self.unfreezing_interval}) must be >= 1 and unfreezing_unit "
                             f"({self.unfreezing_unit!r}) 'epoch' or 'step'")
        if not 0.0 < self.layerwise_lr_decay <= 1.0:
            raise ValueError(f"layerwise_lr_decay={self.layerwise_lr_decay}: expected 0 < decay <= 1")
        if self.lr_schedule not in optimization.SCHEDULES:
            raise ValueError(f"lr_schedule={self.lr_schedule!r}: expected one of {list(optimization.SCHEDULES)}")
        if self.l2sp_alpha < 0 or self.l2sp_beta < 0 or self.weight_decay < 0:
            raise ValueError("l2sp_alpha, l2sp_beta and weight_decay must be >= 0")
        if self.optimizer not in optimization.OPTIMIZERS:
            raise ValueError(f"optimizer={self.optimizer!r}: expected one of {list(optimization.OPTIMIZERS)}")
        if self.optimizer == "adam" and self.weight_decay:
            raise ValueError(f"optimizer='adam' has no weight decay: add --weight_decay=0 (got {self.weight_decay}), "
                             "or use --optimizer=adamw")
        if not self.clip_norm >= 0:
            raise ValueError(f"clip_norm={self.clip_norm}: expected >= 0 (0: no clipping)")

    @property
    def lora_target_tuple(self):
        return tuple(t.strip() for t in self.lora_targets.split(",") if t.strip())

    def encoder_kwargs(self):
        """Keyword arguments for `load_pretrained` / `bert_encoder`."""
        kwargs = {}
        if self.adapter_type != "none":
            kwargs.update(adapter_type=self.adapter_type, adapter_size=self.adapter_size)
        if self.lora_rank > 0:
            kwargs.update(lora_rank=self.lora_rank, lora_alpha=self.lora_alpha, lora_targets=self.lora_target_tuple)
        return kwargs


def new_variables(encoder, report):
    """The variables of `encoder` a load left at their initial values: those whose paths its
    `LoadReport` lists as missing (none when `report` is None)."""
    missing = set(report.missing) if report is not None else set()
    return [v for v in encoder.weights if v.path in missing]


def prepare_training(model, options, learning_rate, num_train_steps, warmup_steps, log_dir, added=()):
    """Freezes, regularises and builds the optimizer for `model`.

    Call inside the strategy scope, right after the pretrained weights are
    loaded (L2-SP anchors are taken from the encoder's values at this
    moment, before any training or checkpoint restore). L2-SP anchors the
    variables of the encoder's assignment map except those in `added`
    (variables the load left new, `new_variables(encoder, report)`: e.g.
    the pooler of a RoBERTa checkpoint that has none, DistilBERT's
    `pre_classifier` from a bare DistilBertModel), which get the plain
    `l2sp_beta` penalty like the head.

    Returns:
        (optimizer, callbacks): the AdamW to compile with, and the callbacks
        the options need (gradual unfreezing, per-group learning rates in
        TensorBoard under `<log_dir>/learning_rates`).
    """
    options.validate()
    if options.l2sp_alpha or options.l2sp_beta:
        # anchored: exactly the variables the checkpoint filled (adapters and LoRA are new: beta)
        added = {id(v) for v in added}
        pretrained = [entry.variable for entry in encoder_entries(find_encoder(model))
                      if id(entry.variable) not in added]
        regularizers.apply_l2sp(model, pretrained, options.l2sp_alpha, options.l2sp_beta)
    if options.parameter_efficient:
        adaptation.enable_parameter_efficient_training(model, train_layer_norms=options.train_layer_norms)
    elif options.freeze_layers or options.feature_extraction:
        freezing.freeze(model, options.freeze_layers, options.feature_extraction)

    groups = None
    if options.layerwise_lr_decay != 1.0:
        groups = optimization.layerwise_lr_groups(model, options.layerwise_lr_decay)
    optimizer = optimization.create_optimizer(
        learning_rate, num_train_steps, warmup_steps, weight_decay=options.weight_decay,
        clipnorm=options.clip_norm or None, optimizer=options.optimizer, schedule=options.lr_schedule,
        lr_multipliers=optimization.lr_multipliers(groups) if groups else None)

    callbacks = [kzoo_callbacks.LearningRateLogger(os.path.join(log_dir, "learning_rates"),
                                                   groups if groups else {"all": 1.0})]
    note = ""
    if options.gradual_unfreezing:
        callbacks.insert(0, freezing.GradualUnfreezing(options.unfreezing_interval, options.unfreezing_unit,
                                                       chain_thaw=options.chain_thaw))
        note = "(before gradual unfreezing; each stage logs its own count)"
    freezing.log_trainable_parameters(model, note)
    if groups:
        logging.info("layer-wise learning rates: %s",
                     ", ".join(f"{name} x{multiplier:.4g}" for name, (multiplier, _) in groups.items()))
    return optimizer, callbacks


def save_adaptation(model, options, model_dir):
    """With adapters or LoRA, also writes `<model_dir>/adaptation_weights.npz`
    (only what was trained) and returns its path; else None."""
    if not options.parameter_efficient:
        return None
    path = os.path.join(model_dir, "adaptation_weights.npz")
    adaptation.save_adaptation_weights(model, path)
    logging.info("adaptation weights (%d bytes): %s", kzoo_io.getsize(path), path)
    return path


def serving_model(model, options):
    """The model to export: LoRA folded into the kernels when it is on."""
    return adaptation.merge_lora(model) if options.lora_rank > 0 else model
