"""Run the adaptation techniques side by side on one task and tabulate them.

Every technique fine-tunes the same pretrained encoder on the same training
split with the same budget (epochs, batch size, sequence length, seed) and is
scored on the same held-out split. The table gives, per technique: trainable
parameters (count and share of the model), validation error rate, wall time
and the bytes that must be stored per task (every variable the technique
trained, as `kzoo.models.adaptation.save_adaptation_weights` writes them).

    kzoo-compare-adaptation            # TREC-6 from ../shared, MiniLM
    kzoo-compare-adaptation --techniques=full,lora_r8 --num_train_epochs=1

The distilled student learns from the `full` row's fine-tuned model, so `full`
runs first when `distilled_3_layer` is asked for.
"""

import dataclasses
import os
import time

import keras
from absl import app, flags, logging

from kzoo.cli import console
from kzoo.cli import flags as common_flags
from kzoo.data import TASKS
from kzoo.models import adaptation
from kzoo.tasks import ClassifierRun, run_classifier
from kzoo.training.common import write_json_atomically, write_text_atomically
from kzoo.training.distribution import DistributionOptions

# The data sets of ../shared, beside the checkout this package is in.
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.path.join(os.path.dirname(REPO), "shared")

# technique -> (description, ClassifierRun overrides). Learning rates follow each
# technique's usual range: new or few parameters train with larger steps.
TECHNIQUES = {
    "full": ("full fine-tuning", dict(learning_rate=1e-4)),
    "feature_extraction": ("feature extraction (frozen encoder)", dict(feature_extraction=True, learning_rate=2e-3)),
    "feature_extraction_mean": ("feature extraction, mean pooling (frozen encoder)",
                                dict(feature_extraction=True, learning_rate=2e-3, pooling="mean")),
    "adapters_houlsby_64": ("adapters (Houlsby, size 64)", dict(adapter_type="houlsby", adapter_size=64,
                                                                learning_rate=1e-3)),
    "lora_r8": ("LoRA (rank 8, query+value)", dict(lora_rank=8, learning_rate=1e-3)),
    "gradual_unfreezing": ("gradual unfreezing (a block every 20 steps)",
                           dict(gradual_unfreezing=True, unfreezing_unit="step", unfreezing_interval=20,
                                learning_rate=1e-4)),
    "discriminative_lr": ("discriminative LR (decay 0.8 per layer)", dict(layerwise_lr_decay=0.8, learning_rate=1e-4)),
    "ulmfit": ("ULMFiT recipe (gradual + discriminative + slanted triangular)",
               dict(gradual_unfreezing=True, unfreezing_unit="step", unfreezing_interval=20, layerwise_lr_decay=0.8,
                    lr_schedule="slanted_triangular", learning_rate=1e-4)),
    "l2sp": ("full + L2-SP (alpha 0.1, beta 0.01, no weight decay)",
             dict(l2sp_alpha=0.1, l2sp_beta=0.01, weight_decay=0.0, learning_rate=1e-4)),
    "aux_mlm": ("full + auxiliary MLM loss (lambda 0.3)", dict(aux_mlm_weight=0.3, learning_rate=1e-4)),
    "distilled_3_layer": ("distilled 3-layer student (T 2, alpha 0.5)",
                          dict(student_num_layers=3, distill_temperature=2.0, distill_alpha=0.5, learning_rate=1e-4)),
}

flags.DEFINE_list("techniques", list(TECHNIQUES), f"Which techniques, in order: {', '.join(TECHNIQUES)}.")
flags.DEFINE_enum("task", "trec", list(TASKS), "Task, as kzoo-run-classifier's --task. The table gives the "
                  "validation error (1 - accuracy), or the headline metric where it is not accuracy (cola, mrpc).")
flags.DEFINE_string("train_file", os.path.join(SHARED, "data", "trec", "train_5500.label"), "Labelled training file "
                    "of --task (default: TREC-6 from ../shared beside the checkout).")
flags.DEFINE_string("init_checkpoint", "minilm", "Pretrained encoder: " + common_flags.INIT_CHECKPOINT_HELP)
flags.DEFINE_enum("pooling", "pooler", ["pooler", "cls", "mean", "max"], "What the head reads in every row "
                  "that does not set its own (feature_extraction_mean: mean). Default pooler, the encoder's pooled "
                  "output, which the README's table was measured with; run_classifier itself defaults to what the "
                  "checkpoint was trained for (MiniLM: mean).")
flags.DEFINE_integer("num_train_epochs", 3, "Epochs, the same for every technique.")
flags.DEFINE_integer("train_batch_size", 32, "Global batch size.")
flags.DEFINE_integer("max_seq_length", 64, "Longest packed input.")
flags.DEFINE_float("validation_fraction", 0.2, "Seeded, stratified held-out share of the training file.")
flags.DEFINE_integer("seed", 42, "Seed of the split, the shuffling and the new weights.")
flags.DEFINE_string("work_dir", os.path.join("runs", "compare_adaptation"), "A model_dir per technique.")
flags.DEFINE_string("output_json", os.path.join("runs", "compare_adaptation", "results.json"), "JSON results.")
flags.DEFINE_string("output_markdown", os.path.join("runs", "compare_adaptation", "results.md"), "Markdown table.")
common_flags.define_distribution_flags(ClassifierRun())
flags.adopt_module_key_flags(common_flags)
FLAGS = flags.FLAGS
DISTRIBUTION = [f.name for f in dataclasses.fields(DistributionOptions)] + ["static_shapes"]


def run_technique(name, teacher_dir=None):
    description, overrides = TECHNIQUES[name]
    model_dir = os.path.join(FLAGS.work_dir, name)
    run = ClassifierRun(task=FLAGS.task, train_file=FLAGS.train_file, init_checkpoint=FLAGS.init_checkpoint,
                        num_train_epochs=FLAGS.num_train_epochs, train_batch_size=FLAGS.train_batch_size,
                        max_seq_length=FLAGS.max_seq_length, validation_fraction=FLAGS.validation_fraction,
                        seed=FLAGS.seed, model_dir=model_dir, export_dir="", predict_text="", verbose=2,
                        teacher_model_dir=teacher_dir if name == "distilled_3_layer" else None,
                        **{f: FLAGS[f].value for f in DISTRIBUTION}, **{"pooling": FLAGS.pooling, **overrides})
    keras.backend.clear_session()
    start = time.time()
    result = run_classifier(run)
    wall = time.time() - start
    stored = os.path.join(model_dir, "stored_per_task.npz")
    adaptation.save_adaptation_weights(result["model"], stored)  # every variable the technique trained
    headline = result["headline_metric"]
    value = result["metrics"][headline]
    row = {
        "technique": name,
        "description": description,
        "trainable_params": result["trainable_parameters"],
        "trainable_percent": 100.0 * result["trainable_parameters"] / result["total_parameters"],
        "total_params": result["total_parameters"],
        "val_error": 1.0 - value if headline == "accuracy" else None,
        "headline_metric": headline,
        "headline_value": value,
        "wall_seconds": wall,
        "stored_bytes": os.path.getsize(stored),
        "learning_rate": run.learning_rate,
        "num_eval": result["num_eval"],
    }
    logging.info("%s: %s", name, row)
    return row, model_dir


def markdown(rows):
    lines = ["| technique | trainable parameters | validation error | wall time | stored per task |",
             "|---|---|---|---|---|"]
    for r in rows:
        error = f"{100 * r['val_error']:.2f}%" if r["val_error"] is not None else \
            f"{r['headline_metric']} {r['headline_value']:.4f}"
        lines.append(f"| {r['description']} | {r['trainable_params']:,} ({r['trainable_percent']:.2f}%) | {error} | "
                     f"{r['wall_seconds']:.0f} s | {_size(r['stored_bytes'])} |")
    return "\n".join(lines) + "\n"


def _size(n):
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def main(argv):
    unknown = [t for t in FLAGS.techniques if t not in TECHNIQUES]
    if unknown:
        raise app.UsageError(f"unknown techniques {unknown}; choose from {list(TECHNIQUES)}")
    order = list(FLAGS.techniques)
    if "distilled_3_layer" in order and "full" not in order:
        order.insert(0, "full")  # the teacher
    rows, teacher_dir = [], None
    for name in order:
        row, model_dir = run_technique(name, teacher_dir)
        if name == "full":
            teacher_dir = model_dir
        if name in FLAGS.techniques:
            rows.append(row)
    write_json_atomically(FLAGS.output_json, rows)
    table = markdown(rows)
    write_text_atomically(FLAGS.output_markdown, table)
    print(table)
    print(f"written: {FLAGS.output_json}, {FLAGS.output_markdown}")


def run():
    console.run(main)


if __name__ == "__main__":
    run()
