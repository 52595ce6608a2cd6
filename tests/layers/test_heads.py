import numpy as np

from kzoo.layers import BertPooler, ClassificationHead


def test_pooler_is_tanh_dense_of_first_token():
    pooler = BertPooler(hidden_size=4)
    x = np.random.default_rng(0).normal(size=(3, 5, 6)).astype("float32")
    out = np.asarray(pooler(x))
    want = np.tanh(x[:, 0] @ np.asarray(pooler.dense.kernel) + np.asarray(pooler.dense.bias))
    np.testing.assert_allclose(out, want, atol=1e-6)
    assert BertPooler.from_config(pooler.get_config()).get_config() == pooler.get_config()


def test_classification_head_logits_float32_under_mixed_precision():
    head = ClassificationHead(num_classes=3, dtype="mixed_float16")
    out = head(np.ones((2, 8), "float16"))
    assert tuple(out.shape) == (2, 3) and out.dtype.name == "float32"
    assert ClassificationHead.from_config(head.get_config()).num_classes == 3


def test_pooler_variants_of_the_families():
    x = np.random.default_rng(0).normal(size=(2, 5, 8)).astype("float32")
    first = BertPooler(hidden_size=8, dense=False)  # ELECTRA: the first token itself
    np.testing.assert_array_equal(first(x), x[:, 0])
    assert first.weights == [] and BertPooler.from_config(first.get_config()).dense is None
    relu = BertPooler(hidden_size=8, activation="relu")  # DistilBERT's pre_classifier
    out = np.asarray(relu(x))
    kernel, bias = (np.asarray(w) for w in relu.dense.weights)
    np.testing.assert_allclose(out, np.maximum(x[:, 0] @ kernel + bias, 0), atol=1e-5)
    assert BertPooler.from_config(relu.get_config()).activation == "relu"
