"""Print a masked language model's top-k predictions for every [MASK] in a sentence.

    kzoo-fill-mask --checkpoint=/tmp/domain_bert \\
        --text="which do you [MASK] , coke or [MASK] ."

--checkpoint is an official BERT pretraining checkpoint (folder or prefix with
bert_config.json and vocab.txt; its cls/predictions head is needed), a
Hugging Face BertForPreTraining / BertForMaskedLM folder, or a folder written
by kzoo-run-pretraining.
"""

from absl import flags, logging

from kzoo.checkpoints import load_masked_lm
from kzoo.cli import console
from kzoo.models.pretrainer import fill_mask

flags.DEFINE_string("checkpoint", None, "Official pretraining checkpoint folder/prefix, Hugging Face folder, or a "
                    "kzoo-run-pretraining --model_dir.")
flags.DEFINE_string("bert_config_file", None, "bert_config.json, if not beside the checkpoint.")
flags.DEFINE_string("vocab_file", None, "vocab.txt, if not beside the checkpoint.")
flags.DEFINE_multi_string("text", ["which do you [MASK] , coke or [MASK] ."], "A sentence with one or more "
                          "[MASK] tokens")  # absl adds: "; repeat this option to specify a list of values"
flags.DEFINE_integer("top_k", 5, "Predictions shown per [MASK].")
flags.DEFINE_integer("max_seq_length", 128, "Longest input in wordpieces, [CLS] and [SEP] included.")
flags.mark_flag_as_required("checkpoint")


def main(argv):
    FLAGS = flags.FLAGS
    model, tokenizer = load_masked_lm(FLAGS.checkpoint, config_file=FLAGS.bert_config_file,
                                      vocab_file=FLAGS.vocab_file)
    for text, masks in zip(FLAGS.text, fill_mask(model, tokenizer, FLAGS.text, FLAGS.top_k, FLAGS.max_seq_length)):
        print(text)
        for i, predictions in enumerate(masks, 1):
            shown = "  ".join(f"{token} {probability:.3f}" for token, probability in predictions)
            print(f"  [MASK] {i}: {shown}")


def run():
    console.run(main, default_verbosity=logging.WARNING)  # the masked LM's loading report is not shown


if __name__ == "__main__":
    run()
