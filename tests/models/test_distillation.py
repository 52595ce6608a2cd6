import keras
import numpy as np
import pytest
import tensorflow as tf

from kzoo.models.walk import find_encoder
from kzoo.models.classifier import bert_classifier
from kzoo.models.distillation import distillation_model, student_from_teacher, teacher_logits
from kzoo.training.losses import distillation_losses
from kzoo.training.losses import DistillationLoss
from tests.conftest import random_inputs


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _randomise(model, seed=0):
    rng = np.random.default_rng(seed)
    for v in model.weights:
        v.assign(v.numpy() + rng.normal(scale=0.05, size=v.shape).astype(v.dtype))


def test_distillation_loss_equals_numpy():
    rng = np.random.default_rng(0)
    t, s = rng.normal(size=(4, 5)) * 3, rng.normal(size=(4, 5)) * 3
    for temperature in (1.0, 2.0, 5.0):
        p, q = _softmax(t / temperature), _softmax(s / temperature)
        want = temperature**2 * np.mean(np.sum(p * np.log(p / q), -1))
        got = float(DistillationLoss(temperature)(t.astype("float32"), s.astype("float32")))
        np.testing.assert_allclose(got, want, rtol=1e-5)
    assert float(DistillationLoss(3.0)(t, t)) == pytest.approx(0.0, abs=1e-6)
    clone = keras.losses.deserialize(keras.losses.serialize(DistillationLoss(4.0)))
    assert isinstance(clone, DistillationLoss) and clone.temperature == 4.0
    with pytest.raises(ValueError):
        DistillationLoss(0.0)


@pytest.mark.parametrize("norm_first,position_embedding", [(False, "learned"), (True, "sinusoidal")])
def test_full_depth_student_equals_teacher(tiny_config, norm_first, position_embedding):
    teacher = bert_classifier(tiny_config, num_classes=3, norm_first=norm_first,
                              position_embedding=position_embedding)
    _randomise(teacher)
    student = student_from_teacher(teacher, tiny_config.num_hidden_layers)
    inputs = random_inputs(3, 7, tiny_config.vocab_size)
    np.testing.assert_array_equal(student(inputs, training=False).numpy(), teacher(inputs, training=False).numpy())
    teacher_ids = {id(v) for v in teacher.weights}
    assert not any(id(v) in teacher_ids for v in student.weights)  # copies, not shared
    encoder = find_encoder(student)
    assert encoder.get_layer("embeddings").position_embedding == position_embedding
    assert encoder.get_layer("transformer_layer_0").norm_first == norm_first


def test_shallow_student_matches_teacher_layer(tiny_config):
    config = tiny_config.__class__(**{**tiny_config.__dict__, "num_hidden_layers": 3, "hidden_act": "gelu_new",
                                      "layer_norm_eps": 1e-6})
    teacher = bert_classifier(config, num_classes=2)
    _randomise(teacher, 1)
    student = student_from_teacher(teacher, 2)
    inputs = random_inputs(3, 7, config.vocab_size)
    s_encoder, t_encoder = find_encoder(student), find_encoder(teacher)
    blocks = [l for l in s_encoder.layers if l.name.startswith("transformer_layer_")]
    assert len(blocks) == 2 and blocks[0].activation == "gelu_new" and blocks[0].layer_norm_eps == 1e-6
    want = t_encoder(inputs, training=False)["encoder_outputs"][1].numpy()
    np.testing.assert_array_equal(s_encoder(inputs, training=False)["sequence_output"].numpy(), want)
    for bad in (0, 4, 1.5):
        with pytest.raises(ValueError, match="num_layers"):
            student_from_teacher(teacher, bad)


def test_distillation_training_reduces_loss(tiny_config):
    keras.utils.set_random_seed(0)
    teacher = bert_classifier(tiny_config, num_classes=3)
    _randomise(teacher, 2)
    big = teacher.get_layer("classifier").dense.kernel
    big.assign(big.numpy() * 100.0)  # a confident teacher: a clear target
    inputs = random_inputs(16, 8, tiny_config.vocab_size, seed=3)
    labels = np.random.default_rng(0).integers(0, 3, 16).astype("int32")
    features = tf.data.Dataset.from_tensor_slices((inputs, labels)).batch(8)
    soft = teacher_logits(teacher, features)
    np.testing.assert_allclose(soft, teacher(inputs, training=False).numpy(), atol=1e-5)

    student = student_from_teacher(teacher, 1)
    head = student.get_layer("classifier").dense.kernel
    head.assign(np.random.default_rng(5).normal(scale=0.5, size=head.shape).astype("float32"))  # start far off
    model = distillation_model(student)
    assert model.get_layer("distill").__class__.__name__ == "Identity"
    loss, loss_weights = distillation_losses(temperature=2.0, alpha=1.0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=loss, loss_weights=loss_weights)
    train = tf.data.Dataset.from_tensor_slices((inputs, {"logits": labels, "distill": soft})).batch(8)
    before = model.evaluate(train, verbose=0, return_dict=True)
    model.fit(train, epochs=15, verbose=0, shuffle=False)
    after = model.evaluate(train, verbose=0, return_dict=True)
    assert after["distill_loss"] < 0.7 * before["distill_loss"], (before, after)
    # The student itself is what was trained.
    np.testing.assert_allclose(model(inputs)["logits"].numpy(), student(inputs).numpy(), atol=1e-6)


@pytest.mark.parametrize("family", ["albert", "electra", "roberta", "xlm_roberta", "distilbert"])
def test_student_of_every_family(family, tmp_path, tmp_path_factory):
    """Read off a saved teacher of each family (tiny random Hugging Face model): a student with all the
    teacher's layers is the teacher (same family structure: ALBERT's shared groups and embedding width,
    ELECTRA's projection and first-token pooling, RoBERTa's positions, DistilBERT's ReLU pre_classifier);
    a shallower one keeps the family's structure with fewer layers."""
    from kzoo.checkpoints import load_pretrained
    from kzoo.text import BertPacker
    from tests.family_models import tiny_family_folders

    pretrained = load_pretrained(tiny_family_folders(tmp_path_factory)[family])
    teacher = bert_classifier(pretrained.encoder, num_classes=3)
    teacher.save(tmp_path / "teacher.keras")
    teacher = keras.models.load_model(tmp_path / "teacher.keras")
    tokenizer = pretrained.tokenizer
    x = BertPacker.from_tokenizer(tokenizer, 16)([tokenizer(["hello world, how are you", "a"]),
                                                   tokenizer(["b c", "dd"])])
    np.testing.assert_allclose(student_from_teacher(teacher, 2)(x), teacher(x), atol=1e-5)
    student = student_from_teacher(teacher, 1)
    encoder = find_encoder(student)
    assert len(encoder(x)["encoder_outputs"]) == 1
    assert encoder.name == find_encoder(teacher).name
    teacher_weights = sum(int(np.prod(w.shape)) for w in teacher.weights)
    student_weights = sum(int(np.prod(w.shape)) for w in student.weights)
    block = sum(int(np.prod(w.shape)) for w in find_encoder(teacher).get_layer(
        "transformer_group_0_inner_0" if family == "albert" else "transformer_layer_1").weights)
    assert teacher_weights - student_weights == (0 if family == "albert" else block), family  # one block less


def test_student_of_a_relative_position_teacher(tmp_path):
    """Shaw et al. relative positions (no absolute table) carry over: the full-depth student is the teacher."""
    from kzoo import configs

    config = configs.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=32, max_relative_position=3, use_absolute_positions=False)
    teacher = bert_classifier(config, num_classes=3)
    _randomise(teacher)
    teacher.save(tmp_path / "teacher.keras")
    teacher = keras.models.load_model(tmp_path / "teacher.keras")
    x = random_inputs(2, 9, 50, lengths=[9, 5])
    np.testing.assert_allclose(student_from_teacher(teacher, 2)(x), teacher(x), atol=1e-5)
    student = student_from_teacher(teacher, 1)
    block = find_encoder(student).get_layer("transformer_layer_0")
    assert (block.max_relative_position, block.relative_position_values) == (3, True)


def test_student_of_a_deberta_v3_teacher(tmp_path):
    """DeBERTa-v3 (log-bucketed disentangled attention, shared relative table, ContextPooler) carries over."""
    from kzoo import configs

    config = configs.BertConfig(family="deberta_v2", vocab_size=50, hidden_size=16, num_hidden_layers=2,
                                num_attention_heads=2, intermediate_size=32, max_position_embeddings=64,
                                type_vocab_size=0, use_absolute_positions=False, position_buckets=8,
                                max_relative_positions=16, pooler_hidden_act="gelu")
    teacher = bert_classifier(config, num_classes=3)
    _randomise(teacher)
    teacher.save(tmp_path / "teacher.keras")
    teacher = keras.models.load_model(tmp_path / "teacher.keras")
    x = random_inputs(2, 30, 50, lengths=[30, 9])
    np.testing.assert_allclose(student_from_teacher(teacher, 2)(x), teacher(x), atol=1e-5)
    student = student_from_teacher(teacher, 1)
    assert len(find_encoder(student)(x)["encoder_outputs"]) == 1
