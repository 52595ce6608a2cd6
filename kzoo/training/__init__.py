"""Training machinery: optimisers and schedules, callbacks, freezing and the adaptation techniques, regularisers,
losses, metrics, strategies and precision.

The end-to-end workflows that use it (`ClassifierRun`, `run_classifier`, ...) live in `kzoo.tasks`.
"""

import importlib
import warnings

from kzoo.training.callbacks import LearningRateLogger
from kzoo.training.distribution import DTYPE_POLICIES, DistributionOptions, dtype_policy_scope
from kzoo.training.common import load_tokenizer, save_model, save_tokenizer, standard_callbacks, write_json_atomically
from kzoo.training.freezing import (GradualUnfreezing, count_parameters, freeze, layer_groups,
                                    log_trainable_parameters, set_trainable_groups, unfreezing_stages)
from kzoo.training.losses import DistillationLoss, distillation_losses
from kzoo.training.metrics import F1Score, MatthewsCorrelation, task_metrics
from kzoo.training.optimization import (OPTIMIZERS, SCHEDULES, AdamW, SlantedTriangular, WarmupConstant,
                                        WarmupCosineDecay, WarmupLinearDecay, create_optimizer, create_schedule, layerwise_lr_groups, lr_multipliers)
from kzoo.training.recipe import AdaptationOptions, prepare_training
from kzoo.training.regularizers import apply_l2sp, l2sp_penalty, remove_l2sp
from kzoo.training.strategy import STRATEGIES, get_strategy, is_chief, is_tpu_strategy, strategy_summary

# The workflows moved to kzoo.tasks; their old names here still resolve (lazily: kzoo.training never imports
# the tier above it) and warn.
_MOVED = {"ClassifierRun": "classification", "run_classifier": "classification", "read_inputs": "classification",
          "write_predictions": "classification", "SquadRun": "squad", "run_squad": "squad",
          "TaggerRun": "tagging", "run_tagger": "tagging", "PretrainingRun": "pretraining",
          "run_pretraining": "pretraining"}


def __getattr__(name):
    if name in _MOVED:
        warnings.warn(f"kzoo.training.{name} moved to kzoo.tasks.{name}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(f"kzoo.tasks.{_MOVED[name]}"), name)
    raise AttributeError(f"module 'kzoo.training' has no attribute {name!r}")
