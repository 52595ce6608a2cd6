"""Fine-tune a sentence encoder on text pairs with in-batch negatives and export it.

The pairs are (anchor, positive[, hard negative]) rows of a TSV/CSV/JSONL file, or the
(question, paragraph) pairs of a SQuAD file's training articles (--squad_file; the held-back
articles are evaluated as paragraph retrieval before and after training). Every anchor is
scored against every positive (and negative) of the global batch with scaled cosine
similarities, under any --distribution_strategy (the replicas gather each other's embeddings).

    kzoo-run-dual-encoder --squad_file=../shared/data/squad_v1.1/dev-v1.1-even-articles.json
    kzoo-run-dual-encoder --train_file=pairs.tsv --negative_column=negative --symmetric
"""

from absl import flags

from kzoo.cli import console
from kzoo.cli import flags as common_flags
from kzoo.tasks.dual_encoder import DualEncoderRun, run_dual_encoder

D = DualEncoderRun()
flags.DEFINE_string("train_file", None, "Pairs: TSV, CSV or JSONL with the anchor, positive (and optional negative) "
                    "columns; a header-less TSV/CSV of exactly two columns is read as anchor, positive.")
flags.DEFINE_string("squad_file", None, "Instead of --train_file: SQuAD JSON whose (question, paragraph) pairs of "
                    "the articles not held back (--eval_fraction, --split_seed) are the training pairs.")
flags.DEFINE_enum("format", None, ["tsv", "csv", "jsonl"], "Format of --train_file (default: from its extension).")
flags.DEFINE_string("anchor_column", D.anchor_column, "Header name / JSON key of the anchor text.")
flags.DEFINE_string("positive_column", D.positive_column, "Header name / JSON key of the positive text.")
flags.DEFINE_string("negative_column", None, "Header name / JSON key of a hard negative (default: none; the other "
                    "positives of the batch are the negatives).")
common_flags.define_common_flags(D)
common_flags.define_adaptation_flags(D)
common_flags.define_embedding_flags()  # the loss compares cosine similarities whatever --normalize says
common_flags.define_retrieval_split_flags(D)
flags.adopt_module_key_flags(common_flags)  # so that --help lists them too
flags.DEFINE_bool("shared_towers", D.shared_towers, "One encoder for both sides; --noshared_towers trains a copy "
                  "for the positives (exported to <export_dir>_positive).")
flags.DEFINE_float("scale", D.scale, "Similarity scale of the softmax over cosine similarities (inverse "
                   "temperature; sentence-transformers' default 20).")
flags.DEFINE_bool("symmetric", D.symmetric, "Also score each positive against every anchor and average the two "
                  "losses.")
flags.DEFINE_integer("train_batch_size", D.train_batch_size, "Global batch size: the number of in-batch candidates "
                     "each anchor is scored against.")
flags.DEFINE_integer("seed", D.seed, "Seed of the batch order, dropout and new weights.")
flags.DEFINE_string("model_dir", D.model_dir, "TensorBoard logs, checkpoints, model.keras, the tokenizer and "
                    "results.json.")
flags.DEFINE_string("export_dir", D.export_dir, "Embedding SavedModel base path (text in, embeddings out); each run "
                    "adds the next integer version. Empty to skip the export.")
common_flags.define_serving_dtype_flag(D.serving_dtype)


def main(argv):
    run = common_flags.run_from_flags(DualEncoderRun)
    result = run_dual_encoder(run)
    print(f"trained on {result['pairs']} ({result['steps_per_epoch']} steps per epoch, "
          f"{result['train_seconds']:.0f} s); final loss {result['history']['loss'][-1]:.4f}")
    for when in ("before", "after"):
        r = result[f"retrieval_{when}"]
        if r:
            m = r["metrics"]
            print(f"retrieval {when} training ({r['queries']} questions, {r['corpus']} paragraphs): recall@1 "
                  f"{m['recall@1']:.4f}, recall@5 {m['recall@5']:.4f}, recall@10 {m['recall@10']:.4f}, "
                  f"MRR@10 {m['mrr@10']:.4f}, nDCG@10 {m['ndcg@10']:.4f}")
    if result["export_path"]:
        print(f"exported SavedModel: {result['export_path']}")


def run():
    console.run(main)


if __name__ == "__main__":
    run()
