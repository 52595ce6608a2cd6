"""Search a text classifier's fine-tuning hyperparameters with KerasTuner, then train, evaluate,
predict with and export the chosen configuration.

Every trial is a `kzoo-run-classifier` run (the flags they share keep their names and meaning)
scored with the task's official metric on the validation split carved from --train_file;
--eval_file is read only once the search has chosen, and only reported.

    kzoo-tune-classifier --task=mrpc --train_file=train.tsv --tuner=bayesian --max_trials=12 \\
        --num_seeds=3 --export_ensemble --model_dir=runs/mrpc_tuned --export_dir=savedmodels/mrpc

Distributed (KerasTuner's chief/worker mode): start one chief and any number of workers with
the same flags, e.g. --tuner_id=chief --oracle_address=10.0.0.1:8000 on one machine and
--tuner_id=worker0 --oracle_address=10.0.0.1:8000 on the others (a shared --model_dir).
"""

from absl import flags

from kzoo.cli import console
from kzoo.cli import flags as common_flags
from kzoo.cli import run_classifier as classifier_flags  # noqa: F401  (defines the flags run_classifier has)
from kzoo.tasks.tuning import TUNERS, TuneRun, tune_classifier

D = TuneRun()
flags.adopt_module_key_flags(classifier_flags)
flags.FLAGS.set_default("model_dir", D.model_dir)
flags.DEFINE_enum("tuner", D.tuner, list(TUNERS), "KerasTuner oracle: random search, hyperband (its brackets set "
                  "the epochs, up to --hyperband_max_epochs) or bayesian (Gaussian process; needs the tune extra).")
flags.DEFINE_integer("max_trials", D.max_trials, "Most trials (for hyperband a cap on its brackets).")
flags.DEFINE_string("search_space", D.search_space, "JSON file of hyperparameter ranges replacing the default ones "
                    "by name: {\"learning_rate\": {\"type\": \"float\", \"min\": 1e-5, \"max\": 1e-4, \"sampling\": "
                    "\"log\"}, \"train_batch_size\": [16, 32], \"dropout\": 0.1, \"layerwise_lr_decay\": null} (a list "
                    "is a choice, a value fixes it, null drops it; types float, int, choice, fixed).")
flags.DEFINE_string("tuning_dir", D.tuning_dir, "The search's state, trial logs, results.json / results.md and "
                    "TensorBoard HParams logs (default: <model_dir>/tuning). A search started again resumes there.")
flags.DEFINE_bool("overwrite", D.overwrite, "Start the search afresh instead of resuming the one in --tuning_dir.")
flags.DEFINE_integer("hyperband_max_epochs", D.hyperband_max_epochs, "Hyperband: the largest number of epochs.")
flags.DEFINE_integer("hyperband_factor", D.hyperband_factor, "Hyperband: the reduction factor between rungs.")
flags.DEFINE_integer("max_retries_per_trial", D.max_retries_per_trial, "Runs a trial that failed again this many "
                     "times.")
flags.DEFINE_integer("num_seeds", D.num_seeds, "Train the chosen configuration with this many seeds on the training "
                     "part and report the metric's mean and standard deviation.")
flags.DEFINE_bool("export_ensemble", D.export_ensemble, "With --num_seeds > 1: the final model is the "
                  "probability-averaging ensemble of the seeds' models.")
flags.DEFINE_bool("refit", D.refit, "Train the final model(s) on the whole training file (the validation split "
                  "included); --norefit keeps the seeds' models.")
flags.DEFINE_string("tuner_id", D.tuner_id, "Distributed search: 'chief' (holds the oracle, then trains the final "
                    "model) or a worker's id (default: $KERASTUNER_TUNER_ID).")
flags.DEFINE_string("oracle_address", D.oracle_address, "Distributed search: the chief's host:port (default: "
                    "$KERASTUNER_ORACLE_IP and $KERASTUNER_ORACLE_PORT).")


def main(argv):
    run = common_flags.run_from_flags(TuneRun)
    results = tune_classifier(run)
    if "worker" in results:
        print(f"worker {results['worker']}: the search is over")
        return
    best = results["best"]
    objective = results["objective"]
    print(f"{len(results['trials'])} trials, {results['trial_seconds']:.0f} s of trials; chosen: trial "
          f"{best['trial_id']}, {objective} {best['metrics'][objective]:.4f}: {best['hyperparameters']}")
    if "seeds" in results:
        s = results["seeds"]
        print(f"{len(s['seeds'])} seeds: {objective} {s['mean']:.4f} ± {s['std']:.4f}")
    final = results["final"]
    if final.get("validation_metrics"):
        print("final model (" + final["kind"] + ") on the validation split: " +
              ", ".join(f"{k} {v:.4f}" for k, v in final["validation_metrics"].items()))
    if final["eval_metrics"]:
        print("final model (" + final["kind"] + ") on --eval_file: " +
              ", ".join(f"{k} {v:.4f}" for k, v in final["eval_metrics"].items()))
    if "predictions_file" in final:
        print(f"predictions: {final['predictions_file']}")
    if final.get("export_path"):
        print(f"exported SavedModel: {final['export_path']}")
    print(f"results: {run.tuning_path}/results.md")


def run():
    console.run(main)


if __name__ == "__main__":
    run()
