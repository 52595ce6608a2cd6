"""Evaluate sentence embeddings on SQuAD paragraph retrieval.

Every question of the held-back SQuAD articles is searched against every paragraph of those
articles (exact top-k by cosine similarity); the relevant paragraph is the one the question
was asked about. Reports recall@1/5/10, MRR@10 and nDCG@10, for a checkpoint (pooled as it was
trained) or an exported embedding SavedModel, and optionally a FAISS index's recall against
the exact search.

    kzoo-evaluate-retrieval                                  # MiniLM, ../shared's SQuAD articles
    kzoo-evaluate-retrieval --saved_model=savedmodels/minilm_embeddings --approximate
"""

from absl import flags

from kzoo.cli import console
from kzoo.cli import flags as common_flags
from kzoo.tasks.retrieval import RetrievalEval, evaluate_retrieval

D = RetrievalEval()
flags.DEFINE_string("squad_file", D.squad_file, "SQuAD v1.1 JSON whose held-back articles are the evaluation "
                    "(default: the 24 articles in ../shared).")
flags.DEFINE_string("init_checkpoint", D.init_checkpoint, "The encoder to evaluate: " + common_flags.INIT_CHECKPOINT_HELP)
flags.DEFINE_string("saved_model", None, "Evaluate this exported embedding SavedModel (a version folder or its "
                    "base path, whose latest version is used) instead of --init_checkpoint.")
common_flags.define_embedding_flags()
common_flags.define_retrieval_split_flags(D)
flags.adopt_module_key_flags(common_flags)  # so that --help lists them too
flags.DEFINE_integer("batch_size", D.batch_size, "Texts embedded per call.")
flags.DEFINE_bool("approximate", D.approximate, "Also search a FAISS inverted-file index (pip install "
                  "'kzoo[ann]') and report its recall against the exact top 10.")
flags.DEFINE_integer("num_probes", D.num_probes, "FAISS: inverted lists searched per query.")
flags.DEFINE_string("output_json", None, "Write the results here as JSON.")


def main(argv):
    run = RetrievalEval(**{name: flags.FLAGS[name].value for name in RetrievalEval.__dataclass_fields__})
    result = evaluate_retrieval(run)
    m = result["metrics"]
    print(f"{result['model']}\n{result['queries']} questions, {result['corpus']} paragraphs "
          f"({len(result['eval_articles'])} held-back articles), embedded in {result['embed_seconds']:.1f} s")
    print("exact: " + ", ".join(f"{k} {v:.4f}" for k, v in m.items() if k != "queries"))
    if "approximate" in result:
        a = result["approximate"]
        print(f"FAISS IVF ({a['num_lists']} lists, {a['num_probes']} probed): recall of the exact top 10 "
              f"{a['recall_of_exact_top10']:.4f}; " + ", ".join(f"{k} {v:.4f}" for k, v in a["metrics"].items()
                                                               if k != "queries"))
    if run.output_json:
        print(f"written: {run.output_json}")


def run():
    console.run(main)


if __name__ == "__main__":
    run()
