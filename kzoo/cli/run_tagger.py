"""Fine-tune a pretrained encoder as a CoNLL token tagger (NER, chunking) and predict.

Any family --init_checkpoint names works (BERT, ALBERT, ELECTRA, RoBERTa, XLM-RoBERTa, DistilBERT):
the words are tokenized with the checkpoint's own tokenizer and each word's first piece is labelled.

Trains on a CoNLL file (e.g. CoNLL-2003: token ... tag columns, blank lines between
sentences), reports entity-level precision, recall and F1 (conlleval rules, or strict IOB2)
after every epoch and at the end, saves model.keras and tags.json, and tags a file if asked.

    kzoo-run-tagger --train_file=train.txt --eval_file=valid.txt --predict_file=test.txt
    kzoo-run-tagger --flagfile=my_ner.flags
"""

from absl import flags

from kzoo.cli import console
from kzoo.cli import flags as common_flags
from kzoo.tasks.tagging import TaggerRun, run_tagger

D = TaggerRun()
flags.DEFINE_string("train_file", None, "CoNLL training file: one token a line with whitespace-separated columns, "
                    "blank lines between sentences, -DOCSTART- lines skipped; tags O, B-TYPE, I-TYPE (IOB1 or "
                    "IOB2). Required.")
flags.DEFINE_string("eval_file", None, "CoNLL evaluation file, scored every epoch. Without one, a seeded random "
                    "--validation_fraction of the training sentences is held out.")
flags.DEFINE_string("predict_file", None, "CoNLL file to tag; only the --token_column is read, so tags are not "
                    "needed.")
flags.DEFINE_string("output_predictions", None, "Predictions file: 'token<TAB>predicted_tag' lines, a blank line "
                    "between sentences, in input order (default: <model_dir>/predictions.conll).")
flags.DEFINE_integer("token_column", D.token_column, "0-based column of the token (negative counts from the end).")
flags.DEFINE_integer("tag_column", D.tag_column, "0-based column of the tag; -1, the last, fits CoNLL-2003's four "
                     "columns and two-column token/tag files.")
common_flags.define_common_flags(D)
common_flags.define_adaptation_flags(D)
flags.adopt_module_key_flags(common_flags)  # so that --help lists them too
flags.DEFINE_integer("max_seq_length", D.max_seq_length, "Most tokens (word pieces) per sentence, the two special "
                     "tokens ([CLS] [SEP] or <s> </s>) included; longer sentences lose trailing words (logged; those "
                     "words are predicted 'O').")
flags.DEFINE_integer("train_batch_size", D.train_batch_size, "Global training batch size, in sentences.")
flags.DEFINE_integer("eval_batch_size", D.eval_batch_size, "Evaluation and prediction batch size, in sentences.")
flags.DEFINE_float("validation_fraction", D.validation_fraction, "Share of the training sentences held out "
                   "(seeded random split) when there is no --eval_file, in [0, 1). 0 trains on every "
                   "sentence and evaluates only on --eval_file when one is given.")
flags.DEFINE_bool("strict_iob2", D.strict_iob2, "Score entities with seqeval's strict IOB2 rules (an I-X must "
                  "continue a B-X/I-X) instead of conlleval's lenient ones.")
flags.DEFINE_integer("seed", D.seed, "Seeds the split, shuffling, dropout and the new head.")
flags.DEFINE_string("model_dir", D.model_dir, "TensorBoard logs (with val_entity_precision/recall/f1), per-epoch "
                    "weight checkpoints, model.keras, tags.json and the tokenizer (its files and kzoo_tokenizer.json).")
flags.DEFINE_string("export_dir", D.export_dir, "SavedModel base path (e.g. savedmodels/ner): raw text in, words and "
                    "their tags out, in TF Serving's integer version folders. Empty: no export.")
common_flags.define_serving_dtype_flag(D.serving_dtype)
flags.mark_flag_as_required("train_file")


def main(argv):
    run = common_flags.run_from_flags(TaggerRun)
    result = run_tagger(run)
    m = result["metrics"]
    if not m:
        print(f"trained on all {result['num_train']} sentences ({result['train_seconds']:.0f} s); no evaluation "
              "(--validation_fraction=0 and no --eval_file)")
    else:
        print(f"evaluation: precision {m['precision']:.4f}, recall {m['recall']:.4f}, f1 {m['f1']:.4f} "
              f"({result['num_eval']} sentences, {result['train_seconds']:.0f} s training)")
    if result["predictions_file"]:
        print(f"predictions: {result['predictions_file']}")
    if result["export_path"]:
        print(f"exported SavedModel: {result['export_path']}")


def run():
    console.run(main)


if __name__ == "__main__":
    run()
