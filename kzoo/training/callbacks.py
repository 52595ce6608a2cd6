"""Training callbacks: `LearningRateLogger` (per-group learning rates to TensorBoard)."""

import keras
import tensorflow as tf


def _group_multipliers(groups_or_multipliers):
    """`{name: multiplier}` from `layerwise_lr_groups` output or a name -> float mapping."""
    out = {}
    for name, value in dict(groups_or_multipliers).items():
        if isinstance(value, (tuple, list)):
            value = value[0]
        try:
            out[str(name)] = float(value)
        except (TypeError, ValueError):
            raise TypeError(
                f"group {name!r}: expected a multiplier or a (multiplier, variables) pair, got {value!r}"
            ) from None
    return out


class LearningRateLogger(keras.callbacks.Callback):
    """Writes each group's learning rate to TensorBoard.

    The scalar `learning_rate/<group>` is `optimizer.learning_rate * multiplier`,
    where `optimizer.learning_rate` is the schedule evaluated at the optimizer's
    current `iterations` (the rate the next update will use), logged at step
    `iterations`. It is written every `every_n_steps` optimizer steps and at
    the end of every epoch (once per step).

    Args:
        log_dir: directory for the TensorBoard event files (e.g. the
            `TensorBoard` callback's `log_dir` + "/train").
        groups_or_multipliers: `kzoo.training.layerwise_lr_groups(...)` output
            (`name -> (multiplier, variables)`) or a `name -> multiplier`
            mapping, e.g. `{"all": 1.0}`.
        every_n_steps: logging period in optimizer steps (>= 1).

    Example:
    >>> import tempfile
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> model.compile(keras.optimizers.SGD(0.1), "mse")
    >>> logger = LearningRateLogger(tempfile.mkdtemp(), {"all": 1.0, "half": 0.5}, every_n_steps=1)
    >>> _ = model.fit(tf.ones((4, 2)), tf.ones((4, 1)), batch_size=2, verbose=0, callbacks=[logger])
    >>> logger.last_logged_step
    2
    """

    def __init__(self, log_dir, groups_or_multipliers, every_n_steps=10):
        super().__init__()
        if int(every_n_steps) < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.log_dir = log_dir
        self.multipliers = _group_multipliers(groups_or_multipliers)
        if not self.multipliers:
            raise ValueError("groups_or_multipliers is empty")
        self.every_n_steps = int(every_n_steps)
        self.last_logged_step = None
        self._writer = None

    def _log(self):
        optimizer = self.model.optimizer
        step = int(optimizer.iterations.numpy())
        if step == self.last_logged_step:
            return
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        rate = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        with self._writer.as_default():
            for name, multiplier in self.multipliers.items():
                tf.summary.scalar(f"learning_rate/{name}", rate * multiplier, step=step)
        self._writer.flush()
        self.last_logged_step = step

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) % self.every_n_steps == 0:
            self._log()

    def on_epoch_end(self, epoch, logs=None):
        self._log()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
