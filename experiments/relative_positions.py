"""Issue 18 evidence: Shaw relative positions vs learned absolute positions, same budget, from scratch.

Both: BERT 2 layers, hidden 128, 2 heads, intermediate 512, MiniLM's uncased WordPiece vocabulary; MLM only,
trained on sequences of length 64 for STEPS steps (batch 32) on the paragraphs of the first 19 of the 24 SQuAD
articles in ../shared; held-out MLM loss on the other 5 at length 64 (the training length) and at length 128. Relative: k=16, no
absolute table (max_position_embeddings=64 is unused). Absolute: a table of 128 rows, of which the rows 64..127
never see a gradient.
Usage (from the repository root, ../shared beside it): python experiments/relative_positions.py OUT_DIR [STEPS]
Results of 400 steps on 2 cores: README, "Relative positions"."""
import json
import os
import sys

import keras

from kzoo.checkpoints import load_masked_lm
from kzoo.data import pretraining as pd
from kzoo.data.masking import MLMMasker
from kzoo.models.pretrainer import compile_pretrainer
from kzoo.tasks.pretraining import PretrainingRun, run_pretraining
from kzoo.presets import minilm_folder

out = sys.argv[1]
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 400
os.makedirs(out, exist_ok=True)
squad = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "squad_v1.1",
                     "dev-v1.1-even-articles.json")
docs = pd.squad_documents(squad)
print("documents", len(docs))
train_docs, held_docs = docs[: int(len(docs) * 0.83)], docs[int(len(docs) * 0.83):]
pd.write_documents(train_docs, os.path.join(out, "train.txt"))
pd.write_documents(held_docs, os.path.join(out, "heldout.txt"))
vocab = os.path.join(minilm_folder(), "vocab.txt")
base = dict(vocab_size=30522, hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512,
            hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, type_vocab_size=2,
            initializer_range=0.02)
configs = {"relative": dict(base, max_position_embeddings=64, max_relative_position=16, use_absolute_positions=False),
           "absolute": dict(base, max_position_embeddings=128)}
results = {}
for name, config in configs.items():
    path = os.path.join(out, name + "_config.json")
    json.dump(config, open(path, "w"))
    run = PretrainingRun(input_files=os.path.join(out, "train.txt"), eval_files=os.path.join(out, "heldout.txt"),
                         bert_config_file=path, vocab_file=vocab, nsp=False, max_seq_length=64,
                         max_predictions_per_seq=10, num_train_steps=steps, train_batch_size=32,
                         learning_rate=1e-3, seed=1, model_dir=os.path.join(out, name), verbose=0)
    result = run_pretraining(run)
    row = {"train_seconds": round(result["train_seconds"], 1), "eval_64": result["eval_after"]}
    model, tokenizer = load_masked_lm(os.path.join(out, name))
    compile_pretrainer(model, keras.optimizers.Adam())
    for length, predictions in ((64, 10), (128, 20)):
        masker = MLMMasker.from_tokenizer(tokenizer, max_predictions_per_seq=predictions, seed=7,
                                          count_special_tokens=True)
        instances = pd.create_instances(held_docs, tokenizer, max_seq_length=length, nsp=False, seed=7)
        ds = pd.pretraining_dataset(instances, masker, 32, nsp=False, shuffle=False).cache()
        row[f"reloaded_eval_{length}"] = {k: float(v) for k, v in model.evaluate(ds, verbose=0, return_dict=True).items()}
        row[f"instances_{length}"] = int(len(instances["input_word_ids"]))
    results[name] = row
    print(name, json.dumps(row), flush=True)
json.dump(results, open(os.path.join(out, "results.json"), "w"), indent=2)
