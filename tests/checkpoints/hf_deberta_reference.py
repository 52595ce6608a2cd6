"""Tiny random Hugging Face DeBERTa-v2/v3 models and their outputs (torch).

Run in a subprocess that never imports TensorFlow (the reference is
independent of kzoo and TF): builds each model below with transformers,
moves every parameter away from its initial value (LayerNorm gammas and
betas, zero biases and the relative table too), saves it as a HF folder
(`save_pretrained`, safetensors) under OUT_DIR/<name>/ and writes
OUT_DIR/<name>/reference.npz with the padded input batches the model is run
on and its outputs. OUT_DIR/buckets.npz holds transformers'
`make_log_bucket_position` over a range of distances. Usage:
hf_deberta_reference.py OUT_DIR

Models (hidden 32, 4 heads, 2 layers, vocabulary 99):
- "deberta_v3": DeBERTa-v3's structure (relative_attention, log buckets,
  p2c and c2p, share_att_key, norm_rel_ebd layer_norm, no absolute
  positions, no token types) with position_buckets 8 and
  max_relative_positions 16, so the 40-token batch runs past the bucket
  range; a DebertaV2ForSequenceClassification (3 labels): its folder holds
  the ContextPooler and the classifier.
- "deberta_v2_unshared": the other branches: share_att_key false (its own
  pos_key_proj / pos_query_proj), c2p only, no buckets (distances clipped
  to +-16), no LayerNorm on the relative table, absolute positions and 2
  token types; a DebertaV2Model.
- "deberta_mlm" / "deberta_mlm_lm_head": DebertaV2ForMaskedLM with the
  legacy head (`cls.predictions.*`) and with `legacy=False`
  (`lm_predictions.lm_head.*`, the released checkpoints' names).
"""

import os
import sys

import numpy as np
import torch
import transformers
from transformers.models.deberta_v2 import modeling_deberta_v2

VOCAB = 99
SHORT = (12, (12, 5, 9, 7))  # sequence length, real tokens per row (one full row, three padded)
LONG = (40, (40, 23, 37, 11))  # longer than the bucket range (|i - j| up to 39 > 16)
SIZES = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
             hidden_act="gelu", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, pooler_dropout=0.0,
             max_position_embeddings=64, initializer_range=0.02, layer_norm_eps=1e-7, pad_token_id=0,
             relative_attention=True)
V3 = dict(type_vocab_size=0, position_biased_input=False, position_buckets=8, max_relative_positions=16,
          pos_att_type=["p2c", "c2p"], norm_rel_ebd="layer_norm", share_att_key=True)
V2_UNSHARED = dict(type_vocab_size=2, position_biased_input=True, position_buckets=-1, max_relative_positions=16,
                   pos_att_type=["c2p"], norm_rel_ebd="none", share_att_key=False)


def batch(seq, lengths, seed):
    """A padded batch: ids in [3, VOCAB), 0 in the padding; rows 2 and 3 are sentence pairs (second segment type
    1, which a model without token types must ignore)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, VOCAB, (len(lengths), seq)).astype("int32")
    mask = np.zeros_like(ids)
    types = np.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, n:] = 0
        mask[i, :n] = 1
        if i >= 2:
            types[i, n // 2:n] = 1
    return {"input_word_ids": ids, "input_mask": mask, "input_type_ids": types}


def perturb(model, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def run(model, inputs):
    with torch.no_grad():
        return model(input_ids=torch.tensor(inputs["input_word_ids"], dtype=torch.long),
                     attention_mask=torch.tensor(inputs["input_mask"], dtype=torch.long),
                     token_type_ids=torch.tensor(inputs["input_type_ids"], dtype=torch.long))


def save(out_dir, name, model, **arrays):
    folder = os.path.join(out_dir, name)
    model.save_pretrained(folder, safe_serialization=True)
    np.savez(os.path.join(folder, "reference.npz"),
             **{k: v.detach().numpy() if torch.is_tensor(v) else v for k, v in arrays.items()})


def prefixed(prefix, inputs):
    return {f"{prefix}{k}": v for k, v in inputs.items()}


def sequence_classifier(out_dir, seed):
    torch.manual_seed(seed)  # the initial values too: the same models in every session
    config = transformers.DebertaV2Config(**SIZES, **V3, num_labels=3)
    model = perturb(transformers.DebertaV2ForSequenceClassification(config), seed)
    arrays = {}
    for prefix, (seq, lengths) in (("short_", SHORT), ("long_", LONG)):
        inputs = batch(seq, lengths, seed + seq)
        base = run(model.deberta, inputs).last_hidden_state
        with torch.no_grad():
            pooled = model.pooler(base)
        arrays.update(prefixed(prefix, inputs), **{f"{prefix}sequence_output": base, f"{prefix}pooled_output": pooled,
                                                   f"{prefix}logits": run(model, inputs).logits})
    save(out_dir, "deberta_v3", model, **arrays)


def unshared(out_dir, seed):
    torch.manual_seed(seed)
    model = perturb(transformers.DebertaV2Model(transformers.DebertaV2Config(**SIZES, **V2_UNSHARED)), seed)
    arrays = {}
    for prefix, (seq, lengths) in (("short_", SHORT), ("long_", LONG)):
        inputs = batch(seq, lengths, seed + seq)
        arrays.update(prefixed(prefix, inputs), **{f"{prefix}sequence_output": run(model, inputs).last_hidden_state})
    save(out_dir, "deberta_v2_unshared", model, **arrays)


def masked_lm(out_dir, name, seed, legacy):
    torch.manual_seed(seed)
    config = transformers.DebertaV2Config(**SIZES, **V3, legacy=legacy)
    model = perturb(transformers.DebertaV2ForMaskedLM(config), seed)
    inputs = batch(*SHORT, seed)
    save(out_dir, name, model, **prefixed("short_", inputs), short_mlm_logits=run(model, inputs).logits)


def buckets(out_dir):
    distances = torch.arange(-5000, 5001, dtype=torch.long)
    tables = {f"buckets_{size}_{top}": modeling_deberta_v2.make_log_bucket_position(distances, size, top).long()
              for size, top in ((8, 16), (256, 512), (256, 1024))}
    np.savez(os.path.join(out_dir, "buckets.npz"), distances=distances.numpy(),
             **{k: v.numpy() for k, v in tables.items()})


if __name__ == "__main__":
    out = sys.argv[1]
    sequence_classifier(out, 21)
    unshared(out, 22)
    masked_lm(out, "deberta_mlm", 23, legacy=True)
    masked_lm(out, "deberta_mlm_lm_head", 24, legacy=False)
    buckets(out)
