"""kzoo.tasks.benchmark: the FLOP count against the graphs of both systems, synthetic
lengths, packing parity with keras-hub, option checks."""

import re

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from kzoo import configs, data, models, text
from kzoo.tasks import benchmark
from tests.conftest import shared_path


def _matmul_flops(graph):
    """2 * (product of every index size) over the graph's matmul-family ops."""
    total = 0
    for op in graph.get_operations():
        if op.type == "MatMul":
            a, b = (t.shape.as_list() for t in op.inputs)
            m, k = (a[1], a[0]) if op.get_attr("transpose_a") else a
            n = b[0] if op.get_attr("transpose_b") else b[1]
            total += 2 * m * k * n
        elif op.type in ("BatchMatMulV2", "BatchMatMulV3"):
            a, b = (t.shape.as_list() for t in op.inputs)
            k = a[-2] if op.get_attr("adj_x") else a[-1]
            out = op.outputs[0].shape.as_list()
            total += 2 * int(np.prod(out)) * k
        elif op.type == "Einsum":
            inputs, _ = op.get_attr("equation").decode().split("->")
            sizes = {}
            for term, tensor in zip(inputs.split(","), op.inputs):
                for letter, size in zip(term, tensor.shape.as_list()):
                    sizes[letter] = size
            total += 2 * int(np.prod(list(sizes.values())))
        else:
            assert not re.search("matmul|einsum|conv", op.type.lower()), f"uncounted op {op.type}"
    return total


DIMS = dict(num_layers=2, hidden_size=16, intermediate_size=40)


@pytest.mark.parametrize("system", ["kzoo", "keras_hub"])
def test_training_flops_are_three_times_the_forward_matmuls_of_either_graph(system):
    batch, length, vocab = 3, 7, 50
    if system == "kzoo":
        model = models.bert_classifier(configs.BertConfig(
            vocab_size=vocab, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=40),
            num_classes=2)
        names = ("input_word_ids", "input_mask", "input_type_ids")
    else:
        backbone = keras_hub.models.BertBackbone(vocabulary_size=vocab, num_layers=2, num_heads=4, hidden_dim=16,
                                                 intermediate_dim=40, max_sequence_length=32)
        model = keras_hub.models.BertClassifier(backbone, num_classes=2, preprocessor=None)
        names = ("token_ids", "padding_mask", "segment_ids")
    spec = {n: tf.TensorSpec([batch, length], tf.int32) for n in names}
    graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec).graph
    assert 3 * _matmul_flops(graph) == benchmark.training_flops(batch, length, **DIMS)


def test_synthetic_sentences_have_sst2_lengths(minilm_hf_folder):
    tokenizer = text.BertTokenizer(f"{minilm_hf_folder}/vocab.txt")
    texts, labels = benchmark.synthetic_texts(4000, tokenizer, seed=3)
    lengths = data.token_lengths(texts, tokenizer)
    # Every word is one wordpiece, so the lengths are the drawn ones: check their distribution.
    support, counts = map(np.asarray, zip(*benchmark.SST2_WORDPIECE_LENGTHS.items()))
    p = counts / counts.sum()
    mean, std = (support * p).sum(), np.sqrt((support**2 * p).sum() - (support * p).sum() ** 2)
    assert abs(lengths.mean() - mean) < 4 * std / np.sqrt(len(texts))
    assert lengths.min() >= 1 and lengths.max() <= 64
    assert abs(np.mean(lengths <= 8) - p[support <= 8].sum()) < 0.03
    assert set(np.unique(labels)) == {0, 1}
    options = benchmark.BenchmarkOptions(data_file="/nonexistent/train.tsv", num_examples=64)
    texts, labels, source = benchmark.benchmark_texts(options, tokenizer)
    assert source.startswith("synthetic") and len(texts) == len(labels) == 64


def test_kzoo_packs_sst2_exactly_as_keras_hubs_preprocessor(minilm_hf_folder):
    examples = data.read_task("sst2", shared_path("data", "sst2", "train.tsv"))
    texts = examples.texts[:400]
    vocab = f"{minilm_hf_folder}/vocab.txt"
    tokenizer = text.BertTokenizer(vocab)
    for length in (16, 64):  # 16 truncates many sentences
        kzoo_features = benchmark.kzoo_packed(texts, tokenizer, length)
        hub_features = benchmark.keras_hub_inputs(texts, vocab, length)
        assert benchmark.same_packing(kzoo_features, hub_features) == 1.0
    kzoo_features["input_type_ids"][0, 0] = 1
    assert benchmark.same_packing(kzoo_features, hub_features) == 1 - 1 / len(texts)


@pytest.mark.parametrize("field, value, message", [
    ("batch_size", 0, "batch_size must be a positive integer"),
    ("num_heads", 5, "hidden_size 384 is not divisible by num_heads 5"),
    ("fixed_lengths", (64, 1024), "fixed_lengths: 1024"),
    ("num_examples", 8, "num_examples 8 is smaller than batch_size 32"),
    ("deberta_num_heads", 5, "deberta_hidden_size 384 is not divisible by deberta_num_heads 5"),
    ("deberta_batch_size", 0, "deberta_batch_size must be a positive integer"),
])
def test_bad_options_name_the_field(field, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        benchmark.BenchmarkOptions(**{field: value}).validate()


def test_quick_preset_keeps_explicit_settings():
    options = benchmark.BenchmarkOptions.quick(window_steps=7)
    assert (options.window_steps, options.num_windows, options.measure_xla) == (7, 3, False)
    assert keras.utils.is_keras_tensor is not None  # keras imported before kzoo.tasks.benchmark, as a user would
