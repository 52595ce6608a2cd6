"""Training: optimisers, schedules, adaptation techniques, metrics, strategies and fine-tuning workflows."""

from kzoo.training.callbacks import LearningRateLogger
from kzoo.training.distribution import DTYPE_POLICIES, DistributionOptions, dtype_policy_scope
from kzoo.training.common import load_tokenizer, save_model, save_tokenizer, standard_callbacks, write_json_atomically
from kzoo.training.freezing import (GradualUnfreezing, count_parameters, freeze, layer_groups,
                                    log_trainable_parameters, set_trainable_groups, unfreezing_stages)
from kzoo.training.losses import DistillationLoss
from kzoo.training.metrics import F1Score, MatthewsCorrelation, task_metrics
from kzoo.training.optimization import (SCHEDULES, AdamW, SlantedTriangular, WarmupCosineDecay, WarmupLinearDecay,
                                        create_optimizer, create_schedule, layerwise_lr_groups, lr_multipliers)
from kzoo.training.recipe import AdaptationOptions, prepare_training
from kzoo.training.regularizers import apply_l2sp, l2sp_penalty, remove_l2sp
from kzoo.training.finetune import ClassifierRun, read_inputs, run_classifier, write_predictions
from kzoo.training.squad import SquadRun, run_squad
from kzoo.training.strategy import STRATEGIES, get_strategy, is_chief, is_tpu_strategy, strategy_summary
from kzoo.training.tagger import TaggerRun, run_tagger
from kzoo.training.pretraining import PretrainingRun, run_pretraining
