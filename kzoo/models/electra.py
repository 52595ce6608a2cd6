"""ELECTRA replaced-token-detection pretraining (Clark et al., ICLR 2020).

A small generator (a BERT masked LM) fills the masked positions of a batch
with tokens sampled from its output distribution; the discriminator (the
encoder being pretrained) sees the corrupted sequence and predicts, for every
token, whether it was replaced. The generator is trained by its MLM loss, the
discriminator by the per-token sigmoid cross-entropy, and the two share their
input embeddings (ELECTRA's tied token and position embeddings), which take
the gradients of both losses. After pretraining the discriminator is the
model to keep: fine-tune or save `pretrainer.discriminator`.

`electra_pretrainer` trains on the batches of MLM pretraining:
`(features, labels)` with features = {`input_word_ids` (already masked,
e.g. `MLMMasker`'s `masked_input_word_ids`), `input_mask`, `input_type_ids`,
`masked_lm_positions` [batch, P] int32} and labels = {`mlm_logits`: the
original ids at those positions [batch, P], `-100` in padding slots}; other
label keys (e.g. `nsp_logits`) are ignored. The loss is built in (plain
`compile(optimizer=...)`, no `loss=`).
"""

import math

import keras
import tensorflow as tf

from kzoo.models.walk import find_encoder
from kzoo.layers.heads import IGNORE_LABEL
from kzoo.layers import activations
from kzoo.layers.embeddings import BertEmbeddings
from kzoo.layers.masked_lm import MaskedLMHead
from kzoo.layers.transformer import TransformerEncoderBlock
from kzoo.models.encoder import INPUT_NAMES, encoder_inputs

METRIC_NAMES = ("generator_loss", "discriminator_loss", "generator_accuracy", "discriminator_accuracy",
                "replaced_fraction")
_SEED_STATE_KEY = "sampling_seed_state"
POSITIONS = "masked_lm_positions"
GENERATOR_PROJECTION = "generator_embedding_projection"


def _positive_int(value, what):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return value


def _scale_for_replicas(loss):
    """Divides by the replicas in sync, as Keras' own losses do under
    tf.distribute (gradients are then summed across replicas)."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss / replicas if replicas > 1 else loss


def _flat(tensor):
    return tf.reshape(tensor, [-1])


def _scatter_at_positions(values, positions, valid, base):
    """`base` [b, seq] with `values` [b, P] written at `positions` [b, P]
    where `valid` [b, P] (bool) is True; invalid slots write nothing."""
    length = tf.shape(base)[1]
    hit = tf.one_hot(positions, length, dtype=base.dtype) * tf.cast(valid, base.dtype)[:, :, None]  # [b, P, seq]
    written = tf.reduce_sum(hit, axis=1) > 0
    return tf.where(written, tf.reduce_sum(hit * tf.cast(values, base.dtype)[:, :, None], axis=1), base)


@keras.saving.register_keras_serializable(package="kzoo")
class ElectraPretrainer(keras.Model):
    """Generator + discriminator trained jointly by replaced token detection.

    Build it with `electra_pretrainer` (which documents the arguments).
    `call(inputs, training=None)` returns a dict:

    - `mlm_logits` [batch, P, vocab] float32: generator logits at
      `masked_lm_positions`;
    - `sampled_ids` [batch, P] int32: one token per slot sampled from the
      generator's softmax (temperature 1, no gradient);
    - `corrupted_ids` [batch, seq] int32: `input_word_ids` with the samples
      written at the real masked slots (those with position > 0: padding
      slots are 0 and the [CLS] position 0 is never a prediction);
    - `rtd_logits` [batch, seq] float32: the discriminator's per-token
      "replaced" logit on `corrupted_ids`.

    `compute_loss` recomputes the original sequence from the inputs and
    `y["mlm_logits"]`, labels every real token 1 where `corrupted_ids` differ
    from it (a sample equal to the original token is labelled 0, as ELECTRA),
    and returns `generator_loss + discriminator_weight *
    discriminator_loss`; it also updates the `generator_loss`,
    `discriminator_loss`, `generator_accuracy`, `discriminator_accuracy` and
    `replaced_fraction` metrics. `sample_weight` is ignored.
    """

    def __init__(self, discriminator, generator_num_layers=None, generator_intermediate_size=None,
                 generator_num_heads=None, discriminator_weight=50.0, seed=None, name="electra_pretrainer",
                 generator_hidden_size=None, **kwargs):
        super().__init__(name=name, **kwargs)
        encoder = find_encoder(discriminator)
        (embeddings,) = [layer for layer in encoder.layers if isinstance(layer, BertEmbeddings)]
        blocks = [layer for layer in encoder.layers if isinstance(layer, TransformerEncoderBlock)]
        if not blocks:
            raise ValueError(f"encoder {encoder.name!r} has no TransformerEncoderBlock")
        first = blocks[0]
        hidden_size = first.output_dense.units  # the discriminator's width (after any embedding projection)
        if generator_hidden_size is None:
            generator_hidden_size = embeddings.hidden_size  # the shared embedding width: no projection
        _positive_int(generator_hidden_size, "generator_hidden_size")
        if generator_num_layers is None:
            generator_num_layers = max(1, math.ceil(len(blocks) / 3))
        if generator_intermediate_size is None:
            generator_intermediate_size = max(1, first.intermediate_size // 4)
        if generator_num_heads is None:
            generator_num_heads = first.num_heads
            if generator_hidden_size % generator_num_heads:
                generator_num_heads = max(1, generator_hidden_size // 64)  # ELECTRA's rule
        _positive_int(generator_num_layers, "generator_num_layers")
        _positive_int(generator_intermediate_size, "generator_intermediate_size")
        _positive_int(generator_num_heads, "generator_num_heads")
        if generator_hidden_size % generator_num_heads:
            raise ValueError(f"generator_num_heads {generator_num_heads} does not divide the generator's hidden "
                             f"size {generator_hidden_size}")
        if not isinstance(discriminator_weight, (int, float)) or discriminator_weight < 0:
            raise ValueError(f"discriminator_weight must be a non-negative number, got {discriminator_weight!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an integer or None, got {seed!r}")

        self.generator_num_layers = generator_num_layers
        self.generator_intermediate_size = generator_intermediate_size
        self.generator_num_heads = generator_num_heads
        self.generator_hidden_size = generator_hidden_size
        self.discriminator_weight = float(discriminator_weight)
        self.seed = seed
        self.discriminator = encoder
        self.generator = self._build_generator(encoder, embeddings, first)
        init = keras.initializers.TruncatedNormal(stddev=first.initializer_range)
        # ELECTRA's discriminator head: dense(hidden, hidden_act) then dense(1).
        self.rtd_dense = keras.layers.Dense(hidden_size, activation=activations.get_activation(first.activation),
                                            kernel_initializer=init, dtype=self.dtype_policy,
                                            name="discriminator_dense")
        self.rtd_logit = keras.layers.Dense(1, kernel_initializer=init, dtype=self.dtype_policy,
                                            name="discriminator_logit")
        self.rtd_dense.build((None, None, hidden_size))
        self.rtd_logit.build((None, None, hidden_size))
        self.seed_generator = keras.random.SeedGenerator(seed, name="generator_sampling_seed")
        self.generator_loss_tracker = keras.metrics.Mean(name="generator_loss")
        self.discriminator_loss_tracker = keras.metrics.Mean(name="discriminator_loss")
        self.generator_accuracy_tracker = keras.metrics.Mean(name="generator_accuracy")
        self.discriminator_accuracy_tracker = keras.metrics.Mean(name="discriminator_accuracy")
        self.replaced_fraction_tracker = keras.metrics.Mean(name="replaced_fraction")
        self.built = True

    def _build_generator(self, encoder, embeddings, first):
        seq_length = encoder.inputs[0].shape[1]
        inputs = encoder_inputs(seq_length)
        inputs[POSITIONS] = keras.Input((None,), dtype="int32", name="masked_lm_positions")
        x = embeddings(inputs["input_word_ids"], inputs["input_type_ids"])
        if self.generator_hidden_size != embeddings.hidden_size:  # ELECTRA's generator/embeddings_project
            x = keras.layers.Dense(self.generator_hidden_size, dtype=self.dtype_policy,
                                   kernel_initializer=keras.initializers.TruncatedNormal(
                                       stddev=first.initializer_range),
                                   name=GENERATOR_PROJECTION)(x)
        for i in range(self.generator_num_layers):
            x = TransformerEncoderBlock(
                num_heads=self.generator_num_heads,
                intermediate_size=self.generator_intermediate_size,
                activation=first.activation,
                dropout=first.dropout_rate,
                attention_dropout=first.attention_dropout,
                layer_norm_eps=first.layer_norm_eps,
                norm_first=first.norm_first,
                initializer_range=first.initializer_range,
                dtype=self.dtype_policy,
                name=f"generator_layer_{i}",
            )(x, padding_mask=inputs["input_mask"])
        if first.norm_first:
            x = keras.layers.LayerNormalization(epsilon=first.layer_norm_eps, dtype=self.dtype_policy,
                                                name="generator_final_layer_norm")(x)
        head = MaskedLMHead(
            vocab_size=embeddings.vocab_size,
            hidden_size=embeddings.hidden_size,
            activation=first.activation,
            layer_norm_eps=first.layer_norm_eps,
            initializer_range=embeddings.initializer_range,
            embeddings=embeddings,
            dtype=self.dtype_policy,
            name="generator_predictions",
        )
        logits = head(x, inputs[POSITIONS])
        return keras.Model(inputs, logits, name="generator")

    @property
    def generator_projection(self):
        """The generator's dense layer from the shared embedding width to its
        hidden size (ELECTRA's `generator/embeddings_project`), or None."""
        layers = [layer for layer in self.generator.layers if layer.name == GENERATOR_PROJECTION]
        return layers[0] if layers else None

    @property
    def generator_blocks(self):
        """The generator's `TransformerEncoderBlock`s, bottom to top."""
        return [self.generator.get_layer(f"generator_layer_{i}") for i in range(self.generator_num_layers)]

    @property
    def shared_embeddings(self):
        """The `BertEmbeddings` layer the generator and discriminator share."""
        return next(layer for layer in self.discriminator.layers if isinstance(layer, BertEmbeddings))

    @property
    def generator_head(self):
        """The generator's `MaskedLMHead` (tied to the shared word table)."""
        return self.generator.get_layer("generator_predictions")

    # ---------------------------------------------------------------- forward
    def call(self, inputs, training=None):
        missing = [key for key in INPUT_NAMES + (POSITIONS,) if key not in inputs]
        if missing:
            raise ValueError(f"{self.name}: inputs lack {missing}; expected {list(INPUT_NAMES) + [POSITIONS]}, "
                             f"got {sorted(inputs)}")
        word_ids = tf.cast(inputs["input_word_ids"], tf.int32)
        positions = tf.cast(inputs[POSITIONS], tf.int32)
        encoder_in = {"input_word_ids": word_ids, "input_mask": inputs["input_mask"],
                      "input_type_ids": inputs["input_type_ids"]}
        mlm_logits = self.generator({**encoder_in, "masked_lm_positions": positions}, training=training)
        mlm_logits = tf.cast(mlm_logits, tf.float32)

        vocab = self.generator_head.vocab_size
        flat = tf.reshape(tf.stop_gradient(mlm_logits), [-1, vocab])
        sampled = keras.random.categorical(flat, 1, dtype="int32", seed=self.seed_generator)
        sampled = tf.reshape(sampled, tf.shape(positions))
        corrupted = _scatter_at_positions(sampled, positions, positions > 0, word_ids)
        corrupted = tf.stop_gradient(corrupted)

        sequence_output = self.discriminator({**encoder_in, "input_word_ids": corrupted},
                                             training=training)["sequence_output"]
        rtd_logits = tf.cast(tf.squeeze(self.rtd_logit(self.rtd_dense(sequence_output)), -1), tf.float32)
        return {"mlm_logits": mlm_logits, "sampled_ids": sampled, "corrupted_ids": corrupted,
                "rtd_logits": rtd_logits}

    # ------------------------------------------------------------------- loss
    @staticmethod
    def rtd_labels(x, y, y_pred):
        """The discriminator targets [batch, seq] float32: 1 where
        `corrupted_ids` differ from the original ids (the inputs with the
        `y` targets written back at the real masked slots) on real tokens."""
        word_ids = tf.cast(x["input_word_ids"], tf.int32)
        positions = tf.cast(x[POSITIONS], tf.int32)
        targets = tf.cast(y["mlm_logits"] if isinstance(y, dict) else y, tf.int32)
        original = _scatter_at_positions(targets, positions, targets != IGNORE_LABEL, word_ids)
        replaced = tf.logical_and(tf.not_equal(tf.cast(y_pred["corrupted_ids"], tf.int32), original),
                                  tf.cast(x["input_mask"], tf.int32) > 0)
        return tf.cast(replaced, tf.float32)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        del sample_weight, training
        targets = tf.cast(y["mlm_logits"] if isinstance(y, dict) else y, tf.int32)
        slot_weight = tf.cast(targets != IGNORE_LABEL, tf.float32)
        mlm_logits = y_pred["mlm_logits"]
        safe_targets = tf.where(targets != IGNORE_LABEL, targets, 0)
        ce = keras.ops.sparse_categorical_crossentropy(safe_targets, mlm_logits, from_logits=True)
        generator_loss = tf.math.divide_no_nan(tf.reduce_sum(ce * slot_weight), tf.reduce_sum(slot_weight))

        labels = self.rtd_labels(x, targets, y_pred)
        token_weight = tf.cast(tf.cast(x["input_mask"], tf.int32) > 0, tf.float32)
        rtd_logits = y_pred["rtd_logits"]
        bce = keras.ops.binary_crossentropy(labels, rtd_logits, from_logits=True)
        discriminator_loss = tf.math.divide_no_nan(tf.reduce_sum(bce * token_weight), tf.reduce_sum(token_weight))

        batch = tf.shape(targets)[0]
        self.generator_loss_tracker.update_state(generator_loss, sample_weight=batch)
        self.discriminator_loss_tracker.update_state(discriminator_loss, sample_weight=batch)
        # Flat values and weights: the means are over slots / tokens, whatever the batch's padded length.
        flat = _flat
        predicted = tf.cast(tf.argmax(mlm_logits, axis=-1), tf.int32)
        self.generator_accuracy_tracker.update_state(flat(tf.cast(predicted == targets, tf.float32)),
                                                     flat(slot_weight))
        rtd_correct = tf.cast(tf.cast(rtd_logits > 0, tf.float32) == labels, tf.float32)
        self.discriminator_accuracy_tracker.update_state(flat(rtd_correct), flat(token_weight))
        self.replaced_fraction_tracker.update_state(flat(labels), flat(token_weight))

        total = _scale_for_replicas(generator_loss + self.discriminator_weight * discriminator_loss)
        for loss in self.losses:  # regularisers and add_loss, scaled as Keras does
            total = total + tf.cast(self._aggregate_additional_loss(loss), total.dtype)
        return total

    def compile(self, optimizer="rmsprop", loss=None, **kwargs):
        """`keras.Model.compile` without `loss`: the ELECTRA loss is built in."""
        if loss is not None:
            raise ValueError("ElectraPretrainer computes its own loss (generator MLM + weighted replaced-token "
                             "detection): compile it without loss=")
        super().compile(optimizer=optimizer, **kwargs)

    def compile_from_config(self, config):
        # Keras skips (with a warning) the compile of a model whose compile() is overridden.
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    # The sampling seed state is saved with the weights (Keras saves layer
    # variables only), so a reloaded model draws the same samples.
    def save_own_variables(self, store):
        super().save_own_variables(store)
        store[_SEED_STATE_KEY] = self.seed_generator.state

    def load_own_variables(self, store):
        keys = list(store.keys())
        if _SEED_STATE_KEY in keys:
            self.seed_generator.state.assign(store[_SEED_STATE_KEY])
        super().load_own_variables({key: store[key] for key in keys if key != _SEED_STATE_KEY})

    # --------------------------------------------------------- serialisation
    def get_config(self):
        return {
            "discriminator": keras.saving.serialize_keras_object(self.discriminator),
            "generator_num_layers": self.generator_num_layers,
            "generator_intermediate_size": self.generator_intermediate_size,
            "generator_num_heads": self.generator_num_heads,
            "generator_hidden_size": self.generator_hidden_size,
            "discriminator_weight": self.discriminator_weight,
            "seed": self.seed,
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["discriminator"] = keras.saving.deserialize_keras_object(config["discriminator"],
                                                                        custom_objects=custom_objects)
        return cls(**config)


def electra_pretrainer(discriminator, generator_num_layers=None, generator_intermediate_size=None,
                       generator_num_heads=None, discriminator_weight=50.0, seed=None, name="electra_pretrainer",
                       generator_hidden_size=None):
    """An ELECTRA replaced-token-detection pretraining model around an encoder.

    The generator is a smaller BERT masked LM built next to `discriminator`:
    it *shares* the discriminator's `BertEmbeddings` layer (word, position
    and segment tables and their LayerNorm: one set of variables, listed once
    in `model.weights`, trained by both losses), has its own
    `TransformerEncoderBlock`s (activation, dropout, epsilon and pre/post-LN
    copied from the discriminator's first block) and a `MaskedLMHead` tied to
    the shared word table. By default the generator works at the shared
    embedding width (the discriminator's hidden size for BERT-style
    encoders) and is made smaller by depth and feed-forward width.
    `generator_hidden_size` gives it ELECTRA's own shape instead: a
    `generator_embedding_projection` dense from the embedding width to that
    size (ELECTRA's `generator/embeddings_project`), blocks of that width,
    and a head whose transform maps it back to the embedding width before
    the tied table. The discriminator head is ELECTRA's: Dense(hidden,
    hidden_act) then Dense(1) on every token of the encoder's
    `sequence_output`.

    An official ELECTRA checkpoint holds the generator, the discriminator
    and both heads; `kzoo.checkpoints.load_pretrained(folder,
    with_heads=True)` builds this model with the checkpoint's generator sizes
    and loads all of it (`kzoo.checkpoints.electra_map`), so pretraining
    continues where ELECTRA's left off.

    The generator samples one replacement per masked slot from its softmax
    (temperature 1, `keras.random.categorical`, no gradient through the
    sample; works in `tf.function` and under `jit_compile=True` with static
    shapes). Slots whose position is 0 are padding and write nothing
    ([CLS] at position 0 is never a prediction); real positions are assumed
    distinct, as `MLMMasker` makes them. The discriminator target of a real
    token is 1 where the corrupted id differs from the original, so a sample
    equal to the original token counts as not replaced.

    Inputs and labels are those of MLM pretraining (see the module
    docstring); train with `compile(optimizer=...)` and `fit`. The fit logs
    hold `loss`, `generator_loss`, `discriminator_loss`,
    `generator_accuracy` (argmax over real masked slots),
    `discriminator_accuracy` (over real tokens) and `replaced_fraction`
    (share of real tokens labelled replaced). Under a tf.distribute
    strategy each replica's loss is divided by the number of replicas, as
    Keras' built-in losses are.

    Saving: `model.save("x.keras")` / `keras.models.load_model` round-trip
    (the discriminator is serialised in the config; the generator, its head
    tie and the sharing are rebuilt on load), as do
    `save_weights`/`load_weights`. Keep `model.discriminator` afterwards.

    Args:
        discriminator: a kzoo encoder (`bert_encoder`, or
            `load_pretrained(...).encoder`), or a model containing exactly one
            (found with `kzoo.models.find_encoder`).
        generator_num_layers: generator blocks; default a third of the
            discriminator's, rounded up (at least 1).
        generator_intermediate_size: generator feed-forward width; default a
            quarter of the discriminator's (at least 1).
        generator_num_heads: generator attention heads; default the
            discriminator's (with the width shared, fewer heads would only
            widen each head, not make the generator smaller), or ELECTRA's
            `generator_hidden_size // 64` (at least 1) when those do not
            divide the generator's width. Must divide it.
        discriminator_weight: lambda of the total loss
            `generator_loss + lambda * discriminator_loss` (ELECTRA: 50).
        seed: seed of the `keras.random.SeedGenerator` drawing the
            generator's samples (None: random).
        name: model name.
        generator_hidden_size: the generator's width (ELECTRA: a quarter of
            the discriminator's); default the shared embedding width (no
            projection).

    Returns:
        An `ElectraPretrainer`; `.discriminator` is the encoder,
        `.generator` the functional generator (encoder inputs +
        `masked_lm_positions` -> [batch, P, vocab] logits).

    Example:
    >>> from kzoo import configs
    >>> from kzoo.models.encoder import bert_encoder
    >>> config = configs.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=3,
    ...                             num_attention_heads=2, intermediate_size=32)
    >>> model = electra_pretrainer(bert_encoder(config), seed=0)
    >>> model.generator_num_layers, model.generator_intermediate_size
    (1, 8)
    >>> ids = keras.ops.ones((2, 6), "int32")
    >>> out = model({"input_word_ids": ids, "input_mask": ids, "input_type_ids": ids * 0,
    ...              "masked_lm_positions": keras.ops.convert_to_tensor([[1, 3], [2, 0]], "int32")})
    >>> tuple(out["mlm_logits"].shape), tuple(out["rtd_logits"].shape)
    ((2, 2, 50), (2, 6))
    >>> model.compile(optimizer="adam")
    """
    return ElectraPretrainer(
        discriminator,
        generator_num_layers=generator_num_layers,
        generator_intermediate_size=generator_intermediate_size,
        generator_num_heads=generator_num_heads,
        discriminator_weight=discriminator_weight,
        seed=seed,
        name=name,
        generator_hidden_size=generator_hidden_size,
    )
