"""The classifier trains from the real MiniLM checkpoint on real TREC questions."""

import keras
import numpy as np
import pytest

from kzoo.checkpoints import load_pretrained
from kzoo.data import classification_dataset
from kzoo.models import bert_classifier
from kzoo.text import BertPacker, BertTokenizer
from kzoo.training import create_optimizer
from tests.conftest import shared_path


def trec_slice(count):
    """The first `count` questions per coarse class of TREC's training file."""
    path = shared_path("data", "trec", "train_5500.label")
    texts, labels, seen = [], [], {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            label, question = line.rstrip("\n").split(" ", 1)
            coarse = label.split(":")[0]
            if seen.get(coarse, 0) < count:
                seen[coarse] = seen.get(coarse, 0) + 1
                texts.append(question)
                labels.append(coarse)
    names = sorted(set(labels))
    return texts, np.array([names.index(label) for label in labels], np.int32), names


@pytest.mark.slow
def test_loss_falls_on_trec_from_minilm(minilm_hf_folder):
    keras.utils.set_random_seed(0)
    texts, labels, names = trec_slice(16)  # 96 questions, 6 classes
    pretrained = load_pretrained(minilm_hf_folder)
    tokenizer = BertTokenizer(vocab_file=pretrained.vocab_file)
    packer = BertPacker.from_tokenizer(tokenizer, 48, dynamic_length=True)
    train = classification_dataset(texts, labels, tokenizer, packer, batch_size=16, shuffle=True, seed=0)
    fixed = classification_dataset(texts, labels, tokenizer, packer, batch_size=48)
    model = bert_classifier(pretrained.encoder, num_classes=len(names))
    model.compile(optimizer=create_optimizer(3e-4, num_train_steps=24, warmup_steps=2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    loss_before, _ = model.evaluate(fixed, verbose=0)
    history = model.fit(train, epochs=4, shuffle=False, verbose=0)
    loss_after, accuracy_after = model.evaluate(fixed, verbose=0)
    print(f"TREC slice: loss {loss_before:.3f} -> {loss_after:.3f}, accuracy {accuracy_after:.3f}; "
          f"epoch losses {np.round(history.history['loss'], 3).tolist()}")
    assert loss_after < 0.8 * loss_before
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert accuracy_after > 1.5 / len(names)  # well above chance
