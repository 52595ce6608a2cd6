"""Pretrain, or continue pretraining, an encoder on raw text (MLM + NSP/SOP, or ELECTRA).

Raw text is one sentence per line with a blank line between documents (the
google-research/bert format); TFRecords from its create_pretraining_data.py
(or kzoo's writer) work too. --init_checkpoint may be of any family: BERT
(MLM + NSP), ALBERT (MLM + sentence-order prediction), RoBERTa, XLM-R and
DistilBERT (MLM only, single segments), ELECTRA (--objective=electra). The
output folder is an official checkpoint folder (bert_config.json or
albert_config.json, bert_model.ckpt.* with the heads; a Hugging Face folder,
config.json + model.safetensors, for RoBERTa, XLM-R and DistilBERT) with the
tokenizer's files, which --init_checkpoint of every fine-tuning command and
kzoo-fill-mask accept. From scratch (--bert_config_file, --vocab_file) is
WordPiece only.

    # continue MiniLM's pretraining on your domain's text
    kzoo-run-pretraining --init_checkpoint=minilm --input_files='corpus/*.txt' \\
        --model_dir=/tmp/domain_bert --nsp=false --num_train_epochs=1
    # from scratch
    kzoo-run-pretraining --bert_config_file=bert_config.json --vocab_file=vocab.txt \\
        --input_files=corpus.txt --model_dir=/tmp/scratch
"""

from absl import flags

from kzoo.cli import console
from kzoo.cli import flags as common_flags
from kzoo.tasks.pretraining import OBJECTIVES, PretrainingRun, run_pretraining

D = PretrainingRun()
flags.DEFINE_string("input_files", None, "Comma-separated files or globs: raw text (one sentence per line, a blank "
                    "line between documents) or *.tfrecord files of official pretraining examples.")
flags.DEFINE_string("eval_files", None, "Held-out files of the same kind. Without them (raw text), a seeded "
                    "--validation_fraction of the documents is held out.")
flags.DEFINE_float("validation_fraction", D.validation_fraction, "Share of documents held out for the held-out "
                   "MLM loss and accuracy, measured before and after training (0: none).")
flags.DEFINE_string("init_checkpoint", None, "Continue from: 'minilm', a preset, an official BERT / ALBERT / ELECTRA "
                    "folder or prefix, or a Hugging Face folder of any kzoo family (its pretraining heads are "
                    "loaded when present). Empty: from scratch.")
flags.DEFINE_string("bert_config_file", None, "bert_config.json: required from scratch, else overrides the one "
                    "beside the checkpoint.")
flags.DEFINE_string("vocab_file", None, "vocab.txt: required from scratch, else overrides the one beside the "
                    "checkpoint (WordPiece families only).")
flags.DEFINE_bool("lower_case", D.lower_case, "From scratch: the vocabulary is uncased.")
flags.DEFINE_enum("objective", D.objective, list(OBJECTIVES), "bert: masked LM (+ next-sentence prediction with "
                  "--nsp); electra: replaced-token detection, a small generator sharing the embeddings with the "
                  "discriminator, which is what gets saved.")
flags.DEFINE_bool("nsp", D.nsp, "The sentence-pair objective: next-sentence prediction with 50% random next "
                  "segments (ALBERT: sentence-order prediction, 50% swapped). --nonsp: RoBERTa-style MLM only on "
                  "single segments of consecutive sentences (always so for RoBERTa, XLM-R and DistilBERT).")
flags.DEFINE_integer("max_seq_length", D.max_seq_length, "Packed length, [CLS] and [SEP]s included.")
flags.DEFINE_integer("max_predictions_per_seq", D.max_predictions_per_seq, "Most masked wordpieces per sequence.")
flags.DEFINE_float("masked_lm_prob", D.masked_lm_prob, "Share of wordpieces masked (80% [MASK], 10% random, "
                   "10% unchanged), redrawn on every pass.")
flags.DEFINE_float("short_seq_prob", D.short_seq_prob, "Probability of a shorter target length for an instance.")
flags.DEFINE_integer("dupe_factor", D.dupe_factor, "Copies of the data with different sentence pairs.")
flags.DEFINE_bool("whole_word_masking", D.whole_word_masking, "Mask all the pieces of a word together (words by "
                  "the tokenizer's convention: '##' continuations, or pieces starting with '\u2581' / '\u0120').")
flags.DEFINE_integer("train_batch_size", D.train_batch_size, "Global training batch size (split across replicas).")
flags.DEFINE_integer("eval_batch_size", D.eval_batch_size, "Held-out evaluation batch size.")
flags.DEFINE_float("learning_rate", D.learning_rate, "Peak AdamW learning rate.")
flags.DEFINE_float("warmup_proportion", D.warmup_proportion, "Fraction of steps of linear warm-up, then linear "
                   "decay to zero.")
flags.DEFINE_float("weight_decay", D.weight_decay, "AdamW decoupled weight decay (not on biases and LayerNorms).")
flags.DEFINE_integer("num_train_epochs", D.num_train_epochs, "Passes over the training instances.")
flags.DEFINE_integer("num_train_steps", D.num_train_steps, "When > 0: train exactly this many steps, repeating "
                     "the data, instead of --num_train_epochs.")
flags.DEFINE_integer("generator_num_layers", D.generator_num_layers, "ELECTRA generator depth (0: a third of the "
                     "discriminator's, rounded up).")
flags.DEFINE_float("discriminator_weight", D.discriminator_weight, "ELECTRA: loss = generator MLM + weight * "
                   "replaced-token detection.")
flags.DEFINE_integer("seed", D.seed, "Seeds the sentence pairs, masks, held-out split and new weights.")
flags.DEFINE_string("model_dir", D.model_dir, "Output: the config, the tokenizer's files and kzoo_tokenizer.json, the "
                    "checkpoint (bert_model.ckpt.* or model.safetensors, after every epoch, atomically), "
                    "results.json, TensorBoard logs.")
flags.DEFINE_integer("verbose", D.verbose, common_flags.VERBOSE_HELP)
common_flags.define_distribution_flags(D)
flags.adopt_module_key_flags(common_flags)  # so that --help lists them too
flags.mark_flag_as_required("input_files")


def main(argv):
    run = PretrainingRun(**{name: flags.FLAGS[name].value for name in PretrainingRun.__dataclass_fields__})
    result = run_pretraining(run)
    print(f"trained {result['total_steps']} steps on {result['num_train_instances']} instances "
          f"in {result['train_seconds']:.0f} s")
    for when in ("eval_before", "eval_after"):
        if when in result:
            shown = ", ".join(f"{k} {v:.4f}" for k, v in sorted(result[when].items()))
            print(f"held-out {when[5:]} training: {shown}")
    print(f"checkpoint: {result['checkpoint']}")


def run():
    console.run(main)


if __name__ == "__main__":
    run()
