"""Hyperparameter search for text classifiers, on KerasTuner.

Every trial is an ordinary `run_classifier` fine-tuning run (the same reading, model, recipe
and training code as the tool), scored with the task's official metric on the validation
split carved from the training file by the seeded stratified split. The split's seed is fixed
for the whole search (`split_seed`, default `seed`), so every trial, whatever seed it trains
with, is scored on the same examples; an `eval_file` is never read before the search has
chosen, and is then only reported.

After the search the chosen configuration is trained with `num_seeds` seeds on the same
split (mean and sample standard deviation of the metric), then on the whole training file
(`refit`), evaluated on `eval_file`, used for `predict_file` and exported: one model, or the
probability-averaging ensemble of the seeds' models (`export_ensemble`).

KerasTuner's oracles choose the trials (random search, Hyperband, Bayesian optimisation) and
keep the search's state in `<tuning_dir>/search/` (a search started again with the same
command resumes: finished trials are kept, an interrupted one runs again). Its chief/worker
mode spreads the trials over processes or machines: one chief holding the oracle and any
number of workers, each given `KERASTUNER_TUNER_ID`, `KERASTUNER_ORACLE_IP` and
`KERASTUNER_ORACLE_PORT` (or `tuner_id` and `oracle_address`); a worker started again with
its tuner id runs the trial it was given again. The chief writes the results and trains the
final model once the workers are done.
"""

import dataclasses
import importlib.util
import json
import os
import time

import keras
import numpy as np
from absl import logging

from kzoo import io as kzoo_io
from kzoo import checkpoints, data, export, layers, text
from kzoo.tasks.classification import (ClassifierRun, load_classifier_dirs, read_inputs, run_classifier,
                                       write_predictions)
from kzoo.training.metrics import task_metrics

TUNERS = ("random", "hyperband", "bayesian")
SPACE_TYPES = ("float", "int", "choice", "fixed")
# ClassifierRun fields that are not hyperparameters: inputs, outputs, the split, the strategy.
NOT_TUNABLE = frozenset((
    "task", "train_file", "eval_file", "predict_file", "output_predictions", "text_column", "text_b_column",
    "label_column", "id_column", "fine_labels", "skip_malformed", "init_checkpoint", "bert_config_file",
    "vocab_file", "validation_fraction", "split_seed", "model_dir", "export_dir", "predict_text", "verbose",
    "teacher_model_dir", "distribution_strategy", "num_gpus", "worker_hosts", "task_index", "tpu",
    "backup_steps", "static_shapes", "eval_batch_size"))
# What BERT-style fine-tuning is usually searched over: BERT's grid (rates 2e-5..5e-5, batch 16/32,
# 2-4 epochs) widened upwards for small encoders such as MiniLM, which prefer higher rates; warm-up
# as BERT (10%) and RoBERTa (6%) or none; linear decay (BERT), constant (keras-hub's compile) or
# cosine; weight decay 0.01 or none; ELECTRA-style layer-wise decay; the head's input and dropout.
DEFAULT_SPACE = {
    "learning_rate": {"type": "float", "min": 1e-5, "max": 3e-4, "sampling": "log"},
    "num_train_epochs": {"type": "int", "min": 2, "max": 5},
    "train_batch_size": {"type": "choice", "values": [16, 32]},
    "warmup_proportion": {"type": "choice", "values": [0.1, 0.06, 0.0]},
    "lr_schedule": {"type": "choice", "values": ["linear", "constant", "cosine"]},
    "weight_decay": {"type": "choice", "values": [0.01, 0.0]},
    "layerwise_lr_decay": {"type": "choice", "values": [1.0, 0.9, 0.8]},
    "pooling": {"type": "choice", "values": ["pooler", "cls", "mean"]},  # the checkpoint's own first
    "dropout": {"type": "choice", "values": [0.1, 0.0, 0.2]},
    "seed": {"type": "int", "min": 0, "max": 9999},
}
SEARCH_DIR = "search"  # KerasTuner's project folder inside tuning_dir
TRIAL_RECORD = "kzoo_trial.json"


@dataclasses.dataclass
class TuneRun(ClassifierRun):
    """A search over `ClassifierRun`'s hyperparameters, then the chosen configuration's final training.

    The `ClassifierRun` fields are the base configuration (a value the search space leaves out
    is taken from them) and name the task's files and outputs.

    Attributes:
        tuner: "random", "hyperband" (its brackets set the epochs: every trial trains from the
            pretrained weights for the epochs its rung gives, up to `hyperband_max_epochs`) or
            "bayesian" (Gaussian-process optimisation; needs scikit-learn and scipy, the `tune` extra).
        max_trials: most trials (for Hyperband, a cap on its brackets' trials).
        search_space: a JSON file overriding `DEFAULT_SPACE` entry by entry (`read_search_space`).
        tuning_dir: the search's state, the trials' logs, the results and the HParams logs
            (default `<model_dir>/tuning`).
        overwrite: start the search afresh instead of resuming the one in `tuning_dir`.
        hyperband_max_epochs, hyperband_factor: Hyperband's largest budget and reduction factor.
        max_retries_per_trial: runs again a trial that failed (an exception) this many times.
        num_seeds: trains the chosen configuration with this many seeds (the chosen one, +1, ...)
            on the training part and reports the metric's mean and standard deviation.
        export_ensemble: with `num_seeds` > 1, the final model is the probability-averaging
            ensemble of the seeds' models (`kzoo.models.classifier_ensemble`).
        refit: the final model(s) train on the whole training file (validation split included);
            else they are the seeds' models, trained without the validation split.
        tuner_id, oracle_address: distributed search without the environment variables:
            "chief" (holds the oracle) or a worker's id, and the chief's host:port.
    """

    model_dir: str = os.path.join("runs", "intents_tuned")
    tuner: str = "random"
    max_trials: int = 10
    search_space: str = None
    tuning_dir: str = None
    overwrite: bool = False
    hyperband_max_epochs: int = 4
    hyperband_factor: int = 3
    max_retries_per_trial: int = 1
    num_seeds: int = 1
    export_ensemble: bool = False
    refit: bool = True
    tuner_id: str = None
    oracle_address: str = None

    @property
    def tuning_path(self):
        return self.tuning_dir or os.path.join(self.model_dir, "tuning")

    def base_run(self):
        """The `ClassifierRun` part of this run."""
        return ClassifierRun(**{f.name: getattr(self, f.name) for f in dataclasses.fields(ClassifierRun)})


def tunable_fields():
    return sorted(f.name for f in dataclasses.fields(ClassifierRun) if f.name not in NOT_TUNABLE)


def _spec_error(source, name, message):
    return ValueError(f"{source}: {name}: {message}")


def normalize_spec(name, spec, source="search space"):
    """One search-space entry in its long form. Accepted forms: {"type": "float", "min", "max",
    "sampling": "linear"|"log"}, {"type": "int", "min", "max", "step"}, {"type": "choice",
    "values": [...]}, {"type": "fixed", "value": v}; a JSON list is a choice, a number, string or
    boolean a fixed value."""
    if name not in tunable_fields():
        raise _spec_error(source, name, f"not a hyperparameter of run_classifier; one of {tunable_fields()}")
    if isinstance(spec, list):
        spec = {"type": "choice", "values": spec}
    elif isinstance(spec, (bool, int, float, str)):
        spec = {"type": "fixed", "value": spec}
    if not isinstance(spec, dict) or spec.get("type") not in SPACE_TYPES:
        raise _spec_error(source, name, f"expected an object with a type in {list(SPACE_TYPES)}, a list or a value, "
                                        f"got {spec!r}")
    kind = spec["type"]
    allowed = {"float": {"min", "max", "sampling"}, "int": {"min", "max", "step", "sampling"},
               "choice": {"values"}, "fixed": {"value"}}[kind] | {"type"}
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise _spec_error(source, name, f"unknown key(s) {unknown} for type {kind} (allowed: {sorted(allowed)})")
    spec = dict(spec)
    if kind in ("float", "int"):
        number = int if kind == "int" else (int, float)
        for key in ("min", "max"):
            if not isinstance(spec.get(key), number) or isinstance(spec.get(key), bool):
                raise _spec_error(source, name, f"{key} must be a{'n integer' if kind == 'int' else ' number'}, "
                                                f"got {spec.get(key)!r}")
        if not spec["min"] < spec["max"]:
            raise _spec_error(source, name, f"min {spec['min']} must be below max {spec['max']}")
        spec.setdefault("sampling", "linear")
        if spec["sampling"] not in ("linear", "log"):
            raise _spec_error(source, name, f"sampling must be linear or log, got {spec['sampling']!r}")
        if spec["sampling"] == "log" and spec["min"] <= 0:
            raise _spec_error(source, name, "log sampling needs min > 0")
        if kind == "int":
            spec.setdefault("step", 1)
            if not isinstance(spec["step"], int) or spec["step"] < 1:
                raise _spec_error(source, name, f"step must be a positive integer, got {spec['step']!r}")
        values = [spec["min"], spec["max"]]
    elif kind == "choice":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise _spec_error(source, name, "values must be a non-empty list")
        kinds = {type(v) for v in values}
        if not kinds <= {int, float} and len(kinds) > 1 or not kinds <= {int, float, str, bool}:
            raise _spec_error(source, name, f"values must all be numbers, all strings or all booleans, got {values}")
        if len(set(values)) != len(values):
            raise _spec_error(source, name, f"values repeat: {values}")
        if kinds == {int, float}:
            spec["values"] = values = [float(v) for v in values]
    else:
        if "value" not in spec or not isinstance(spec["value"], (bool, int, float, str)):
            raise _spec_error(source, name, f"value must be a number, string or boolean, got {spec.get('value')!r}")
        values = [spec["value"]]
    for value in values:
        check_value(name, value, source)
    return spec


def check_value(name, value, source="search space"):
    """Whether `ClassifierRun` accepts `value` for `name` (the run's own validation)."""
    default = getattr(ClassifierRun, name, None)
    if isinstance(default, bool) != isinstance(value, bool) and default is not None:
        raise _spec_error(source, name, f"expected a boolean like the default {default!r}, got {value!r}")
    if isinstance(default, (int, float)) and not isinstance(default, bool) and not isinstance(value, (int, float)):
        raise _spec_error(source, name, f"expected a number like the default {default!r}, got {value!r}")
    if name == "pooling":
        if value not in layers.POOLING_MODES:
            raise _spec_error(source, name, f"{value!r} is not one of {list(layers.POOLING_MODES)}")
        return
    try:
        dataclasses.replace(ClassifierRun(), **{name: value}).validate()
    except (ValueError, TypeError) as e:
        raise _spec_error(source, name, f"{value!r}: {e}") from None


def read_search_space(path=None, pooling=None):
    """`DEFAULT_SPACE` with the entries of the JSON object in `path` replacing those of the same name
    (`normalize_spec`'s forms; null removes an entry, leaving the base run's value). `pooling`: the
    checkpoint's own pooling, tried first."""
    space = {name: normalize_spec(name, spec, source="DEFAULT_SPACE") for name, spec in DEFAULT_SPACE.items()}
    if pooling is not None:
        space["pooling"]["values"] = [pooling] + [p for p in space["pooling"]["values"] if p != pooling]
    if path:
        try:
            overrides = json.loads(kzoo_io.read_text(path))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON: line {e.lineno}, column {e.colno}: {e.msg}") from None
        if not isinstance(overrides, dict):
            raise ValueError(f"{path}: expected a JSON object of hyperparameter name -> range, got "
                             f"{type(overrides).__name__}")
        for name, spec in overrides.items():
            if spec is None:
                space.pop(name, None)
            else:
                space[name] = normalize_spec(name, spec, source=path)
    return space


def keras_tuner_module(tuner="random"):
    try:
        import keras_tuner
    except ImportError as e:
        raise ImportError("hyperparameter search needs keras-tuner (pip install keras-tuner)") from e
    if tuner == "bayesian":
        missing = [name for name in ("scipy", "sklearn") if importlib.util.find_spec(name) is None]
        if missing:
            raise ImportError(f"--tuner=bayesian needs scikit-learn and scipy (missing: {missing}): "
                              "pip install 'kzoo[tune]'")
    return keras_tuner


def hyperparameters(space):
    """A `keras_tuner.HyperParameters` of the space."""
    keras_tuner = keras_tuner_module()
    hp = keras_tuner.HyperParameters()
    for name, spec in space.items():
        if spec["type"] == "float":
            hp.Float(name, float(spec["min"]), float(spec["max"]), sampling=spec["sampling"])
        elif spec["type"] == "int":
            hp.Int(name, spec["min"], spec["max"], step=spec["step"], sampling=spec["sampling"])
        elif spec["type"] == "choice":
            hp.Choice(name, spec["values"])
        else:
            hp.Fixed(name, spec["value"])
    return hp


def objective_name(run):
    return "val_" + data.TASKS[run.task].metrics[0]


def make_oracle(run, space):
    keras_tuner = keras_tuner_module(run.tuner)
    if run.tuner not in TUNERS:
        raise ValueError(f"tuner must be one of {list(TUNERS)}, got {run.tuner!r}")
    objective = keras_tuner.Objective(objective_name(run), direction="max")
    common = dict(objective=objective, hyperparameters=hyperparameters(space), seed=run.seed,
                  max_retries_per_trial=run.max_retries_per_trial, allow_new_entries=False, tune_new_entries=False)
    if run.tuner == "random":
        return keras_tuner.oracles.RandomSearchOracle(max_trials=run.max_trials, **common)
    if run.tuner == "bayesian":
        return keras_tuner.oracles.BayesianOptimizationOracle(max_trials=run.max_trials, **common)
    oracle = keras_tuner.oracles.HyperbandOracle(max_epochs=run.hyperband_max_epochs, factor=run.hyperband_factor,
                                                 **common)
    oracle.max_trials = run.max_trials  # the base oracle stops handing out trials past it
    return oracle


def trial_fields(values):
    """`ClassifierRun` fields of a trial's hyperparameter values (Hyperband's budget as the epochs)."""
    fields = {name: value for name, value in values.items() if not name.startswith("tuner/")}
    if "tuner/epochs" in values:
        fields["num_train_epochs"] = int(values["tuner/epochs"])
    return fields


def training_run(base, fields, model_dir, **overrides):
    """The base run with `fields`, scored on the carved validation split, writing nothing but `model_dir`."""
    split_seed = base.seed if base.split_seed is None else base.split_seed
    values = dict(eval_file=None, predict_file=None, output_predictions=None, export_dir="", model_dir=model_dir,
                  split_seed=split_seed)
    values.update(fields)
    values.update(overrides)
    return dataclasses.replace(base.base_run() if isinstance(base, TuneRun) else base, **values)


def write_hparams_config(log_dir, space, metric_names, hyperband_max_epochs=None):
    """The HParams dashboard's experiment: one hyperparameter per space entry, the metrics."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hparams_api

    hparams = []
    for name, spec in space.items():
        if spec["type"] == "float":
            domain = hparams_api.RealInterval(float(spec["min"]), float(spec["max"]))
        elif spec["type"] == "int":
            domain = hparams_api.IntInterval(int(spec["min"]), int(spec["max"]))
        else:
            domain = hparams_api.Discrete(spec["values"] if spec["type"] == "choice" else [spec["value"]])
        hparams.append(hparams_api.HParam(name, domain))
    if hyperband_max_epochs and "num_train_epochs" not in space:
        hparams.append(hparams_api.HParam("num_train_epochs", hparams_api.IntInterval(1, hyperband_max_epochs)))
    with tf.summary.create_file_writer(log_dir).as_default():
        hparams_api.hparams_config(hparams=hparams, metrics=[hparams_api.Metric(m) for m in metric_names])


def write_trial_hparams(log_dir, trial_id, fields, metrics):
    """One trial's run in the HParams dashboard: its values and its metrics."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hparams_api

    with tf.summary.create_file_writer(os.path.join(log_dir, f"trial_{trial_id}")).as_default():
        hparams_api.hparams(fields, trial_id=str(trial_id))
        for name, value in metrics.items():
            tf.summary.scalar(name, value, step=1)


def _classifier_tuner_class():
    keras_tuner = keras_tuner_module()

    class ClassifierTuner(keras_tuner.engine.base_tuner.BaseTuner):
        """Runs each trial as a `run_classifier` run in its trial folder."""

        def __init__(self, run, oracle, **kwargs):
            self.run = run
            super().__init__(oracle, directory=run.tuning_path, project_name=SEARCH_DIR, **kwargs)

        def run_trial(self, trial):
            fields = trial_fields(trial.hyperparameters.values)
            trial_dir = self.get_trial_dir(trial.trial_id)
            logging.info("trial %s: %s", trial.trial_id, fields)
            start = time.time()
            try:
                result = run_classifier(training_run(self.run, fields, os.path.join(trial_dir, "run")))
            except (ValueError, TypeError) as e:  # a combination the recipe refuses: no point retrying it
                raise keras_tuner.errors.FailedTrialError(str(e)) from e
            finally:
                keras.backend.clear_session()
            metrics = {f"val_{name}": float(value) for name, value in result["metrics"].items()}
            record = {"trial_id": trial.trial_id, "hyperparameters": fields, "metrics": metrics,
                      "seconds": round(time.time() - start, 1), "num_train": result["num_train"],
                      "num_eval": result["num_eval"]}
            kzoo_io.write_json(os.path.join(trial_dir, TRIAL_RECORD), record)
            write_trial_hparams(os.path.join(self.run.tuning_path, "hparams"), trial.trial_id, fields, metrics)
            # the trial's weights are not needed again (kzoo.io: local or any tf.io.gfile file system)
            kzoo_io.remove(kzoo_io.join(trial_dir, "run", "model.keras"))
            kzoo_io.rmtree(kzoo_io.join(trial_dir, "run", "checkpoints"))
            return metrics

        def save_model(self, trial_id, model, step=0):
            pass

        def load_model(self, trial):
            raise NotImplementedError("trials keep no models; the chosen configuration is trained again")

    return ClassifierTuner


def _set_distribution_env(run):
    if run.tuner_id:
        os.environ["KERASTUNER_TUNER_ID"] = run.tuner_id
    if run.oracle_address:
        host, _, port = run.oracle_address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"oracle_address must be host:port, got {run.oracle_address!r}")
        os.environ["KERASTUNER_ORACLE_IP"], os.environ["KERASTUNER_ORACLE_PORT"] = host, port
    tuner_id = os.environ.get("KERASTUNER_TUNER_ID")
    distributed = "KERASTUNER_ORACLE_IP" in os.environ
    if distributed and not tuner_id:
        raise ValueError("a distributed search needs a tuner id (--tuner_id or KERASTUNER_TUNER_ID): chief or a "
                         "worker's name")
    return distributed, (not distributed or "chief" in tuner_id)


def serve_oracle(tuner, poll_seconds=0.5):
    """What `tuner.search()` does on a chief: serve the oracle to the workers until the search is over
    (every worker told to stop and no trial running). KerasTuner's own loop looks every 20 seconds once
    the first worker has stopped; this one every `poll_seconds`."""
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    tuner.save()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = oracle_chief.OracleServicer(tuner.oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    server.add_insecure_port(f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}")
    server.start()
    try:
        while not (servicer.stop_triggered and oracle_chief.exit_chief(tuner.oracle)):
            time.sleep(poll_seconds)
    finally:
        server.stop(grace=1)


def trial_table(tuner):
    """The trials in id order: id, status, hyperparameters, metrics, seconds."""
    rows = []
    for trial_id, trial in sorted(tuner.oracle.trials.items()):
        path = os.path.join(tuner.get_trial_dir(trial_id), TRIAL_RECORD)
        record = kzoo_io.read_json(path) if kzoo_io.exists(path) else {}
        rows.append({"trial_id": trial_id, "status": trial.status,
                     "hyperparameters": record.get("hyperparameters", trial_fields(trial.hyperparameters.values)),
                     "metrics": record.get("metrics", {}), "seconds": record.get("seconds"),
                     "score": trial.score})
    return rows


def _markdown(results):
    objective = results["objective"]
    names = list(results["search_space"]) + (["num_train_epochs"] if results["tuner"] == "hyperband" and
                                            "num_train_epochs" not in results["search_space"] else [])
    lines = [f"# {results['tuner']} search on {results['task']} ({results['train_file']})", "",
             f"Objective: {objective} on the validation split ({results['num_eval']} examples, split seed "
             f"{results['split_seed']}); {len(results['trials'])} trials, {results['trial_seconds']:.0f} s of "
             f"trials ({results['search_seconds']:.0f} s of search in the last run, which resumes earlier ones).", "",
             "| trial | status | " + " | ".join(names) + f" | {objective} | seconds |",
             "|---|---|" + "---:|" * (len(names) + 2)]

    def cell(value):
        return f"{value:.3g}" if isinstance(value, float) else str(value)
    for row in results["trials"]:
        mark = " (chosen)" if row["trial_id"] == results["best"]["trial_id"] else ""
        metric = row["metrics"].get(objective)
        lines.append(f"| {row['trial_id']}{mark} | {row['status']} | " +
                     " | ".join(cell(row["hyperparameters"].get(n, "")) for n in names) +
                     f" | {'' if metric is None else f'{metric:.4f}'} | {cell(row['seconds'] or '')} |")
    seeds = results.get("seeds")
    if seeds:
        lines += ["", f"Chosen configuration, {len(seeds['seeds'])} seeds {seeds['seeds']}: {objective} "
                      f"{seeds['mean']:.4f} ± {seeds['std']:.4f} (sample std)"]
        for name, summary in seeds.get("eval", {}).items():
            lines.append(f"- eval_file {name}: {summary['mean']:.4f} ± {summary['std']:.4f}")
    final = results.get("final")
    if final:
        def scores(key):
            return ", ".join(f"{k} {v:.4f}" for k, v in final.get(key, {}).items())
        parts = [f"Final model: {final['kind']}, trained on "
                 f"{'the whole training file' if final['refit'] else 'the training part'}"]
        if final.get("validation_metrics"):
            parts.append(f"validation split: {scores('validation_metrics')}")
        if final.get("eval_metrics"):
            parts.append(f"eval_file: {scores('eval_metrics')}")
        if final.get("export_path"):
            parts.append(f"exported to {final['export_path']}")
        lines += ["", "; ".join(parts)]
    return "\n".join(lines) + "\n"


def _mean_std(values):
    values = np.asarray(values, "float64")
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "values": [float(v) for v in values]}


def _dataset(model_run, tokenizer, examples, labels):
    packer = text.BertPacker.from_tokenizer(tokenizer, model_run.max_seq_length, dynamic_length=True)
    return data.classification_dataset(examples.texts, labels, tokenizer, packer, model_run.eval_batch_size,
                                       texts_b=examples.texts_b)


def evaluate_examples(model, tokenizer, label_names, run, examples):
    """The task's official metrics of `model` on labelled examples."""
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=task_metrics(data.TASKS[run.task].metrics, len(label_names)))
    values = model.evaluate(_dataset(run, tokenizer, examples, examples.label_ids(label_names)), verbose=0,
                            return_dict=True)
    return {name: float(value) for name, value in values.items()}


def read_eval_and_predict(run):
    """The eval file's and the predict file's examples (None when not given), read as `run_classifier`
    reads them (unknown labels fail naming file and line)."""
    _, evaluation, predict, _ = read_inputs(dataclasses.replace(run, validation_fraction=0.0))
    return evaluation, predict


def tune_classifier(run):
    """Searches, then trains, evaluates, predicts with and exports the chosen configuration.

    Returns the results dict also written to `<tuning_dir>/results.json` (and `results.md`); a
    worker of a distributed search returns {"worker": tuner_id} once the search is over."""
    if run.validation_fraction <= 0:
        raise ValueError("the search scores trials on a validation split of the training file: "
                         f"validation_fraction must be in (0, 1), got {run.validation_fraction}")
    if run.num_seeds < 1 or run.max_trials < 1:
        raise ValueError(f"num_seeds and max_trials must be at least 1, got {run.num_seeds} and {run.max_trials}")
    if run.teacher_model_dir:
        raise ValueError("teacher_model_dir: distillation is not searched; tune the teacher, then distil")
    if run.tuner not in TUNERS:
        raise ValueError(f"tuner must be one of {list(TUNERS)}, got {run.tuner!r}")
    for path in (run.eval_file, run.predict_file):  # fail before the first trial, not after it; read only later
        if path and not kzoo_io.exists(path):
            raise ValueError(f"{path}: no such file")
    # the training file is read (and checked, naming file and line) once now
    pair = data.read_task(run.task, run.train_file, text_column=run.text_column, text_b_column=run.text_b_column,
                          label_column=run.label_column, id_column=run.id_column, fine_labels=run.fine_labels,
                          skip_malformed=run.skip_malformed).texts_b is not None
    distributed, chief = _set_distribution_env(run)
    pooling = run.pooling
    if pooling is None:
        settings = checkpoints.sentence_settings(run.init_checkpoint)
        pooling = settings.pooling if settings else "pooler"
    space = read_search_space(run.search_space, pooling=pooling)
    if run.tuner == "hyperband" and space.pop("num_train_epochs", None):
        logging.info("hyperband: the epochs are its budget (up to %d), not a searched hyperparameter",
                     run.hyperband_max_epochs)
    if run.split_seed is None:
        run = dataclasses.replace(run, split_seed=run.seed)
    kzoo_io.makedirs(run.tuning_path)
    objective = objective_name(run)
    metric_names = ["val_" + m for m in data.TASKS[run.task].metrics]
    if chief:
        write_hparams_config(os.path.join(run.tuning_path, "hparams"), space, metric_names,
                             run.hyperband_max_epochs if run.tuner == "hyperband" else None)
    # only the chief (or a lone tuner) may delete the shared search folder
    tuner = _classifier_tuner_class()(run, make_oracle(run, space), overwrite=run.overwrite and chief)
    start = time.time()
    if distributed and chief:
        serve_oracle(tuner)
    else:
        tuner.search()
    search_seconds = time.time() - start
    if distributed and not chief:
        return {"worker": os.environ["KERASTUNER_TUNER_ID"]}

    trials = trial_table(tuner)
    best_trials = tuner.oracle.get_best_trials(1)
    if not best_trials:
        raise RuntimeError(f"no trial of the search in {run.tuning_path} completed; see the trials' messages there")
    best = best_trials[0]
    fields = trial_fields(best.hyperparameters.values)
    best_row = next(row for row in trials if row["trial_id"] == best.trial_id)
    results = {"task": run.task, "train_file": run.train_file, "tuner": run.tuner, "objective": objective,
               "split_seed": run.split_seed, "validation_fraction": run.validation_fraction,
               "num_eval": kzoo_io.read_json(os.path.join(tuner.get_trial_dir(best.trial_id), TRIAL_RECORD))
               ["num_eval"], "search_space": space, "search_seconds": search_seconds,
               "trial_seconds": sum(row["seconds"] or 0.0 for row in trials), "trials": trials,
               "best": {"trial_id": best.trial_id, "hyperparameters": fields, "metrics": best_row["metrics"]}}
    _write_results(run, results)

    seed0 = fields.get("seed", run.seed)
    seeds = [seed0 + i for i in range(run.num_seeds)]
    seed_dirs = []
    evaluation, predict = read_eval_and_predict(run)  # the search has chosen: now the eval file may be read
    if run.num_seeds > 1 or not run.refit:
        per_seed, per_seed_eval = [], {}
        for seed in seeds:
            model_dir = os.path.join(run.model_dir, "seeds", f"seed_{seed}")
            result = run_classifier(training_run(run, dict(fields, seed=seed), model_dir))
            per_seed.append(result["metrics"][objective[len("val_"):]])
            if evaluation is not None:  # reported only
                model, tokenizer, label_names = load_classifier_dirs([model_dir])
                for name, value in evaluate_examples(model, tokenizer, label_names, run, evaluation).items():
                    per_seed_eval.setdefault(name, []).append(value)
            seed_dirs.append(model_dir)
            keras.backend.clear_session()
        results["seeds"] = {"seeds": seeds, **_mean_std(per_seed),
                            "eval": {name: _mean_std(values) for name, values in per_seed_eval.items()}}
        logging.info("chosen configuration over seeds %s: %s %.4f ± %.4f", seeds, objective,
                     results["seeds"]["mean"], results["seeds"]["std"])
        _write_results(run, results)

    ensemble = run.export_ensemble and run.num_seeds > 1
    member_seeds = seeds if ensemble else seeds[:1]
    if run.refit:
        members = []
        for seed in member_seeds:
            model_dir = os.path.join(run.model_dir, "final", f"seed_{seed}")
            run_classifier(training_run(run, dict(fields, seed=seed), model_dir, validation_fraction=0.0))
            members.append(model_dir)
            keras.backend.clear_session()
    else:
        members = seed_dirs[:len(member_seeds)]
    model, tokenizer, label_names = load_classifier_dirs(members)
    final = {"kind": f"ensemble of {len(members)}" if ensemble else "one model", "refit": run.refit,
             "members": members, "seeds": member_seeds, "eval_metrics": {}}
    if not run.refit:  # the models never saw the validation split: the final model's score on it
        validation = read_inputs(training_run(run, fields, run.model_dir))[1]
        final["validation_metrics"] = evaluate_examples(model, tokenizer, label_names, run, validation)
        logging.info("final model on the validation split: %s", final["validation_metrics"])
    if evaluation is not None:
        final["eval_metrics"] = evaluate_examples(model, tokenizer, label_names, run, evaluation)
        logging.info("final model on %s: %s", run.eval_file, final["eval_metrics"])
    if predict is not None:
        logits = model.predict(_dataset(run, tokenizer, predict, None), verbose=0)
        path = run.output_predictions or os.path.join(run.model_dir, "predictions.tsv")
        write_predictions(path, predict.ids, label_names, keras.ops.convert_to_numpy(keras.ops.softmax(logits)))
        final["predictions_file"] = path
    if run.export_dir:
        final["export_path"] = export.export_classifier(model, tokenizer, label_names, run.export_dir,
                                                        run.max_seq_length, pair=pair,
                                                        compute_dtype=run.serving_dtype)
    results["final"] = final
    _write_results(run, results)
    return results


def _write_results(run, results):
    kzoo_io.write_json(os.path.join(run.tuning_path, "results.json"), results)
    kzoo_io.write_text(os.path.join(run.tuning_path, "results.md"), _markdown(results))
