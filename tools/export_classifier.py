"""Export fine-tuned classifiers as one raw-text SavedModel for TF Serving.

Give one `--model_dirs` entry (a model_dir written by run_classifier) to export
it again, or several to export their ensemble: one SavedModel whose
probabilities are the (weighted) mean of the members'. Members must share the
labels and the vocabulary. A LoRA model is exported with LoRA folded into its
kernels.

    python tools/export_classifier.py --model_dirs=runs/a,runs/b,runs/c --export_dir=savedmodels/intents_ensemble
"""

import filecmp
import json
import os
import sys

from absl import app, flags, logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402

from kzoo import export  # noqa: E402
from kzoo.models import classifier_ensemble, merge_lora  # noqa: E402
from kzoo.layers import TransformerEncoderBlock  # noqa: E402
from kzoo.training import load_tokenizer  # noqa: E402

flags.DEFINE_list("model_dirs", None, "model_dirs written by run_classifier (model.keras, labels.json, vocab.txt, "
                  "tokenizer.json); several make an ensemble.")
flags.DEFINE_list("weights", None, "Ensemble weights, one per model_dir (default: equal).")
flags.DEFINE_string("export_dir", None, "SavedModel base path; the next integer version is written.")
flags.DEFINE_integer("max_seq_length", 128, "Longest packed input of the serving signature.")
flags.DEFINE_bool("pair", False, "The models classify text pairs (signature takes text and text_b).")
flags.mark_flags_as_required(["model_dirs", "export_dir"])
FLAGS = flags.FLAGS


def load_member(model_dir):
    """(model, labels) of one model_dir, LoRA folded in."""
    for name in ("model.keras", "labels.json", "tokenizer.json"):
        if not os.path.exists(os.path.join(model_dir, name)):
            raise ValueError(f"{os.path.join(model_dir, name)} not found (a model_dir written by run_classifier)")
    model = keras.models.load_model(os.path.join(model_dir, "model.keras"), compile=False)
    if any(isinstance(l, TransformerEncoderBlock) and l.lora_rank
           for l in model._flatten_layers(include_self=False, recursive=True)):
        model = merge_lora(model)
    with open(os.path.join(model_dir, "labels.json"), encoding="utf-8") as f:
        return model, json.load(f)


def export_models(model_dirs, export_dir, weights=None, max_seq_length=128, pair=False):
    """Exports one model_dir, or the ensemble of several; returns the version path."""
    members, labels = [], None
    for i, model_dir in enumerate(model_dirs):
        model, member_labels = load_member(model_dir)
        if labels is not None and member_labels != labels:
            raise ValueError(f"{model_dir}: labels {member_labels} differ from {model_dirs[0]}'s {labels}")
        if i and not filecmp.cmp(os.path.join(model_dir, "vocab.txt"), os.path.join(model_dirs[0], "vocab.txt"),
                                 shallow=False):
            raise ValueError(f"{model_dir}: vocab.txt differs from {model_dirs[0]}'s; members must share a vocabulary")
        labels = member_labels
        members.append(model)
    if len(members) > 1:
        for i, model in enumerate(members):
            model.name = f"member_{i}"  # Keras needs distinct layer names
        model = classifier_ensemble(members, weights=weights)
    else:
        model = members[0]
    tokenizer = load_tokenizer(model_dirs[0])
    return export.export_classifier(model, tokenizer, labels, export_dir, max_seq_length, pair=pair)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.INFO)
    weights = [float(w) for w in FLAGS.weights] if FLAGS.weights else None
    if weights and len(weights) != len(FLAGS.model_dirs):
        raise app.UsageError(f"{len(weights)} weights for {len(FLAGS.model_dirs)} model_dirs")
    path = export_models(FLAGS.model_dirs, FLAGS.export_dir, weights, FLAGS.max_seq_length, FLAGS.pair)
    kind = f"ensemble of {len(FLAGS.model_dirs)}" if len(FLAGS.model_dirs) > 1 else "model"
    print(f"exported SavedModel ({kind}): {path}")


if __name__ == "__main__":
    app.run(main)
