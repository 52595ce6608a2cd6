"""Tasks: the end-to-end workflows the tools run, one module per task.

Each workflow reads its files, builds the model on a pretrained encoder, fits
it with the `kzoo.training` machinery, evaluates with the task's official
metric, predicts and exports with `kzoo.export`:

- `classification`: `ClassifierRun` / `run_classifier` (GLUE, TREC, TSV/CSV/JSONL), `export_classifier_dirs`;
- `squad`: `SquadRun` / `run_squad` (SQuAD v1.1 / v2.0 span extraction);
- `tagging`: `TaggerRun` / `run_tagger` (CoNLL token tagging);
- `pretraining`: `PretrainingRun` / `run_pretraining` (MLM + NSP, MLM only, ELECTRA);
- `dual_encoder`: `DualEncoderRun` / `run_dual_encoder` (contrastive sentence embeddings);
- `retrieval`: `RetrievalEval` / `evaluate_retrieval` (SQuAD paragraph retrieval);
- `benchmark`: kzoo against keras-hub (imported on its own: it needs keras-hub's models).

This is the top tier of the package: it may import every other kzoo package,
and none of them imports it.
"""

from kzoo.tasks.classification import (ClassifierRun, export_classifier_dirs, load_classifier_dir, read_inputs,
                                       run_classifier, write_predictions)
from kzoo.tasks.dual_encoder import DualEncoderRun, run_dual_encoder
from kzoo.tasks.pretraining import PretrainingRun, run_pretraining
from kzoo.tasks.retrieval import RetrievalEval, evaluate_retrieval
from kzoo.tasks.squad import SquadRun, run_squad
from kzoo.tasks.tagging import TaggerRun, run_tagger
