"""Export fine-tuned classifiers as one raw-text SavedModel for TF Serving.

Give one `--model_dirs` entry (a --model_dir of kzoo-run-classifier) to export
it again, or several to export their ensemble: one SavedModel whose
probabilities are the (weighted) mean of the members'. Members must share the
labels and the tokenizer. A LoRA model is exported with LoRA folded into its
kernels.

    kzoo-export-classifier --model_dirs=runs/a,runs/b,runs/c --export_dir=savedmodels/intents_ensemble

--serving_dtype=bfloat16 exports a copy whose encoder projections multiply in bfloat16.
"""

from absl import app, flags

from kzoo.cli import console
from kzoo.cli import flags as common_flags
from kzoo.tasks.classification import export_classifier_dirs

flags.DEFINE_list("model_dirs", None, "--model_dir folders of kzoo-run-classifier (model.keras, labels.json, "
                  "kzoo_tokenizer.json and the tokenizer's files); several make an ensemble.")
flags.DEFINE_list("weights", None, "Ensemble weights, one per model_dir (default: equal).")
flags.DEFINE_string("export_dir", None, "SavedModel base path; the next integer version is written.")
flags.DEFINE_integer("max_seq_length", 128, "Longest packed input of the serving signature.")
flags.DEFINE_bool("pair", False, "The models classify text pairs (signature takes text and text_b).")
common_flags.define_serving_dtype_flag()
flags.DEFINE_list("xla_lengths", None, "Run the model as one XLA program on inputs padded to these lengths (e.g. "
                  "16,32,64,128; the last >= --max_seq_length): faster at batch 1 on CPU, slower at batch 32; TF "
                  "Serving needs --xla_cpu_compilation_enabled=true for it.")
flags.mark_flags_as_required(["model_dirs", "export_dir"])
FLAGS = flags.FLAGS


def main(argv):
    weights = [float(w) for w in FLAGS.weights] if FLAGS.weights else None
    if weights and len(weights) != len(FLAGS.model_dirs):
        raise app.UsageError(f"{len(weights)} weights for {len(FLAGS.model_dirs)} model_dirs")
    try:
        xla_lengths = [int(n) for n in FLAGS.xla_lengths] if FLAGS.xla_lengths else None
    except ValueError:
        raise app.UsageError(f"--xla_lengths must be integers, got {FLAGS.xla_lengths}") from None
    path = export_classifier_dirs(FLAGS.model_dirs, FLAGS.export_dir, weights, FLAGS.max_seq_length, FLAGS.pair,
                                  FLAGS.serving_dtype, xla_lengths)
    kind = f"ensemble of {len(FLAGS.model_dirs)}" if len(FLAGS.model_dirs) > 1 else "model"
    print(f"exported SavedModel ({kind}): {path}")


def run():
    console.run(main)


if __name__ == "__main__":
    run()
