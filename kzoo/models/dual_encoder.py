"""Dual encoders trained with in-batch negatives (the MultipleNegativesRanking objective).

For a batch of (anchor a_i, positive p_i[, hard negative n_i]) the anchors are scored against
every positive (and every hard negative) of the batch with scaled cosine similarities, and the
loss is the softmax cross-entropy of picking each anchor's own positive (Henderson et al. 2017;
sentence-transformers' `MultipleNegativesRankingLoss`, scale 20 by default). With `symmetric`
the positives also pick their anchor among all anchors and the two losses are averaged
(sentence-transformers' `MultipleNegativesSymmetricRankingLoss`).

Under `tf.distribute` (MirroredStrategy, MultiWorkerMirroredStrategy) every replica gathers the
embeddings of the whole global batch (`ReplicaContext.all_gather`, whose gradient sends each
replica's share back), so the negatives are the global batch, not the replica's slice: two
replicas give the loss and the gradients of one device on the same global batch.
"""

import keras
import tensorflow as tf

from kzoo.models.sentence import find_pooling


def _gather(x):
    """`x` from every replica, concatenated in replica order (identity outside a strategy), and the
    offset of this replica's rows in the result."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return x, 0
    sizes = context.all_gather(tf.shape(x)[:1], axis=0)
    offset = tf.reduce_sum(sizes[:context.replica_id_in_sync_group])
    return context.all_gather(x, axis=0), offset


def _normalize(x):
    x = tf.cast(x, tf.float32)
    return x / tf.maximum(tf.norm(x, axis=-1, keepdims=True), 1e-12)


def multiple_negatives_ranking_loss(anchor, positive, negative=None, scale=20.0, symmetric=False):
    """Mean over this replica's anchors of the in-batch softmax cross-entropy (see the module
    docstring); the candidates are gathered from every replica. float32 scalar."""
    anchor, positive = _normalize(anchor), _normalize(positive)
    all_positive, offset = _gather(positive)
    candidates = all_positive
    if negative is not None:
        all_negative, _ = _gather(_normalize(negative))
        candidates = tf.concat([all_positive, all_negative], axis=0)
    labels = offset + tf.range(tf.shape(anchor)[0])
    logits = scale * tf.matmul(anchor, candidates, transpose_b=True)
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    if symmetric:
        all_anchor, _ = _gather(anchor)
        backward = scale * tf.matmul(positive, all_anchor, transpose_b=True)
        loss = (loss + tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                                                    logits=backward))) / 2
    return loss


class DualEncoder(keras.Model):
    """Two towers over the encoder input dicts: `anchor_encoder` embeds the anchors and
    `positive_encoder` the positives and hard negatives (the same model when the towers are
    shared). Both are `kzoo.models.sentence_encoder` models.

    Called on {"anchor": features, "positive": features[, "negative": features]} it returns the
    embeddings under the same keys. `fit` on such dicts (no labels) trains with
    `multiple_negatives_ranking_loss`; the logged `loss` is the global batch's.

    Args:
        anchor_encoder: the anchors' sentence encoder.
        positive_encoder: the positives' (None: shared towers, the anchor encoder).
        scale: the similarity scale (inverse temperature) of the softmax.
        symmetric: also the positive -> anchor direction, averaged.
    """

    def __init__(self, anchor_encoder, positive_encoder=None, scale=20.0, symmetric=False, **kwargs):
        super().__init__(**kwargs)
        for name, model in (("anchor_encoder", anchor_encoder), ("positive_encoder", positive_encoder)):
            if model is not None and find_pooling(model) is None:
                raise ValueError(f"{name} must be a kzoo.models.sentence_encoder (a model with a SentencePooling "
                                 f"layer), got {model.name!r}")
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        self.anchor_encoder = anchor_encoder
        self.positive_encoder = positive_encoder if positive_encoder is not None else anchor_encoder
        self.shared = positive_encoder is None or positive_encoder is anchor_encoder
        self.scale = float(scale)
        self.symmetric = bool(symmetric)
        self.loss_tracker = keras.metrics.Mean(name="loss")

    def call(self, inputs, training=False):
        out = {"anchor": self.anchor_encoder(inputs["anchor"], training=training),
               "positive": self.positive_encoder(inputs["positive"], training=training)}
        if "negative" in inputs:
            out["negative"] = self.positive_encoder(inputs["negative"], training=training)
        return out

    def replica_loss(self, inputs, training):
        """(loss of this replica's anchors, their count)."""
        out = self(inputs, training=training)
        loss = multiple_negatives_ranking_loss(out["anchor"], out["positive"], out.get("negative"), self.scale,
                                               self.symmetric)
        return loss, tf.shape(out["anchor"])[0]

    def train_step(self, data):
        with tf.GradientTape() as tape:
            loss, count = self.replica_loss(data, training=True)
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            # Gradients are summed over replicas: each contributes its mean / replicas, as Keras scales.
            scaled = self.optimizer.scale_loss(loss / replicas)
        gradients = tape.gradient(scaled, self.trainable_weights)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_weights))
        self.loss_tracker.update_state(loss, sample_weight=tf.cast(count, tf.float32))
        return {"loss": self.loss_tracker.result()}

    def test_step(self, data):
        loss, count = self.replica_loss(data, training=False)
        self.loss_tracker.update_state(loss, sample_weight=tf.cast(count, tf.float32))
        return {"loss": self.loss_tracker.result()}

    @property
    def metrics(self):
        return [self.loss_tracker]
