"""Ensembles of classifiers that average probabilities."""

import keras

from kzoo.models.encoder import encoder_inputs


@keras.saving.register_keras_serializable(package="kzoo")
class LogMeanProbability(keras.layers.Layer):
    """`log(sum_i w_i softmax(logits_i))`, float32, computed as
    `logsumexp_i(log w_i + log_softmax(logits_i))` (no underflow for confident
    members). Its softmax is the weighted mean probability, so it acts as
    "logits" wherever a classifier's logits do.

    Args:
        member_weights: one non-negative weight per member (normalised to sum 1).

    Example:
    >>> layer = LogMeanProbability([1.0, 1.0])
    >>> out = layer([keras.ops.array([[0.0, 0.0]]), keras.ops.array([[0.0, 100.0]])])
    >>> [round(float(p), 4) for p in keras.ops.softmax(out)[0]]
    [0.25, 0.75]
    """

    def __init__(self, member_weights, **kwargs):
        super().__init__(**kwargs)
        weights = [float(w) for w in member_weights]
        if not weights or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"weights must be non-negative with a positive sum, got {weights}")
        total = sum(weights)
        self.member_weights = [w / total for w in weights]

    def call(self, member_logits):
        if len(member_logits) != len(self.member_weights):
            raise ValueError(f"{self.name}: {len(member_logits)} inputs for {len(self.member_weights)} weights")
        terms = [
            keras.ops.log_softmax(keras.ops.cast(logits, "float32"), axis=-1) + keras.ops.log(w)
            for logits, w in zip(member_logits, self.member_weights)
            if w > 0
        ]
        return keras.ops.logsumexp(keras.ops.stack(terms, axis=0), axis=0)

    def compute_output_spec(self, member_logits):
        return keras.KerasTensor(member_logits[0].shape, dtype="float32")

    def get_config(self):
        return {**super().get_config(), "member_weights": self.member_weights}


def classifier_ensemble(classifiers, weights=None, name="ensemble"):
    """One "logits" model averaging the probabilities of several classifiers.

    Output: `log(sum_i w_i softmax(logits_i))` [batch, classes], float32;
    `softmax` of it is the weighted mean of the members' probabilities (the
    log of that mean is itself a valid logit vector), so the ensemble drops in
    wherever a classifier does, e.g. `kzoo.export.export_classifier`. The
    members keep their own variables (nested models); each sees the same
    encoder input dict, so they must share the tokenizer/vocabulary.

    Args:
        classifiers: classifier `keras.Model`s on the encoder input dict
            (logits out), with the same number of classes and distinct names.
        weights: one non-negative weight per member (default: equal),
            normalised to sum 1.
        name: model name.

    Example:
    >>> from kzoo import configs
    >>> from kzoo.models.classifier import bert_classifier
    >>> config = configs.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
    ...                             num_attention_heads=2, intermediate_size=32)
    >>> members = [bert_classifier(config, num_classes=3, name=f"member_{i}") for i in range(2)]
    >>> ensemble = classifier_ensemble(members, weights=[2, 1])
    >>> ids = keras.ops.ones((2, 4), "int32")
    >>> tuple(ensemble({"input_word_ids": ids, "input_mask": ids, "input_type_ids": ids * 0}).shape)
    (2, 3)
    """
    classifiers = list(classifiers)
    if not classifiers:
        raise ValueError("classifier_ensemble needs at least one classifier")
    classes = [model.output_shape[-1] for model in classifiers]
    if len(set(classes)) != 1:
        listing = ", ".join(f"{m.name!r}: {c}" for m, c in zip(classifiers, classes))
        raise ValueError(f"ensemble members must have the same number of classes, got {listing}")
    names = [model.name for model in classifiers]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"ensemble members need distinct names (Keras models require unique layer names); "
                         f"repeated: {duplicates}. Build them with name=... (e.g. bert_classifier(..., name='m1'))")
    if len({id(model) for model in classifiers}) != len(classifiers):
        raise ValueError("the same classifier object is given twice")
    if weights is None:
        weights = [1.0] * len(classifiers)
    if len(weights) != len(classifiers):
        raise ValueError(f"{len(weights)} weights for {len(classifiers)} classifiers")
    lengths = {model.inputs[0].shape[1] for model in classifiers}
    inputs = encoder_inputs(lengths.pop() if len(lengths) == 1 else None)
    member_logits = [model(inputs) for model in classifiers]
    outputs = LogMeanProbability(weights, name="log_mean_probability")(member_logits)
    return keras.Model(inputs, outputs, name=name)
