"""A Shaw et al. relative-position BERT through the whole workflow: `run_pretraining` from scratch with the
option in `--bert_config_file`, `run_classifier` (with LoRA) from the checkpoint folder it writes, and the
raw-text export served in a process that imports only tensorflow and tensorflow_text, at a length past the
unused `max_position_embeddings`."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from kzoo.configs import BertConfig
from kzoo.data import EXAMPLE_INTENTS, read_task
from kzoo.data import pretraining as pretraining_data
from tests.conftest import minilm_vocab_file

CONFIG = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
              max_position_embeddings=16, max_relative_position=4, use_absolute_positions=False)
SERVE = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    import tensorflow_text  # registers the tf-text ops
    served = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
    out = served(text=tf.constant(json.loads(sys.argv[2])))
    print(json.dumps(out["probabilities"].numpy().tolist()))
""")


@pytest.mark.slow
def test_pretrain_fine_tune_export_serve(tmp_path):
    import tensorflow as tf

    from kzoo.tasks import ClassifierRun, run_classifier
    from kzoo.tasks.pretraining import PretrainingRun, run_pretraining
    from kzoo.text import BertPacker
    from kzoo.training.common import load_tokenizer

    texts = read_task("tsv", EXAMPLE_INTENTS).texts
    pretraining_data.write_documents([texts[i:i + 120] for i in range(0, len(texts), 120)], tmp_path / "docs.txt")
    BertConfig(**CONFIG).to_json_file(tmp_path / "bert_config.json")
    pretrained = run_pretraining(PretrainingRun(
        input_files=str(tmp_path / "docs.txt"), bert_config_file=str(tmp_path / "bert_config.json"),
        vocab_file=minilm_vocab_file(), nsp=False, max_seq_length=32, num_train_steps=4, train_batch_size=8,
        model_dir=str(tmp_path / "pretrained"), verbose=0))
    assert np.isfinite(pretrained["eval_after"]["loss"])
    saved = json.loads((tmp_path / "pretrained" / "bert_config.json").read_text())
    assert (saved["max_relative_position"], saved["use_absolute_positions"]) == (4, False)

    run = ClassifierRun(init_checkpoint=str(tmp_path / "pretrained"), model_dir=str(tmp_path / "run"),
                        export_dir=str(tmp_path / "export"), num_train_epochs=1, max_seq_length=64, lora_rank=2,
                        verbose=0)
    result = run_classifier(run)
    model = result["model"]
    blocks = [l for l in model._flatten_layers() if l.name.startswith("transformer_layer_")]
    assert blocks and all(b.max_relative_position == 4 for b in blocks)
    # longer than max_position_embeddings (16): the relative model has no table to run out of
    sentences = ["wake me up at six thirty tomorrow and then play some relaxing jazz music in the kitchen "
                 "while I cook dinner for the whole family tonight please", "play jazz"]
    tokenizer = load_tokenizer(run.model_dir)
    features = BertPacker.from_tokenizer(tokenizer, 64, dynamic_length=True)(tokenizer(tf.constant(sentences)))
    assert features["input_word_ids"].shape[1] > 16
    expected = tf.nn.softmax(model(features, training=False)).numpy()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", SERVE, result["export_path"], json.dumps(sentences)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    np.testing.assert_allclose(json.loads(done.stdout.strip().splitlines()[-1]), expected, atol=1e-5)
