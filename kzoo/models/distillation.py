"""Knowledge distillation (Hinton et al., 2015) of a kzoo classifier into a
shallower one.

Workflow: `student = student_from_teacher(teacher, num_layers)`;
`soft = teacher_logits(teacher, train_ds)` on an unshuffled dataset; train
`distillation_model(student)` on (features, {"logits": labels, "distill":
soft}) with `loss, loss_weights = kzoo.training.distillation_losses(T, alpha)`; save or
export `student` itself (the training model only adds an Identity output).
"""

import keras
import numpy as np
import tensorflow as tf

from kzoo import configs
from kzoo.models.walk import EMBEDDING_PROJECTION, encoder_family, find_encoder
from kzoo.layers import BertEmbeddings, BertPooler, ClassificationHead, TransformerEncoderBlock
from kzoo.models.classifier import bert_classifier
from kzoo.models.sentence import find_pooling
from kzoo.models.encoder import bert_encoder, encoder_inputs


def _classifier_head(model):
    heads = [layer for layer in model.layers if isinstance(layer, ClassificationHead)]
    if len(heads) != 1:
        raise ValueError(f"model {model.name!r} is not a kzoo classifier: expected one ClassificationHead "
                         f"among its layers, found {len(heads)}")
    return heads[0]


def _encoder_parts(encoder):
    (embeddings,) = [layer for layer in encoder.layers if isinstance(layer, BertEmbeddings)]
    blocks = [layer for layer in encoder.layers if isinstance(layer, TransformerEncoderBlock)]
    poolers = [layer for layer in encoder.layers if isinstance(layer, BertPooler)]
    final_norms = [layer for layer in encoder.layers
                   if isinstance(layer, keras.layers.LayerNormalization) and layer.name == "final_layer_norm"]
    projections = [layer for layer in encoder.layers if layer.name == EMBEDDING_PROJECTION]
    return embeddings, blocks, poolers, final_norms, projections


def _family(encoder, embeddings, blocks):
    """The family and its structural config fields, read off an encoder's layers (`encoder_family`;
    XLM-R is RoBERTa's structure, told apart by the encoder's name)."""
    family = encoder_family(encoder)
    if family == "albert":
        groups = {int(b.name.split("_")[2]) for b in blocks}
        inner = {int(b.name.split("_")[4]) for b in blocks}
        return family, dict(num_hidden_groups=len(groups), inner_group_num=len(inner))
    if family == "roberta":
        return ("xlm_roberta" if encoder.name.startswith("xlm_roberta") else family,
                dict(pad_token_id=embeddings.padding_idx))
    if family == "deberta_v2":
        attention = blocks[0].attention
        pooler = [layer for layer in encoder.layers if isinstance(layer, BertPooler)]
        return family, dict(position_buckets=attention.position_buckets,
                            max_relative_positions=attention.max_relative_positions,
                            pos_att_type=tuple(attention.pos_att_type), share_att_key=attention.share_att_key,
                            norm_rel_ebd="layer_norm" if embeddings.use_relative_layer_norm else "none",
                            pooler_hidden_act=pooler[0].activation if pooler else "gelu")
    return family, {}


def student_from_teacher(teacher, num_layers, name=None):
    """A classifier like `teacher` with only its first `num_layers` layers.

    The encoder configuration (family, vocabulary, widths, heads, activation,
    epsilon, dropout, position table, segment vocabulary, pre/post-LN, learned
    or sinusoidal positions, static sequence length, and what the families add:
    ALBERT's embedding width and shared groups, ELECTRA's embedding projection
    and first-token pooled output, RoBERTa's / XLM-R's padding-based positions,
    DistilBERT's missing token types and ReLU `pre_classifier`) is read off the
    teacher's layers; the student's embeddings, embedding projection, blocks
    `0..num_layers-1`, final LayerNorm (pre-LN), pooler and classification head
    start as copies of the teacher's weights (the common "take every layer up
    to k" initialisation). ALBERT shares its blocks across depth, so its
    student keeps every shared group and applies them over `num_layers` layers
    (with one group, as in every released ALBERT: exactly the teacher's first
    `num_layers` layers). The teacher is left unchanged and shares no variable
    with the student.

    Args:
        teacher: a kzoo classifier (`kzoo.models.bert_classifier`) of any family.
        num_layers: layers of the student, 1..teacher's.
        name: student model name (default: "<teacher name>_student_<k>l").

    Returns:
        A `bert_classifier` model (logits out).

    Example:
    >>> config = configs.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2,
    ...                             num_attention_heads=2, intermediate_size=32)
    >>> student = student_from_teacher(bert_classifier(config, num_classes=3), num_layers=1)
    >>> len([l for l in find_encoder(student).layers if isinstance(l, TransformerEncoderBlock)])
    1
    """
    encoder = find_encoder(teacher)
    head = _classifier_head(teacher)
    embeddings, blocks, poolers, final_norms, projections = _encoder_parts(encoder)
    family, structure = _family(encoder, embeddings, blocks)
    depth = len(encoder.output["encoder_outputs"])
    if isinstance(num_layers, bool) or not isinstance(num_layers, (int, np.integer)) or not (
            1 <= num_layers <= depth):
        raise ValueError(f"num_layers must be an integer in [1, {depth}] (the teacher's layers), "
                         f"got {num_layers!r}")
    num_layers = int(num_layers)
    first = blocks[0]
    hidden_size = encoder.output["sequence_output"].shape[-1]
    config = configs.BertConfig(
        vocab_size=embeddings.vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=first.num_heads,
        intermediate_size=first.intermediate_size,
        hidden_act=first.activation,
        hidden_dropout_prob=first.dropout_rate,
        attention_probs_dropout_prob=first.attention_dropout,
        max_position_embeddings=embeddings.max_position_embeddings,
        type_vocab_size=embeddings.type_vocab_size,
        initializer_range=embeddings.initializer_range,
        layer_norm_eps=first.layer_norm_eps,
        family=family,
        max_relative_position=first.max_relative_position,
        relative_position_values=first.relative_position_values,
        use_absolute_positions=embeddings.position_embedding != "none",
        embedding_size=embeddings.hidden_size if embeddings.hidden_size != hidden_size or projections else None,
        **structure,
    )
    seq_length = encoder.inputs[0].shape[1]
    student_encoder = bert_encoder(
        config,
        norm_first=first.norm_first,
        position_embedding=embeddings.position_embedding,
        seq_length=seq_length,
        dropout=embeddings.dropout_rate,
        attention_dropout=first.attention_dropout,
        name=encoder.name,
    )
    pooling = find_pooling(teacher)
    student = bert_classifier(
        student_encoder, num_classes=head.num_classes, dropout=head.dropout_rate,
        seq_length=teacher.inputs[0].shape[1], name=name or f"{teacher.name}_student_{num_layers}l",
        pooling=pooling.mode if pooling is not None else "pooler",
    )
    s_embeddings, s_blocks, s_poolers, s_final_norms, s_projections = _encoder_parts(student_encoder)
    pairs = [(embeddings, s_embeddings), (head, _classifier_head(student))]
    pairs += list(zip(blocks if family == "albert" else blocks[:num_layers], s_blocks))
    pairs += list(zip(poolers, s_poolers)) + list(zip(final_norms, s_final_norms))
    pairs += list(zip(projections, s_projections))
    for source, target in pairs:
        target.set_weights(source.get_weights())
    return student


def distillation_model(student, name=None):
    """The training model: the student's logits under two output names.

    Outputs `{"logits": s, "distill": s}` ("distill" through an Identity
    layer) so the hard labels and the teacher's logits get separate losses;
    see `kzoo.training.distillation_losses`. It shares every layer with `student`.

    Args:
        student: a classifier `keras.Model` on the encoder input dict.
        name: model name (default: "<student name>_distillation").

    Example:
    >>> config = configs.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
    ...                             num_attention_heads=2, intermediate_size=32)
    >>> model = distillation_model(bert_classifier(config, num_classes=3))
    >>> from kzoo.training import distillation_losses
    >>> loss, loss_weights = distillation_losses(temperature=2.0, alpha=0.5)
    >>> model.compile(optimizer="adam", loss=loss, loss_weights=loss_weights)
    >>> sorted(model.output)
    ['distill', 'logits']
    """
    inputs = encoder_inputs(student.inputs[0].shape[1])
    logits = student(inputs)
    distill = keras.layers.Identity(name="distill")(logits)
    return keras.Model(inputs, {"logits": logits, "distill": distill}, name=name or f"{student.name}_distillation")


def teacher_logits(teacher, dataset):
    """The teacher's logits (inference mode) for every example of `dataset`,
    in dataset order, as a float32 numpy array [examples, classes].

    Args:
        teacher: a classifier `keras.Model`.
        dataset: a batched `tf.data.Dataset` of features dicts or of
            (features, labels[, ...]) tuples. It is iterated once: it must not
            reshuffle if the logits are to be zipped with another pass.

    Example:
    >>> config = configs.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
    ...                             num_attention_heads=2, intermediate_size=32)
    >>> ids = np.ones((5, 4), "int32")
    >>> ds = tf.data.Dataset.from_tensor_slices(
    ...     {"input_word_ids": ids, "input_mask": ids, "input_type_ids": ids * 0}).batch(2)
    >>> teacher_logits(bert_classifier(config, num_classes=3), ds).shape
    (5, 3)
    """
    if isinstance(dataset.element_spec, tuple):
        dataset = dataset.map(lambda features, *rest: features)

    @tf.function(reduce_retracing=True)
    def predict(features):
        return tf.cast(teacher(features, training=False), tf.float32)

    chunks = [predict(features).numpy() for features in dataset]
    if not chunks:
        return np.zeros((0, teacher.output_shape[-1]), np.float32)
    return np.concatenate(chunks)
