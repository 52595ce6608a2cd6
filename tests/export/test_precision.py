"""bfloat16 serving exports (`kzoo.export.precision.serving_copy`, `compute_dtype=`)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kzoo.configs import BertConfig
from kzoo.export import export_classifier, export_hub_encoder, export_sentence_encoder, serving_copy
from kzoo.layers import BertPooler, TransformerEncoderBlock
from kzoo.layers.activations import gelu_exact, gelu_exact_inference
from kzoo.models import bert_classifier, bert_encoder, sentence_encoder
from kzoo.text import BertPacker, BertTokenizer
from kzoo.training import dtype_policy_scope
from tests.models.test_families import config_of, inputs_for

SENTENCES = ["What's the weather in Paris tomorrow?", "play some jazz", "Café Ünïcödé 我爱北京", "",
             "wake me up at six thirty tomorrow morning and play the news"]


DEBERTA = BertConfig(family="deberta_v2", vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=24, max_position_embeddings=32, type_vocab_size=0,
                     use_absolute_positions=False, position_buckets=4, max_relative_positions=8,
                     pooler_hidden_act="gelu")


def _bf16_round(array):
    return tf.cast(tf.cast(array, tf.bfloat16), tf.float32).numpy()


def _projections(model):
    """Dense/EinsumDense layers inside blocks and poolers, plus the embedding projection."""
    found = {}
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if isinstance(layer, (TransformerEncoderBlock, BertPooler)):
            for sub in layer._flatten_layers(include_self=True, recursive=True):
                if isinstance(sub, (keras.layers.Dense, keras.layers.EinsumDense)):
                    found[sub.path] = sub
        elif layer.name == "embedding_projection":
            found[layer.path] = layer
    return found


# (BERT's copy is checked through its export below; ALBERT adds the embedding projection, DeBERTa the
# disentangled attention's relative projections)
@pytest.mark.parametrize("family", ["albert", "deberta_v2"])
def test_bfloat16_copy_rounds_only_the_projection_kernels(family):
    config = DEBERTA if family == "deberta_v2" else config_of(family)
    model = bert_classifier(bert_encoder(config), num_classes=3)
    inputs = inputs_for(config, batch=3, seq=9)
    before = {v.path: v.numpy().copy() for v in model.weights}
    want = model(inputs, training=False).numpy()

    copy = serving_copy(model, "bfloat16")
    assert copy is not model
    projections = _projections(copy)
    assert len(projections) >= 5 + (family == "albert")  # q, k, v, attention output, ffn pair, pooler
    kernels = {layer.kernel.path for layer in projections.values()}
    for variable in copy.weights:
        original = before[variable.path]
        if variable.path in kernels:
            assert variable.dtype == "bfloat16", variable.path
            np.testing.assert_array_equal(tf.cast(variable.value, tf.float32).numpy(), _bf16_round(original))
        else:  # embeddings, LayerNorms, biases, relative tables, the head: float32, unchanged
            assert variable.dtype == "float32", variable.path
            np.testing.assert_array_equal(variable.numpy(), original)
    got = copy(inputs, training=False)
    assert got.dtype == tf.float32
    # The original model is untouched, and the copy differs from it by bfloat16 rounding only.
    np.testing.assert_array_equal(model(inputs, training=False).numpy(), want)
    assert all(v.dtype == "float32" and np.array_equal(v.numpy(), before[v.path]) for v in model.weights)
    encoder = copy.get_layer(f"{family}_encoder")
    states = encoder(inputs)["sequence_output"].numpy()
    reference = model.get_layer(f"{family}_encoder")(inputs)["sequence_output"].numpy()
    difference = np.abs(states - reference).max()
    assert 0 < difference < 0.05, difference  # LayerNorm outputs are O(1); bfloat16 keeps ~3 digits


def test_serving_copy_dtypes():
    config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32)
    model = bert_classifier(config, num_classes=2)
    assert serving_copy(model, None) is model and serving_copy(model, "float32") is model
    with pytest.raises(ValueError, match="compute_dtype must be None .* 'bfloat16'"):
        serving_copy(model, "float16")
    # A model trained under mixed_bfloat16 computes in bfloat16; its float32 copy computes in float32
    # with the same (float32) weights.
    with dtype_policy_scope("mixed_bfloat16"):
        mixed = bert_classifier(config, num_classes=2)
    mixed.set_weights(model.get_weights())
    inputs = inputs_for(config)
    copy = serving_copy(mixed, "float32")
    assert copy is not mixed
    assert {layer.compute_dtype for layer in copy._flatten_layers(include_self=True, recursive=True)} == {"float32"}
    np.testing.assert_allclose(copy(inputs, training=False).numpy(), model(inputs, training=False).numpy(),
                               atol=1e-6)


def test_serving_copy_real_tokens_only():
    """The flag goes on the copy's plain blocks only (never on the model passed in), with or without bfloat16;
    a model without such blocks (DeBERTa) is returned as it is; outputs on a padded batch are the model's."""
    config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32)
    model = bert_classifier(config, num_classes=2, pooling="mean")
    ids = np.random.default_rng(3).integers(1, 64, size=(3, 7)).astype("int32")
    mask = (np.arange(7)[None] < np.array([[7], [2], [4]])).astype("int32")
    inputs = {"input_word_ids": tf.constant(ids * mask), "input_mask": tf.constant(mask),
              "input_type_ids": tf.zeros_like(tf.constant(ids))}
    want = model(inputs, training=False).numpy()

    def flags(m):
        return [layer.real_tokens_only for layer in m._flatten_layers(recursive=True)
                if isinstance(layer, TransformerEncoderBlock)]

    copy = serving_copy(model, None, real_tokens_only=True)
    assert copy is not model and flags(copy) == [True, True] and flags(model) == [False, False]
    # the copy's exact GELU leaves out the training gradient (which an export never takes); the model's keeps it
    activations = {layer.intermediate_dense.activation for layer in copy._flatten_layers(recursive=True)
                   if isinstance(layer, TransformerEncoderBlock)}
    assert activations == {gelu_exact_inference}
    assert all(layer.intermediate_dense.activation is gelu_exact for layer in model._flatten_layers(recursive=True)
               if isinstance(layer, TransformerEncoderBlock))
    # its query, key and value kernels are stored heads first, [heads, width, size]; the model's stay [width, ...]
    for block, original in zip(*(
            [layer for layer in m._flatten_layers(recursive=True) if isinstance(layer, TransformerEncoderBlock)]
            for m in (copy, model))):
        for name in ("query_dense", "key_dense", "value_dense"):
            dense, source = getattr(block.attention, name), getattr(original.attention, name)
            assert dense.heads_first and not getattr(source, "heads_first", False)
            assert tuple(source.kernel.shape) == (16, 2, 8)
            np.testing.assert_array_equal(np.asarray(dense.kernel), np.transpose(np.asarray(source.kernel), [1, 0, 2]))
    np.testing.assert_allclose(copy(inputs, training=False).numpy(), want, atol=1e-6)
    both = serving_copy(model, "bfloat16", real_tokens_only=True)
    assert flags(both) == [True, True] and flags(model) == [False, False]
    assert {(tuple(layer.kernel.shape), layer.kernel.dtype) for layer in both._flatten_layers(recursive=True)
            if getattr(layer, "heads_first", False)} == {((2, 16, 8), "bfloat16")}
    np.testing.assert_allclose(both(inputs, training=False).numpy(),
                               serving_copy(model, "bfloat16")(inputs, training=False).numpy(), atol=1e-6)
    deberta = bert_classifier(DEBERTA, num_classes=2)
    assert serving_copy(deberta, None, real_tokens_only=True) is deberta


@pytest.fixture(scope="module")
def tokenizer():
    from tests.conftest import minilm_vocab_file

    return BertTokenizer(vocab_file=minilm_vocab_file())


@pytest.fixture(scope="module")
def tiny_encoder(tokenizer):
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64)
    return bert_encoder(config)


def _variables(path):
    reader = tf.train.load_checkpoint(f"{path}/variables/variables")
    shapes, dtypes = reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()
    return {name: (shapes[name], dtypes[name]) for name in shapes if "OPTIMIZER" not in name and
            not name.startswith("_CHECKPOINTABLE")}


def test_bfloat16_exports_keep_their_signatures(tmp_path, tokenizer, tiny_encoder):
    # Only bfloat16 exports are written here (float32 exports have their own tests); each is compared with
    # the float32 model in process.
    classifier = bert_classifier(tiny_encoder, num_classes=3)
    packer = BertPacker.from_tokenizer(tokenizer, 32, dynamic_length=True)
    features = packer(tokenizer(tf.constant(SENTENCES)))
    path = export_classifier(classifier, tokenizer, ["alarm", "music", "weather"], tmp_path / "intents",
                             seq_length=32, compute_dtype="bfloat16")
    out = tf.saved_model.load(path).signatures["serving_default"](text=tf.constant(SENTENCES))
    assert {k: v.dtype for k, v in out.items()} == {"probabilities": tf.float32, "label_ids": tf.int32,
                                                     "labels": tf.string}
    # The SavedModel computes what the bfloat16 copy computes, close to float32 and not equal to it, and
    # stores 12 bfloat16 kernels (2 blocks x 6 projections) and the pooler's; nothing else in bfloat16.
    want = tf.nn.softmax(serving_copy(classifier, "bfloat16")(features, training=False)).numpy()
    np.testing.assert_allclose(out["probabilities"].numpy(), want, atol=1e-6)
    float32 = tf.nn.softmax(classifier(features, training=False)).numpy()
    assert 0 < np.abs(out["probabilities"].numpy() - float32).max() < 0.02
    stored = _variables(path)
    assert sum(dtype == tf.bfloat16 for _, dtype in stored.values()) == 13
    assert {dtype for _, dtype in stored.values()} <= {tf.float32, tf.bfloat16, tf.int64, tf.string}

    # Sentence embeddings: the same output, close to the float32 model's (tagger and span labeler exports take
    # compute_dtype through the same serving_copy call).
    embedder = sentence_encoder(tiny_encoder, pooling="mean", normalize=True, max_seq_length=32)
    path = export_sentence_encoder(embedder, tokenizer, tmp_path / "embeddings", compute_dtype="bfloat16")
    got = tf.saved_model.load(path).signatures["serving_default"](text=tf.constant(SENTENCES))
    assert list(got) == ["embeddings"] and got["embeddings"].dtype == tf.float32
    difference = np.abs(got["embeddings"].numpy() - embedder(features).numpy()).max()
    assert 0 < difference < 0.02, difference

    # The TF Hub-style encoder: float32 outputs, close to float32's; no bfloat16 MLM head for further training.
    paths = export_hub_encoder(tiny_encoder, tokenizer, tmp_path / "hub", seq_length=32, compute_dtype="bfloat16")
    outputs = tf.saved_model.load(paths.encoder)(tf.saved_model.load(paths.preprocess)(tf.constant(SENTENCES)))
    assert outputs["sequence_output"].dtype == outputs["pooled_output"].dtype == tf.float32
    want = tiny_encoder(features)["pooled_output"].numpy()
    difference = np.abs(outputs["pooled_output"].numpy() - want).max()
    assert 0 < difference < 0.02, difference
    with pytest.raises(ValueError, match="compute_dtype is for serving exports"):
        export_hub_encoder(tiny_encoder, tokenizer, tmp_path / "hub_mlm", pretrainer=object(), compute_dtype="bfloat16")
