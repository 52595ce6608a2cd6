"""Print a masked language model's top-k predictions for every mask in a sentence.

    kzoo-fill-mask --checkpoint=/tmp/domain_bert \\
        --text="which do you [MASK] , coke or [MASK] ."
    kzoo-fill-mask --checkpoint=roberta-base/ --text="The capital of France is <mask>."

--checkpoint is a checkpoint with a masked-LM head, of any family but ELECTRA:
an official BERT or ALBERT pretraining checkpoint (folder or prefix with its
config and tokenizer files), a Hugging Face BertForPreTraining /
BertForMaskedLM, AlbertForPreTraining / AlbertForMaskedLM, RobertaForMaskedLM,
XLMRobertaForMaskedLM or DistilBertForMaskedLM folder, or a folder written by
kzoo-run-pretraining. A mask is the family's mask token ([MASK]; <mask> for
RoBERTa and XLM-R) or, for every family, [MASK]; predictions are shown as the
vocabulary's pieces (##ing, \u2581paris, \u0120Paris).
"""

from absl import flags, logging

from kzoo.checkpoints import load_masked_lm
from kzoo.cli import console
from kzoo.models.pretrainer import fill_mask

flags.DEFINE_string("checkpoint", None, "Official pretraining checkpoint folder/prefix, Hugging Face folder, or a "
                    "kzoo-run-pretraining --model_dir.")
flags.DEFINE_string("bert_config_file", None, "bert_config.json, if not beside the checkpoint.")
flags.DEFINE_string("vocab_file", None, "vocab.txt, if not beside the checkpoint (WordPiece families).")
flags.DEFINE_multi_string("text", ["which do you [MASK] , coke or [MASK] ."], "A sentence with one or more "
                          "masks: [MASK] (any family) or the family's mask token (<mask>)")  # absl adds: "; repeat this option to specify a list of values"
flags.DEFINE_integer("top_k", 5, "Predictions shown per mask.")
flags.DEFINE_integer("max_seq_length", 128, "Longest input in tokens, [CLS] and [SEP] (<s>, </s>) included.")
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
