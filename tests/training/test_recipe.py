"""AdaptationOptions -> frozen layers, regularisers, optimizer and callbacks."""

import keras
import numpy as np
import pytest

from kzoo import models
from kzoo.checkpoints.mapping import encoder_entries
from kzoo.models.walk import find_encoder
from kzoo.training import AdaptationOptions, AdamW, GradualUnfreezing, LearningRateLogger, l2sp_penalty
from kzoo.training import freezing
from kzoo.training.recipe import prepare_training


@pytest.mark.parametrize("kwargs, message", [
    (dict(adapter_type="bottleneck"), "adapter_type='bottleneck'"),
    (dict(lora_rank=4, lora_targets="query,gate"), "unknown ['gate']"),
    (dict(lora_rank=4, freeze_layers=2), "adapters/LoRA and freeze_layers"),
    (dict(feature_extraction=True, gradual_unfreezing=True), "feature_extraction and gradual_unfreezing"),
    (dict(chain_thaw=True), "add --gradual_unfreezing"),
    (dict(layerwise_lr_decay=1.5), "layerwise_lr_decay=1.5"),
    (dict(lr_schedule="step"), "lr_schedule='step'"),
    (dict(l2sp_alpha=-1.0), "must be >= 0"),
])
def test_impossible_options_name_the_flags(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        AdaptationOptions(**kwargs).validate()


def test_encoder_kwargs():
    assert AdaptationOptions().encoder_kwargs() == {}
    assert AdaptationOptions(adapter_type="pfeiffer", adapter_size=8, lora_rank=2, lora_targets="query, key").\
        encoder_kwargs() == dict(adapter_type="pfeiffer", adapter_size=8, lora_rank=2, lora_alpha=None,
                                 lora_targets=("query", "key"))


def _classifier(config, **encoder_kwargs):
    keras.utils.set_random_seed(0)
    return models.bert_classifier(models.bert_encoder(config, **encoder_kwargs), num_classes=3)


def test_default_is_full_fine_tuning_with_bert_adamw(tiny_config, tmp_path, monkeypatch):
    logged = []  # absl's handler may already be installed by other tests, so catch the call itself
    monkeypatch.setattr(freezing.logging, "info", lambda message, *args: logged.append(message % args if args else message))
    model = _classifier(tiny_config)
    optimizer, callbacks = prepare_training(model, AdaptationOptions(), 1e-3, 100, 10, str(tmp_path))
    # kzoo's AdamW (the fused update), with BERT's exclusions and no layer-wise multipliers
    assert isinstance(optimizer, AdamW) and not optimizer.lr_multipliers
    assert optimizer._weight_decay_exclude_names == ("bias", "gamma", "beta")
    assert len(model.trainable_weights) == len(model.weights)
    assert [type(c) for c in callbacks] == [LearningRateLogger]
    assert [m for m in logged if m.startswith("trainable parameters: ")] == [
        f"trainable parameters: {len_total(model):,} of {len_total(model):,} (100.00%)"]


def len_total(model):
    return sum(int(np.prod(v.shape)) for v in model.weights)


def test_adapters_train_only_adaptation_layer_norms_pooler_and_head(tiny_config, tmp_path):
    options = AdaptationOptions(adapter_type="houlsby", adapter_size=4)
    model = _classifier(tiny_config, **options.encoder_kwargs())
    prepare_training(model, options, 1e-3, 100, 10, str(tmp_path))
    names = {v.path for v in model.trainable_weights}
    assert names and all(any(k in n for k in ("adapter", "layer_norm", "pooler", "classifier")) for n in names)
    assert not any("attention/query" in n or "intermediate" in n for n in names)


def test_l2sp_anchors_only_what_the_checkpoint_fills(tiny_config, tmp_path):
    options = AdaptationOptions(lora_rank=2, l2sp_alpha=0.5, l2sp_beta=0.1)
    model = _classifier(tiny_config, **options.encoder_kwargs())
    prepare_training(model, options, 1e-3, 100, 10, str(tmp_path))
    pretrained = {id(e.variable) for e in encoder_entries(find_encoder(model))}
    # At the start pretrained weights sit on their anchors: only the new trainable weights (LoRA, head) count.
    new = [v for v in model.trainable_weights if id(v) not in pretrained]
    expected = 0.1 / 2 * sum(float(np.sum(v.numpy() ** 2)) for v in new)
    assert any("lora_a" in v.path for v in new)
    np.testing.assert_allclose(float(l2sp_penalty(model)), expected, rtol=1e-5)


def test_layerwise_and_gradual_unfreezing_callbacks(tiny_config, tmp_path):
    options = AdaptationOptions(layerwise_lr_decay=0.5, gradual_unfreezing=True, chain_thaw=True)
    model = _classifier(tiny_config)
    optimizer, callbacks = prepare_training(model, options, 1e-3, 100, 10, str(tmp_path))
    assert isinstance(optimizer, AdamW)
    assert isinstance(callbacks[0], GradualUnfreezing) and callbacks[0].chain_thaw
    multipliers = {v.path: optimizer.lr_multiplier(v) for v in model.weights}
    assert multipliers["transformer_layer_1/attention/query/kernel"] == 1.0
    assert multipliers["transformer_layer_0/attention/query/kernel"] == 0.5
    assert multipliers["embeddings/word_embeddings/embeddings"] == 0.25


@pytest.mark.parametrize("family, new", [("roberta", "pooler"), ("distilbert", "pooler"), ("deberta_v2", "pooler"),
                                         ("electra", None)])
def test_l2sp_treats_what_the_load_added_as_new(family, new, tmp_path, tmp_path_factory):
    """A RoBERTa masked-LM folder has no pooler and a bare DistilBERT no pre_classifier: the load adds them
    (LoadReport.missing), so L2-SP pulls them towards zero (beta) with the head instead of anchoring them
    at their random initial values; ELECTRA's first-token pooled output has no weights to add."""
    from kzoo.checkpoints import load_pretrained
    from kzoo.training.recipe import new_variables
    from tests.family_models import tiny_family_folders

    pretrained = load_pretrained(tiny_family_folders(tmp_path_factory)[family])
    added = new_variables(pretrained.encoder, pretrained.report)
    assert sorted(v.path for v in added) == ([f"{new}/dense/bias", f"{new}/dense/kernel"] if new else [])
    model = models.bert_classifier(pretrained.encoder, num_classes=3)
    prepare_training(model, AdaptationOptions(l2sp_alpha=0.5, l2sp_beta=0.1), 1e-3, 100, 10, str(tmp_path),
                     added=added)
    fresh = added + [v for v in model.trainable_weights if "classifier" in v.path]
    expected = 0.1 / 2 * sum(float(np.sum(v.numpy() ** 2)) for v in fresh)
    np.testing.assert_allclose(float(l2sp_penalty(model)), expected, rtol=1e-5)
