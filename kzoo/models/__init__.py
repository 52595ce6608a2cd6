"""Functions that return `keras.Model`s: encoders, task models, pretraining
models, and the models adaptation builds around them (multi-task,
distillation, ensembles)."""

from kzoo.models.classifier import bert_classifier
from kzoo.models.encoder import (INPUT_NAMES, albert_encoder, bert_encoder, deberta_v2_encoder, distilbert_encoder,
                                 electra_encoder, encoder_inputs, roberta_encoder, xlm_roberta_encoder)
from kzoo.models.task_models import bert_span_labeler, bert_token_classifier
from kzoo.models.adaptation import (enable_parameter_efficient_training, load_adaptation_weights, merge_lora,
                                    save_adaptation_weights)
from kzoo.models.dual_encoder import DualEncoder, multiple_negatives_ranking_loss
from kzoo.models.distillation import distillation_model, student_from_teacher, teacher_logits
from kzoo.models.electra import ElectraPretrainer, electra_pretrainer
from kzoo.models.ensemble import classifier_ensemble
from kzoo.models.multitask import auxiliary_mlm_dataset, with_auxiliary_mlm
from kzoo.models.pretrainer import (BertPretrainer, MaskedLMAccuracy, MaskedLMLoss, bert_pretrainer, compile_pretrainer,
                                    fill_mask, masked_lm_head, pretraining_losses, pretraining_metrics)
from kzoo.models.sentence import sentence_encoder
from kzoo.models.walk import encoder_family, encoder_parts, find_encoder
