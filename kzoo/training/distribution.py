"""Where and how a workflow trains: strategy, precision, static shapes, backups.

`DistributionOptions` is the dataclass every workflow's run inherits (one absl
flag per field, `kzoo.cli.flags.define_distribution_flags`), so every
script takes the same strategy flags.
"""

import contextlib
import dataclasses
import os

import keras
from absl import logging

from kzoo.training import strategy as strategy_lib

DTYPE_POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")


@dataclasses.dataclass
class DistributionOptions:
    """Strategy, precision and resilience options shared by all workflows.

    Attributes:
        distribution_strategy: a name in `kzoo.training.strategy.STRATEGIES`.
            Batch sizes are global: each batch is split across the replicas.
        num_gpus: mirrored: how many local GPUs (0: all of them, or the
            CPU when there is none).
        worker_hosts: multi_worker_mirrored without TF_CONFIG:
            "host:port,host:port" of every worker.
        task_index: multi_worker_mirrored with worker_hosts: this worker.
        tpu: tpu: the TPU name, grpc:// address, or "local" (TPU VM).
        dtype_policy: "float32", "mixed_float16" (with dynamic loss scaling)
            or "mixed_bfloat16"; heads' logits and losses stay float32.
        backup_steps: back up the training state every N optimizer steps (0:
            at the end of every epoch only), so a killed run started again
            with the same command resumes from the last backup.
    """

    distribution_strategy: str = "default"
    num_gpus: int = 0
    worker_hosts: str = None
    task_index: int = None
    tpu: str = None
    dtype_policy: str = "float32"
    backup_steps: int = 0

    def validate_distribution(self):
        if self.dtype_policy not in DTYPE_POLICIES:
            raise ValueError(f"dtype_policy must be one of {DTYPE_POLICIES}, got {self.dtype_policy!r}")
        if self.backup_steps < 0:
            raise ValueError(f"backup_steps must be >= 0, got {self.backup_steps}")

    def make_strategy(self):
        """The `tf.distribute.Strategy` these options name (logged)."""
        self.validate_distribution()
        strategy = strategy_lib.get_strategy(
            self.distribution_strategy, num_gpus=self.num_gpus or None, worker_hosts=self.worker_hosts or None,
            task_index=self.task_index, tpu=self.tpu or None)
        logging.info("distribution: %s; global batch sizes are split across the replicas; dtype policy %s",
                     strategy_lib.strategy_summary(strategy), self.dtype_policy)
        return strategy

    def static(self, strategy, static_shapes=False):
        """Whether inputs must have static shapes and the step be XLA-compiled:
        asked for, or required by a TPU strategy."""
        return bool(static_shapes) or strategy_lib.is_tpu_strategy(strategy)

    def for_this_worker(self, strategy):
        """These options as this process should use them: unchanged on the
        chief (or without multi-worker training); on other workers, outputs go
        to `<model_dir>/workers/<type>_<index>` and nothing is exported, so
        workers sharing a file system never write the same files (every
        worker still runs the same steps and holds the same weights)."""
        if strategy_lib.is_chief(strategy):
            return self
        resolver = strategy.cluster_resolver
        task = (resolver.task_type, int(resolver.task_id or 0))
        changes = {"model_dir": os.path.join(self.model_dir, "workers", f"{task[0]}_{task[1]}")}
        if hasattr(self, "export_dir"):
            changes["export_dir"] = ""
        logging.info("worker %s %d: outputs go to %s (the chief writes the real ones)", task[0], task[1],
                     changes["model_dir"])
        worker = dataclasses.replace(self, **changes)
        worker._backup_dir = self.backup_dir()  # every worker restores the chief's backup
        return worker

    def backup_dir(self):
        """The training-state backup folder: `<model_dir>/backup` (the
        chief's, on every worker of a multi-worker run)."""
        return getattr(self, "_backup_dir", None) or os.path.join(self.model_dir, "backup")

    def model_scope(self, strategy):
        """Strategy scope plus the dtype policy, for building models."""
        return _scopes(strategy.scope(), dtype_policy_scope(self.dtype_policy))


@contextlib.contextmanager
def _scopes(*managers):
    with contextlib.ExitStack() as stack:
        for manager in managers:
            stack.enter_context(manager)
        yield


@contextlib.contextmanager
def dtype_policy_scope(name):
    """Sets Keras' global dtype policy for the layers built inside, then
    restores the previous one (layers keep the policy they were built with)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
