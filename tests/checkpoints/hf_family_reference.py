"""Tiny random Hugging Face models of every non-BERT family and their outputs (torch).

Run in a subprocess that never imports TensorFlow (so the reference is
independent of kzoo and TF): for each model below, builds it with
transformers, moves every parameter away from its initial value (LayerNorm
gammas and betas and zero biases too), saves it as a HF folder
(`save_pretrained`, safetensors) under OUT_DIR/<name>/, and writes
OUT_DIR/<name>/reference.npz with the padded input batch the model is run on
and its outputs. Usage: hf_family_reference.py OUT_DIR
"""

import os
import sys

import numpy as np
import torch
import transformers

VOCAB, SEQ = 99, 12
LENGTHS = (12, 5, 9, 7)  # one full row, three right-padded rows
SIZES = dict(vocab_size=VOCAB, hidden_size=32, num_attention_heads=4, intermediate_size=48,
             hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, max_position_embeddings=40)


def inputs(pad_id, pairs):
    """A padded batch: ids in [3, VOCAB), `pad_id` in the padding; rows 2 and 3 are sentence pairs (second
    segment type 1) when the family has token types."""
    rng = np.random.default_rng(11)
    ids = rng.integers(3, VOCAB, (len(LENGTHS), SEQ)).astype("int32")
    mask = np.zeros_like(ids)
    types = np.zeros_like(ids)
    for i, n in enumerate(LENGTHS):
        ids[i, n:] = pad_id
        mask[i, :n] = 1
        if i >= 2:
            types[i, n // 2:n] = 1
    return {"input_word_ids": ids, "input_mask": mask, "input_type_ids": types if pairs else np.zeros_like(ids)}


def perturb(model, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def run(model, batch, types=True):
    kwargs = dict(input_ids=torch.tensor(batch["input_word_ids"], dtype=torch.long),
                  attention_mask=torch.tensor(batch["input_mask"], dtype=torch.long))
    if types:
        kwargs["token_type_ids"] = torch.tensor(batch["input_type_ids"], dtype=torch.long)
    with torch.no_grad():
        return model(**kwargs)


def save(out_dir, name, model, batch, **outputs):
    folder = os.path.join(out_dir, name)
    model.save_pretrained(folder, safe_serialization=True)
    np.savez(os.path.join(folder, "reference.npz"), **batch,
             **{k: v.detach().numpy() if torch.is_tensor(v) else v for k, v in outputs.items()})


def albert(out_dir, name, seed, **structure):
    torch.manual_seed(seed)  # the initial values too: the same models in every session
    config = transformers.AlbertConfig(embedding_size=16, hidden_act="gelu_new", **SIZES, **structure)
    model = perturb(transformers.AlbertForPreTraining(config), seed)
    batch = inputs(0, pairs=True)
    base = run(model.albert, batch)
    heads = run(model, batch)
    save(out_dir, name, model, batch, sequence_output=base.last_hidden_state, pooled_output=base.pooler_output,
         mlm_logits=heads.prediction_logits, sop_logits=heads.sop_logits)


def electra(out_dir, seed):
    torch.manual_seed(seed)
    config = transformers.ElectraConfig(embedding_size=16, hidden_act="gelu", num_hidden_layers=2, **SIZES)
    discriminator = perturb(transformers.ElectraForPreTraining(config), seed)
    generator_config = transformers.ElectraConfig(**{**SIZES, "hidden_size": 8, "num_attention_heads": 1,
                                                     "intermediate_size": 24}, embedding_size=16,
                                                  hidden_act="gelu", num_hidden_layers=1)
    generator = perturb(transformers.ElectraForMaskedLM(generator_config), seed + 1)
    # ELECTRA's generator shares the discriminator's embeddings (word table, positions, types, LayerNorm).
    generator.electra.embeddings.load_state_dict(discriminator.electra.embeddings.state_dict())
    batch = inputs(0, pairs=True)
    base = run(discriminator.electra, batch)
    save(out_dir, "electra", discriminator, batch, sequence_output=base.last_hidden_state,
         rtd_logits=run(discriminator, batch).logits)
    save(out_dir, "electra_generator", generator, batch, mlm_logits=run(generator, batch).logits)


def roberta(out_dir, name, seed, config_class, model_class):
    torch.manual_seed(seed)
    config = config_class(**{**SIZES, "max_position_embeddings": SIZES["max_position_embeddings"] + 2},
                          type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5,
                          num_hidden_layers=2)
    model = perturb(model_class(config), seed)
    batch = inputs(1, pairs=False)
    out = run(model, batch)
    if hasattr(out, "pooler_output"):
        save(out_dir, name, model, batch, sequence_output=out.last_hidden_state, pooled_output=out.pooler_output)
    else:  # a masked LM (no pooler, as the released RoBERTa weights)
        save(out_dir, name, model, batch, mlm_logits=out.logits)


def distilbert(out_dir, seed):
    torch.manual_seed(seed)
    config = transformers.DistilBertConfig(vocab_size=VOCAB, dim=32, n_layers=2, n_heads=4, hidden_dim=48,
                                           dropout=0.0, attention_dropout=0.0, seq_classif_dropout=0.0,
                                           max_position_embeddings=40, num_labels=3)
    model = perturb(transformers.DistilBertForSequenceClassification(config), seed)
    batch = inputs(0, pairs=True)  # DistilBERT takes no token types: kzoo must ignore these
    base = run(model.distilbert, batch, types=False)
    logits = run(model, batch, types=False).logits
    save(out_dir, "distilbert", model, batch, sequence_output=base.last_hidden_state, logits=logits)
    # The bare DistilBertModel of the same weights: no pre_classifier / classifier in its folder.
    save(out_dir, "distilbert_base", model.distilbert, batch, sequence_output=base.last_hidden_state)
    masked_lm = perturb(transformers.DistilBertForMaskedLM(config), seed + 1)
    save(out_dir, "distilbert_mlm", masked_lm, batch, mlm_logits=run(masked_lm, batch, types=False).logits)


if __name__ == "__main__":
    out = sys.argv[1]
    albert(out, "albert", 1, num_hidden_layers=3, num_hidden_groups=1, inner_group_num=1)
    albert(out, "albert_2_groups", 2, num_hidden_layers=3, num_hidden_groups=2, inner_group_num=1)
    albert(out, "albert_2_inner", 3, num_hidden_layers=2, num_hidden_groups=1, inner_group_num=2)
    electra(out, 4)
    roberta(out, "roberta", 6, transformers.RobertaConfig, transformers.RobertaModel)
    roberta(out, "xlm_roberta", 7, transformers.XLMRobertaConfig, transformers.XLMRobertaModel)
    roberta(out, "roberta_mlm", 9, transformers.RobertaConfig, transformers.RobertaForMaskedLM)
    distilbert(out, 8)
