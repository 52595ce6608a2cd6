"""A random tiny Hugging Face BertForPreTraining and its outputs (torch).

Run in a subprocess that never imports TensorFlow: writes the model as a HF
folder (config.json + model.safetensors + vocab.txt) and its MLM / NSP logits
on saved inputs. Usage: hf_pretraining_reference.py FOLDER IN.npz OUT.npz
"""

import sys

import numpy as np
import torch
import transformers

folder, inputs_path, outputs_path = sys.argv[1:4]
inputs = np.load(inputs_path)
torch.manual_seed(0)
config = transformers.BertConfig(vocab_size=int(inputs["vocab_size"]), hidden_size=32, num_hidden_layers=2,
                                 num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
                                 hidden_act="gelu", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
model = transformers.BertForPreTraining(config).eval()
with torch.no_grad():  # no parameter left at its trivial init (LayerNorm 1/0, zero biases)
    for p in model.parameters():
        p.add_(0.05 * torch.randn_like(p))
model.save_pretrained(folder, safe_serialization=True)
with open(f"{folder}/vocab.txt", "w") as f:
    f.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(config.vocab_size - 5)]))
with torch.no_grad():
    out = model(input_ids=torch.tensor(inputs["input_word_ids"], dtype=torch.long),
                attention_mask=torch.tensor(inputs["input_mask"], dtype=torch.long),
                token_type_ids=torch.tensor(inputs["input_type_ids"], dtype=torch.long))
np.savez(outputs_path, mlm_logits=out.prediction_logits.numpy(), nsp_logits=out.seq_relationship_logits.numpy())
