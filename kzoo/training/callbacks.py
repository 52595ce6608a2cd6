"""Training callbacks: `LearningRateLogger` (per-group learning rates to
TensorBoard), `AtomicModelCheckpoint` and `AtomicBackupAndRestore` (per-epoch
checkpoints and resumable backups, written atomically on any `tf.io.gfile` file
system: local disk, `gs://`, ...), `atomic_path` (from `kzoo.io`)."""

import os

import keras
import tensorflow as tf
from absl import logging

from kzoo import io as kzoo_io
from kzoo.training.strategy import is_chief


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


# ---------------------------------------------------------------------------
# Atomic writes, per-epoch checkpoints and resumable backups.
# ---------------------------------------------------------------------------

# Re-exported: the atomic writes live in `kzoo.io`, which works on any `tf.io.gfile` file system.
TMP_PREFIX = kzoo_io.TMP_PREFIX
atomic_path = kzoo_io.atomic_path


def save_weights_atomically(model, path):
    """`model.save_weights(path)` (a `.weights.h5`, optimizer state included
    when compiled) through `atomic_path`."""
    with atomic_path(path) as tmp:
        model.save_weights(tmp)
    return path


def _write_json(path, value):
    kzoo_io.write_json(path, value, indent=2)


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """`keras.callbacks.ModelCheckpoint` that writes every file through
    `kzoo.io.atomic_path` (a temporary file, then a rename onto the
    checkpoint name; `filepath` may be on any `tf.io.gfile` file system), so
    a run killed while saving never leaves a half-written file under a
    checkpoint name. Under a multi-worker strategy only the chief writes.
    Same arguments and file names as `ModelCheckpoint`."""

    def _save_model(self, epoch, batch, logs):
        filepath = self._get_file_path(epoch, batch, logs)
        if not self._should_save_model(epoch, batch, logs, filepath):
            return
        if not is_chief(self.model.distribute_strategy):
            return
        if kzoo_io.isdir(filepath):
            raise IOError(f"Please specify a non-directory filepath for ModelCheckpoint. Filepath used is an "
                          f"existing directory: {filepath}")
        with atomic_path(filepath) as tmp:
            if self.save_weights_only:
                self.model.save_weights(tmp, overwrite=True)
            else:
                self.model.save(tmp, overwrite=True)
        if self.verbose > 0:
            keras.utils.io_utils.print_msg(f"\nEpoch {epoch + 1}: finished saving model to {filepath}")


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Backs up the training state so that a killed `fit` started again with
    the same arguments resumes where the last backup left it, mid-epoch
    included, and ends with the same number of optimizer steps as a run that
    was never interrupted.

    What Keras 3.15's own `BackupAndRestore` does not do, and this does:

    * Mid-epoch resume. Keras records the batch of a step-wise backup but on
      restore only sets the epoch, so the interrupted epoch is trained again
      from its first batch: `optimizer.iterations` ends higher than an
      uninterrupted run's (and the schedule is off by as much). Here the
      first `k` batches of the resumed epoch, those already trained before
      the backup, are drawn from the dataset and dropped without a training
      step; the epoch then trains its remaining batches. Callbacks still see
      a batch event for each skipped batch (with empty logs), so batch
      indices and progress bars stay those of the epoch.
    * Atomic, consistent backups. Keras overwrites `latest.weights.h5` in
      place and then `training_metadata.json`: a kill during the first write
      leaves a corrupt file, between the two a new state with the old epoch.
      Here each backup writes a new `backup-epochE-stepK.weights.h5` (temporary
      file, then rename); then `training_metadata.json`, which names that
      file, is replaced atomically; this rename is the commit point. Only
      then are older backup files removed. A restart trusts only
      `training_metadata.json`, so it always finds the weights it names,
      complete. Files no metadata names (left by a kill before the commit)
      are removed at the next backup. This holds on any `tf.io.gfile` file
      system (`kzoo.io`): on object stores (`gs://`) one file is committed
      by a rename too, whose copy appears complete at once.

    Saved state: the model's weights with the optimizer's state (its
    `iterations`, hence the learning-rate schedule's position), the epoch and
    the number of batches of it already trained. Not saved: data-pipeline
    position and random-generator states. So data order is *not* replayed:
    the resumed epoch draws a fresh pass over the dataset, drops its first
    `k` batches and trains the rest; when the dataset reshuffles every epoch
    (kzoo's do), those remaining batches are not the same examples the
    uninterrupted run would have seen (some examples are seen twice in that
    epoch and some not at all), and dropout masks differ. The optimizer step
    count, the schedule and the epoch structure are what match exactly.
    Metrics logged for the resumed epoch average only the batches trained
    after the restart.

    Backups happen every `save_freq` training batches (counted over the whole
    run, restarts included; an integer) and at the end of every epoch (after
    the callbacks listed before this one, so put it last). The backup folder
    is deleted when `fit` completes (`delete_checkpoint=True`), so a later
    run does not resume a finished one; a run that raises keeps it. Under a
    multi-worker strategy only the chief writes and every worker restores
    from `backup_dir`, which must then be shared (a `gs://` folder, or a
    mounted file system).

    The restarted `fit` must use the same model, optimizer, data, epochs and
    steps per epoch; a different steps-per-epoch count is logged as a
    warning.

    Args:
        backup_dir: folder for the backup, local or on any `tf.io.gfile` file
            system (`gs://...`); used by nothing else.
        save_freq: "epoch" (or 0/None): at the end of every epoch only; an
            integer N > 0: also every N training batches.
        delete_checkpoint: delete `backup_dir` when `fit` completes.

    Attributes:
        restored: after `on_train_begin`, the metadata restored (a dict with
            `epoch`, `steps_in_epoch`, `steps`, `iterations`, ...) or None.

    Example:
    >>> import tempfile
    >>> backup = AtomicBackupAndRestore(tempfile.mkdtemp(), save_freq=2)
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> model.compile(keras.optimizers.SGD(0.1), "mse")
    >>> _ = model.fit(tf.ones((8, 2)), tf.ones((8, 1)), batch_size=2, epochs=2, verbose=0, callbacks=[backup])
    >>> int(model.optimizer.iterations), os.path.exists(backup.backup_dir)
    (8, False)
    """

    METADATA = "training_metadata.json"
    FORMAT = "kzoo-backup-1"

    def __init__(self, backup_dir, save_freq="epoch", delete_checkpoint=True):
        if save_freq in (0, None, False):
            save_freq = "epoch"
        if save_freq != "epoch" and (isinstance(save_freq, bool) or not isinstance(save_freq, int)
                                     or save_freq < 0):
            raise ValueError(f"save_freq must be 'epoch' or an integer >= 0, got {save_freq!r}")
        super().__init__(os.fspath(backup_dir), save_freq=save_freq, double_checkpoint=False,
                         delete_checkpoint=delete_checkpoint)
        self._metadata_path = kzoo_io.join(self.backup_dir, self.METADATA)
        self.restored = None
        self._chief = True
        self._reset_position()

    def _reset_position(self):
        self._epoch = 0
        self._steps_in_epoch = 0
        self._steps = 0
        self._resume_epoch = None
        self._skip = None

    # -- restore ---------------------------------------------------------

    def read_metadata(self):
        """The committed backup's metadata, or None when there is none."""
        try:
            metadata = kzoo_io.read_json(self._metadata_path)
        except FileNotFoundError:
            return None
        if metadata.get("format") != self.FORMAT:
            raise ValueError(f"{self._metadata_path}: not a kzoo backup (format {metadata.get('format')!r}); "
                             f"delete {self.backup_dir} to start afresh")
        return metadata

    def on_train_begin(self, logs=None):
        self._reset_position()
        self.restored = None
        self._chief = is_chief(self.model.distribute_strategy)
        metadata = self.read_metadata()
        if metadata is None:
            return
        if not self.model.built:
            raise ValueError("AtomicBackupAndRestore: build the model before fit() so that a backup can be "
                             "restored into it")
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:
            with self.model.distribute_strategy.scope():
                optimizer.build(self.model.trainable_variables)
        weights = kzoo_io.join(self.backup_dir, metadata["weights"])
        try:
            self.model.load_weights(weights)
        except Exception as e:
            raise ValueError(f"{weights}: cannot restore the backup named by {self._metadata_path} ({e}); "
                             f"delete {self.backup_dir} to start afresh") from e
        self._epoch = int(metadata["epoch"])
        self._steps_in_epoch = int(metadata["steps_in_epoch"])
        self._steps = int(metadata["steps"])
        self._resume_epoch = self._epoch
        # Keras' trainer reads `_initial_epoch` right after `on_train_begin`.
        self.model._initial_epoch = self._epoch
        expected = self.params.get("steps") if self.params else None
        if expected and metadata.get("steps_per_epoch") and expected != metadata["steps_per_epoch"]:
            logging.warning("backup %s was written with %d steps per epoch, this fit has %d: the resumed run "
                            "will not match an uninterrupted one", self.backup_dir, metadata["steps_per_epoch"],
                            expected)
        iterations = int(optimizer.iterations.numpy()) if optimizer is not None else None
        logging.info("resuming from backup %s: epoch %d, %d of its batches already trained (skipped now), "
                     "optimizer step %s", self.backup_dir, self._epoch + 1, self._steps_in_epoch, iterations)
        self.restored = dict(metadata, restored_iterations=iterations)
        if self._steps_in_epoch > 0:
            self._install_skip(self._steps_in_epoch)

    def _install_skip(self, count):
        """Wraps `model.train_function` so that its next `count` batches are
        drawn from the iterator and dropped, with no training step."""
        model = self.model
        original = model.train_function
        steps_per_execution = max(1, int(getattr(model, "steps_per_execution", 1) or 1))
        left = [count]

        def train_function(iterator):
            if left[0] <= 0:
                return original(iterator)
            for _ in range(min(steps_per_execution, left[0])):
                if not isinstance(iterator, (list, tuple)):  # backends that pass the batches already drawn
                    next(iterator)  # StopIteration ends the epoch, as it would in training
                left[0] -= 1
            if left[0] <= 0 and model.train_function is train_function:
                model.train_function = original
            return {}

        train_function.kzoo_skip_original = original
        model.train_function = train_function
        self._skip = train_function

    def _remove_skip(self):
        skip, self._skip = self._skip, None
        if skip is not None and self.model.train_function is skip:
            self.model.train_function = skip.kzoo_skip_original

    # -- progress and backups ----------------------------------------------

    def on_epoch_begin(self, epoch, logs=None):
        self.model._initial_epoch = None  # read already; a later fit() must not inherit it
        if epoch != self._resume_epoch:
            self._remove_skip()
            self._steps_in_epoch = 0
        self._resume_epoch = None
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        done = batch + 1
        if done <= self._steps_in_epoch:  # a skipped batch, trained before the restart
            return
        before = self._steps
        self._steps += done - self._steps_in_epoch
        self._steps_in_epoch = done
        if self.save_freq != "epoch" and self._steps // self.save_freq > before // self.save_freq:
            self._save_model()

    def on_epoch_end(self, epoch, logs=None):
        self._remove_skip()
        self._epoch = epoch + 1
        self._steps_in_epoch = 0
        self._save_model()

    def _save_model(self):
        if not self._chief:
            return
        kzoo_io.makedirs(self.backup_dir)
        name = f"backup-epoch{self._epoch:04d}-step{self._steps_in_epoch:07d}.weights.h5"
        save_weights_atomically(self.model, kzoo_io.join(self.backup_dir, name))
        optimizer = self.model.optimizer
        metadata = {
            "format": self.FORMAT,
            "weights": name,
            "epoch": self._epoch,  # the epoch to resume (0-based)
            "steps_in_epoch": self._steps_in_epoch,  # batches of it already trained
            "steps": self._steps,  # training batches over the whole run
            "iterations": int(optimizer.iterations.numpy()) if optimizer is not None else None,
            "steps_per_epoch": self.params.get("steps") if self.params else None,
            "epochs": self.params.get("epochs") if self.params else None,
        }
        _write_json(self._metadata_path, metadata)  # the commit point
        for entry in kzoo_io.listdir(self.backup_dir):  # this chief is the backup's only writer
            if entry != name and entry != self.METADATA and (
                    entry.startswith(TMP_PREFIX) or (entry.startswith("backup-") and entry.endswith(".weights.h5"))):
                try:
                    kzoo_io.remove(kzoo_io.join(self.backup_dir, entry))
                except (OSError, tf.errors.OpError):
                    pass

    def on_train_end(self, logs=None):
        self._remove_skip()
        self.model._initial_epoch = None
        if self.delete_checkpoint and self._chief and kzoo_io.exists(self.backup_dir):
            # The commit file first: a kill in the middle never leaves metadata naming deleted weights.
            try:
                kzoo_io.remove(self._metadata_path)
                kzoo_io.rmtree(self.backup_dir)
            except (OSError, tf.errors.OpError) as e:
                logging.warning("could not delete the backup %s: %s", self.backup_dir, e)
