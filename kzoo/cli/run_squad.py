"""Fine-tune a pretrained encoder for SQuAD v1.1 / v2.0 question answering: any kzoo family
(BERT, ELECTRA, DistilBERT with WordPiece; ALBERT, XLM-R with SentencePiece; RoBERTa with
byte-level BPE), its tokenizer read from the checkpoint folder (--vocab_file overrides the
WordPiece vocabulary only).

The flags are google-research/bert's run_squad.py's. Trains on --train_file, predicts
--predict_file (or, with --holdout_articles, the last articles of the training file, which are
then not trained on), writes predictions.json and nbest_predictions.json (and null_odds.json
for SQuAD 2.0) to --model_dir and, when the predicted questions carry answers, prints the
official exact match and F1.

    kzoo-run-squad --train_file=train-v1.1.json --predict_file=dev-v1.1.json
    kzoo-run-squad --train_file=dev-v1.1.json --holdout_articles=4 \\
        --max_train_examples=2000 --max_seq_length=256
"""

from absl import flags

from kzoo.cli import console
from kzoo.cli import flags as common_flags
from kzoo.tasks.squad import SquadRun, run_squad

D = SquadRun()
flags.DEFINE_string("train_file", None, "SQuAD JSON for training, e.g. train-v1.1.json (the first answer of "
                    "each question is the training target).")
flags.DEFINE_string("predict_file", None, "SQuAD JSON to predict, e.g. dev-v1.1.json; scored with the official "
                    "exact match / F1 when its questions have answers.")
flags.DEFINE_bool("version_2_with_negative", D.version_2_with_negative,
                  "SQuAD 2.0: honour is_impossible (such questions are trained to point at [CLS]), allow the "
                  "empty answer in predictions and write null_odds.json.")
flags.DEFINE_integer("max_seq_length", D.max_seq_length, "Tokens per window, [CLS] question [SEP] context "
                     "[SEP] (RoBERTa / XLM-R: <s> question </s></s> context </s>); longer contexts are split into "
                     "overlapping windows.")
flags.DEFINE_integer("doc_stride", D.doc_stride, "When a context is split into windows, the most context tokens "
                     "by which one window is shifted from the previous one.")
flags.DEFINE_integer("max_query_length", D.max_query_length, "The most tokens kept of a question; longer "
                     "questions are truncated.")
flags.DEFINE_integer("n_best_size", D.n_best_size, "Candidate answers kept per question in "
                     "nbest_predictions.json (and start / end positions tried per window).")
flags.DEFINE_integer("max_answer_length", D.max_answer_length, "The most tokens in a predicted answer; the "
                     "start and end predictions are not conditioned on each other, so this bounds them.")
flags.DEFINE_float("null_score_diff_threshold", D.null_score_diff_threshold,
                   "SQuAD 2.0: predict no answer when the [CLS] score minus the best answer's score is above "
                   "this (tune it on null_odds.json).")
common_flags.define_common_flags(D)
common_flags.define_adaptation_flags(D)
flags.adopt_module_key_flags(common_flags)  # so that --help lists them too
flags.DEFINE_bool("do_lower_case", None, "Lower-case and strip accents (uncased WordPiece and ALBERT models; "
                  "RoBERTa and XLM-R never lower-case). Unset: the checkpoint's casing (tokenizer_config.json, else "
                  "its folder name).")
flags.DEFINE_integer("train_batch_size", D.train_batch_size, "Global training batch size, in windows.")
flags.DEFINE_integer("predict_batch_size", D.predict_batch_size, "Prediction batch size, in windows.")
flags.DEFINE_integer("max_train_examples", None, "Train on the first N questions of --train_file only (quick or "
                     "CPU-budget runs). Unset: all.")
flags.DEFINE_integer("holdout_articles", D.holdout_articles, "Without --predict_file: hold back the last N "
                     "articles of --train_file, train on the rest and predict / evaluate these.")
flags.DEFINE_integer("max_eval_examples", None, "Predict and score only the first N questions of the evaluation "
                     "data (quick checks). Unset: all.")
flags.DEFINE_integer("seed", D.seed, "Seeds shuffling, dropout and the new head.")
flags.DEFINE_string("model_dir", D.model_dir, "TensorBoard logs, per-epoch weight checkpoints, model.keras, "
                    "predictions.json, nbest_predictions.json and (SQuAD 2.0) null_odds.json.")
flags.DEFINE_string("export_dir", D.export_dir, "SavedModel base path (e.g. savedmodels/squad): raw question and "
                    "context in, answer text with its character start/end and score out (long contexts split "
                    "with --doc_stride in the graph). Empty: no export.")
common_flags.define_serving_dtype_flag(D.serving_dtype)
flags.mark_flag_as_required("train_file")


def main(argv):
    run = common_flags.run_from_flags(SquadRun)
    result = run_squad(run)
    metrics = result["metrics"]
    if metrics is not None:
        print(f"evaluation: exact_match {metrics['exact_match']:.2f}, f1 {metrics['f1']:.2f} "
              f"({metrics['total']} questions, {result['train_seconds']:.0f} s training)")
        if "HasAns_total" in metrics:
            print(f"has answer: exact_match {metrics['HasAns_exact']:.2f}, f1 {metrics['HasAns_f1']:.2f} "
                  f"({metrics['HasAns_total']}); no answer: exact_match {metrics['NoAns_exact']:.2f} "
                  f"({metrics['NoAns_total']})")
    print(f"predictions: {result['predictions_file']}")
    print(f"n-best predictions: {result['nbest_file']}")
    if result["null_odds_file"]:
        print(f"null odds: {result['null_odds_file']}")
    if result["export_path"]:
        print(f"exported SavedModel: {result['export_path']}")


def run():
    console.run(main)


if __name__ == "__main__":
    run()
