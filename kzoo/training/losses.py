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


def distillation_losses(temperature=2.0, alpha=0.5):
    """`(loss, loss_weights)` for `distillation_model(...).compile`.

    Total loss `(1 - alpha) * CE(labels, s) + alpha * T^2 KL(teacher_T || s_T)`.

    Args:
        temperature: distillation temperature T.
        alpha: weight of the soft (teacher) term, in [0, 1].

    Example:
    >>> loss, weights = distillation_losses(temperature=4.0, alpha=0.9)
    >>> weights
    {'logits': 0.09999999999999998, 'distill': 0.9}
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    loss = {
        "logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        "distill": DistillationLoss(temperature),
    }
    return loss, {"logits": 1.0 - alpha, "distill": alpha}
