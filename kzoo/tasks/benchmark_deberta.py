"""The DeBERTa-v3 section of `tools/benchmark.py`: kzoo's `deberta_v2` family
against keras-hub's `DebertaV3TextClassifier` at DeBERTa-v3-xsmall's size.

What is compared, and how:

- Models: `kzoo.models.bert_classifier` on a `BertConfig(family="deberta_v2")`
  and `keras_hub.models.DebertaV3TextClassifier` (`preprocessor=None`) with
  the same dimensions (default DeBERTa-v3-xsmall: 12 layers, hidden 384, 6
  heads, intermediate 1536, vocabulary 128,100, 256 log buckets over 512
  relative positions, shared relative table with its LayerNorm, ContextPooler
  head; the two have the same number of parameters, which the results
  record), two classes, randomly initialised.
- Token ids: the benchmark's SST-2 sentences tokenised by the WordPiece
  tokenizer of the main section ([CLS] text [SEP]). No DeBERTa SentencePiece
  model is on this machine; the speed depends on the lengths, not on which
  ids they are, and SST-2's WordPiece and SentencePiece lengths are close.
- Training: both get the same pre-packed batches of each fixed length and
  train with their own defaults (kzoo: `create_optimizer`'s AdamW; keras-hub:
  its `compile()` defaults), interleaved window by window as in the main
  section (`kzoo.tasks.benchmark.interleaved_windows`).
- Serving at batch 1: each model saved as a SavedModel whose signature takes
  token ids of any length (kzoo: the body of `export_classifier`'s
  `serve_packed`; keras-hub: `model.export()`), loaded with
  `tf.saved_model.load`, fed one SST-2 sentence per request. Three rows:
  kzoo at the request's own length (what kzoo's raw-text export does),
  keras-hub at the request's own length (the models alone), and keras-hub
  padded to `sequence_length` (what its preprocessor feeds it). Requests
  alternate between the systems.
"""

import dataclasses
import os
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from kzoo import configs, models
from kzoo.training.optimization import create_optimizer

SERVING_ROWS = ("kzoo", "keras_hub", "keras_hub_padded")


@dataclasses.dataclass
class DebertaOptions:
    """The DeBERTa section's model size and batch (the defaults: DeBERTa-v3-xsmall). `BenchmarkOptions`
    carries them as `deberta_<name>` fields (`from_benchmark`)."""

    num_layers: int = 12
    hidden_size: int = 384
    num_heads: int = 6
    intermediate_size: int = 1536
    vocab_size: int = 128100
    batch_size: int = 16

    @classmethod
    def from_benchmark(cls, options):
        return cls(**{f.name: getattr(options, f"deberta_{f.name}") for f in dataclasses.fields(cls)})

    def validate(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"deberta_{field.name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"deberta_hidden_size {self.hidden_size} is not divisible by deberta_num_heads "
                             f"{self.num_heads}")


def kzoo_config(options):
    """DeBERTa-v3's configuration (as its config.json gives it) at the options' size."""
    return configs.BertConfig(
        family="deberta_v2", vocab_size=options.vocab_size, hidden_size=options.hidden_size,
        num_hidden_layers=options.num_layers, num_attention_heads=options.num_heads,
        intermediate_size=options.intermediate_size, max_position_embeddings=512, type_vocab_size=0,
        use_absolute_positions=False, position_buckets=256, max_relative_positions=-1, pooler_hidden_act="gelu")


def build_kzoo(options):
    model = models.bert_classifier(kzoo_config(options), num_classes=2)
    model.compile(optimizer=create_optimizer(2e-5, num_train_steps=10_000, warmup_steps=1_000),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    return model


def build_keras_hub(options):
    import keras_hub

    backbone = keras_hub.models.DebertaV3Backbone(
        vocabulary_size=options.vocab_size, num_layers=options.num_layers, num_heads=options.num_heads,
        hidden_dim=options.hidden_size, intermediate_dim=options.intermediate_size, dropout=0.1,
        max_sequence_length=512, bucket_size=256)
    model = keras_hub.models.DebertaV3TextClassifier(backbone, num_classes=2, preprocessor=None)
    model.compile()  # keras-hub's defaults: Adam(5e-5), cross-entropy, accuracy
    return model


def hub_features(kzoo_features):
    """keras-hub's inputs for kzoo's packed features (no segments in DeBERTa-v3; the mask as int32, the dtype
    of its exported signature)."""
    return {"token_ids": kzoo_features["input_word_ids"], "padding_mask": kzoo_features["input_mask"]}


def _save_kzoo(model, path):
    """A SavedModel whose `serving_default` is `export_classifier`'s `serve_packed` body."""
    spec = tf.TensorSpec([None, None], tf.int32)

    @tf.function(input_signature=[spec, spec, spec])
    def serve(input_word_ids, input_mask, input_type_ids):
        logits = model({"input_word_ids": input_word_ids, "input_mask": input_mask,
                        "input_type_ids": input_type_ids}, training=False)
        return {"probabilities": tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)}

    module = tf.Module()
    module.model = model
    tf.saved_model.save(module, path, signatures={"serving_default": serve})


def measure(options, deberta_options, packed, labels, sentence_features, work_dir):
    """{"model", "training", "serving", "ratios"} of the DeBERTa section.

    Args:
        options: the main section's `BenchmarkOptions` (windows, requests,
            fixed lengths, sequence_length, seed).
        deberta_options: `DebertaOptions`.
        packed: {length: kzoo packed features (numpy)} for each fixed length.
        labels: int32 labels of the packed rows.
        sentence_features: kzoo features of single sentences at their own
            length (a list of dicts of [1, length] arrays), for serving.
        work_dir: where the SavedModels go.
    """
    from kzoo.tasks import benchmark

    deberta_options.validate()
    keras.utils.set_random_seed(options.seed)
    built = {"kzoo": build_kzoo(deberta_options), "keras_hub": build_keras_hub(deberta_options)}
    params = {name: int(m.count_params()) for name, m in built.items()}
    step_options = dataclasses.replace(options, batch_size=deberta_options.batch_size)

    training = {}
    for length in options.fixed_lengths:
        logging.info("DeBERTa: training at fixed length %d", length)
        inputs = {"kzoo": packed[length], "keras_hub": hub_features(packed[length])}
        trainers = {name: benchmark._Trainer(built[name], benchmark._repeat(inputs[name], labels,
                                                                          deberta_options.batch_size, options.seed),
                                             lambda step: 0)
                    for name in benchmark.SYSTEMS}
        figures = benchmark.interleaved_windows(trainers, step_options)
        for f in figures.values():
            del f["flop_rate"]  # not counted for the disentangled attention
        training[f"fixed_{length}"] = figures

    logging.info("DeBERTa: saving both models")
    _save_kzoo(built["kzoo"], os.path.join(work_dir, "deberta_kzoo"))
    built["keras_hub"].export(os.path.join(work_dir, "deberta_keras_hub"), format="tf_saved_model", verbose=False)
    serve = {name: tf.saved_model.load(os.path.join(work_dir, f"deberta_{name}")).signatures["serving_default"]
             for name in benchmark.SYSTEMS}

    def pad(features, length):
        width = features["input_word_ids"].shape[1]
        return {k: np.pad(v[:, :length], [(0, 0), (0, max(length - width, 0))]) for k, v in features.items()}

    calls = {
        "kzoo": lambda f: serve["kzoo"](**{k: tf.constant(v) for k, v in f.items()}),
        "keras_hub": lambda f: serve["keras_hub"](**{k: tf.constant(v) for k, v in hub_features(f).items()}),
        "keras_hub_padded": lambda f: serve["keras_hub"](**{
            k: tf.constant(v) for k, v in hub_features(pad(f, options.sequence_length)).items()}),
    }
    rng = np.random.default_rng(options.seed + 2)
    for call in calls.values():  # warm-up
        for _ in range(3):
            next(iter(call(sentence_features[int(rng.integers(len(sentence_features)))]).values())).numpy()
    latencies = {name: [] for name in calls}
    logging.info("DeBERTa: serving at batch 1, %d requests per row", options.serving_requests)
    for r in range(options.serving_requests):
        features = sentence_features[int(rng.integers(len(sentence_features)))]
        for name in (SERVING_ROWS if r % 2 == 0 else SERVING_ROWS[::-1]):
            start = time.perf_counter()
            next(iter(calls[name](features).values())).numpy()
            latencies[name].append(time.perf_counter() - start)
    serving = {"batch_1": {name: {"p50_ms": 1e3 * benchmark.percentile(lat, 50),
                                  "p90_ms": 1e3 * benchmark.percentile(lat, 90),
                                  "p99_ms": 1e3 * benchmark.percentile(lat, 99),
                                  "requests": len(lat)} for name, lat in latencies.items()}}

    ratios = {f"deberta_train_fixed_{n}": training[f"fixed_{n}"]["kzoo"]["examples_per_second"]
              / training[f"fixed_{n}"]["keras_hub"]["examples_per_second"] for n in options.fixed_lengths}
    b1 = serving["batch_1"]
    ratios["deberta_serve_p50_batch1"] = b1["kzoo"]["p50_ms"] / b1["keras_hub"]["p50_ms"]
    ratios["deberta_serve_p50_batch1_padded"] = b1["kzoo"]["p50_ms"] / b1["keras_hub_padded"]["p50_ms"]
    return {
        "model": {**dataclasses.asdict(deberta_options), "position_buckets": 256, "max_relative_positions": 512,
                  "parameters": params,
                  "token_ids": "SST-2 sentences, WordPiece ids of the main section ([CLS] text [SEP])"},
        "training": training,
        "serving": serving,
        "ratios": ratios,
    }


def markdown_rows(section, options):
    """Table rows (after the main section's header) for the DeBERTa section."""
    m, training, b1, ratios = section["model"], section["training"], section["serving"]["batch_1"], section["ratios"]
    size = (f"DeBERTa-v3 {m['num_layers']} layers, hidden {m['hidden_size']}, {m['num_heads']} heads, vocab "
            f"{m['vocab_size']}")
    lines = []
    for n in options["fixed_lengths"]:
        k, h = training[f"fixed_{n}"]["kzoo"], training[f"fixed_{n}"]["keras_hub"]
        lines.append(f"| {size}: train examples/s, batch {m['batch_size']}, fixed length {n} | "
                     f"{k['examples_per_second']:.1f} | {h['examples_per_second']:.1f} | "
                     f"{ratios[f'deberta_train_fixed_{n}']:.2f}x |")
    for row, label, key in (("keras_hub", "both at the request's length", "deberta_serve_p50_batch1"),
                            ("keras_hub_padded", f"keras-hub padded to {options['sequence_length']}",
                             "deberta_serve_p50_batch1_padded")):
        k, h = b1["kzoo"], b1[row]
        lines.append(f"| {size}: serving batch 1 p50 / p90 / p99 latency, ms, token ids in ({label}) | "
                     f"{k['p50_ms']:.1f} / {k['p90_ms']:.1f} / {k['p99_ms']:.1f} | "
                     f"{h['p50_ms']:.1f} / {h['p90_ms']:.1f} / {h['p99_ms']:.1f} | {ratios[key]:.2f}x (p50) |")
    return lines
