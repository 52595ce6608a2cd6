"""Losses for knowledge distillation."""

import keras


@keras.saving.register_keras_serializable(package="kzoo")
class DistillationLoss(keras.losses.Loss):
    """Hinton et al. (2015) soft-target loss between teacher and student logits.

    Per example `T^2 * KL(softmax(t / T) || softmax(s / T))` (in nats), averaged
    over the batch by the default reduction. The `T^2` factor keeps the
    gradient scale independent of the temperature, so the loss can be mixed
    with the hard-label cross-entropy at fixed weights.

    Args:
        temperature: softmax temperature T > 0.
        reduction, name: as for any `keras.losses.Loss`.

    Call args:
        y_true: teacher logits [batch, classes].
        y_pred: student logits [batch, classes].

    Example:
    >>> loss = DistillationLoss(temperature=2.0)
    >>> float(loss(keras.ops.array([[1.0, 2.0]]), keras.ops.array([[1.0, 2.0]])))
    0.0
    """

    def __init__(self, temperature=2.0, reduction="sum_over_batch_size", name="distillation_loss", dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = float(temperature)

    def call(self, y_true, y_pred):
        t = keras.ops.cast(y_true, "float32") / self.temperature
        s = keras.ops.cast(y_pred, "float32") / self.temperature
        log_p = keras.ops.log_softmax(t, axis=-1)
        log_q = keras.ops.log_softmax(s, axis=-1)
        kl = keras.ops.sum(keras.ops.exp(log_p) * (log_p - log_q), axis=-1)
        return self.temperature**2 * kl

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}
