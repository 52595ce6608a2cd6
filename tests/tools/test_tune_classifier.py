"""tools/tune_classifier.py: KerasTuner searches over run_classifier, on a tiny BERT and a keyword task
that one learning rate learns and the other cannot, so that which trial wins is known."""

import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import REPO

SCRIPT = os.path.join(REPO, "tools", "tune_classifier.py")
FILLER = ("the", "movie", "was", "plot", "and", "actors", "story", "it", "film", "music", "scenes", "ending")
LABELS = {"pos": "excellent", "neg": "terrible"}
# Everything fixed but the learning rate: 1e-6 leaves the random model at chance, 1e-2 learns the keyword
# in one epoch (validation accuracy 1.0 with seeds 1 and 2).
SPACE = {"learning_rate": [1e-6, 1e-2], "num_train_epochs": 1, "train_batch_size": 8, "warmup_proportion": 0.0,
         "lr_schedule": "constant", "weight_decay": 0.0, "layerwise_lr_decay": 1.0, "pooling": "mean",
         "dropout": 0.0, "seed": 1}


def _write_task(path, count, seed, flip=False):
    rng = np.random.default_rng(seed)
    lines = ["text\tlabel"]
    for i in range(count):
        label = "pos" if i % 2 else "neg"
        words = list(rng.choice(FILLER, 5))
        words.insert(int(rng.integers(0, 6)), LABELS[label])
        if flip:
            label = "neg" if label == "pos" else "pos"
        lines.append(" ".join(words) + "\t" + label)
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture
def task(tmp_path, tiny_bert_folder):
    space = tmp_path / "space.json"
    space.write_text(json.dumps(SPACE))
    return dict(train_file=_write_task(tmp_path / "train.tsv", 240, 0), search_space=str(space),
                init_checkpoint=tiny_bert_folder(1), max_seq_length=16, eval_batch_size=16, verbose=0,
                validation_fraction=0.25, model_dir=str(tmp_path / "run"), export_dir="")


def _flags(values):
    return [f"--{k}={v}" if not isinstance(v, bool) else f"--{'' if v else 'no'}{k}" for k, v in values.items()]


def _start(values, log, env=None):
    return subprocess.Popen([sys.executable, SCRIPT] + _flags(values), stdout=log, stderr=subprocess.STDOUT,
                            text=True, env=dict(os.environ, **(env or {})), cwd=REPO)


def _wait_for(path, process, timeout=300):
    deadline = time.time() + timeout
    while not os.path.exists(path):
        assert process.poll() is None, f"exited ({process.returncode}) before {path} appeared"
        assert time.time() < deadline, f"{path} did not appear"
        time.sleep(0.1)


def _hparams_runs(log_dir):
    """{run folder: (hyperparameter values, {metric: value})} of the HParams event files, and the experiment's
    hyperparameter and metric names."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import plugin_data_pb2

    runs, experiment = {}, None
    for path in glob.glob(os.path.join(log_dir, "**", "events.out.tfevents.*"), recursive=True):
        run = os.path.relpath(os.path.dirname(path), log_dir)
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "hparams":
                    data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
                    if data.HasField("experiment"):
                        experiment = ([h.name for h in data.experiment.hparam_infos],
                                      [m.name.tag for m in data.experiment.metric_infos])
                    if data.HasField("session_start_info"):
                        values = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
                                  for k, v in data.session_start_info.hparams.items()}
                        runs.setdefault(run, [{}, {}])[0] = values
                elif value.HasField("tensor"):
                    runs.setdefault(run, [{}, {}])[1][value.tag] = float(tf.make_ndarray(value.tensor))
    return runs, experiment


def test_random_search_resumes_after_a_kill_and_never_chooses_on_the_eval_file(tmp_path, task):
    """The whole tool as a user runs it: killed during the second trial and started again, it keeps the first
    trial, runs the second again, chooses the rate that learns on its validation split although the eval
    file's labels are flipped (choosing on it would pick the rate that learns nothing), then trains two
    seeds, reports them, exports their ensemble and predicts with it (the chief of the distributed test
    refits on the whole file)."""
    values = dict(task, tuner="random", max_trials=2, num_seeds=2, export_ensemble=True, refit=False,
                  eval_file=_write_task(tmp_path / "eval.tsv", 24, 1, flip=True),
                  predict_file=_write_task(tmp_path / "predict.tsv", 6, 2),
                  export_dir=str(tmp_path / "savedmodels" / "keywords"))
    search = tmp_path / "run" / "tuning" / "search"
    with open(tmp_path / "first.log", "w") as log:
        first = _start(values, log)
        _wait_for(search / "trial_1" / "run", first)  # trial 0 has ended, trial 1 is training
        first.send_signal(signal.SIGKILL)
        first.wait()
    record_0 = (search / "trial_0" / "kzoo_trial.json").read_text()
    with open(tmp_path / "second.log", "w") as log:
        second = _start(values, log)
        assert second.wait(timeout=600) == 0, (tmp_path / "second.log").read_text()[-4000:]
    output = (tmp_path / "second.log").read_text()
    assert "Reloading Tuner" in output and "trial 0:" not in output and "trial 1:" in output
    assert (search / "trial_0" / "kzoo_trial.json").read_text() == record_0  # not run again

    results = json.loads((tmp_path / "run" / "tuning" / "results.json").read_text())
    trials = {row["trial_id"]: row for row in results["trials"]}
    assert sorted(trials) == ["0", "1"] and {row["status"] for row in trials.values()} == {"COMPLETED"}
    by_rate = {row["hyperparameters"]["learning_rate"]: row["metrics"]["val_accuracy"] for row in trials.values()}
    assert by_rate[1e-2] >= 0.9 and by_rate[1e-6] <= 0.75, by_rate
    assert results["best"]["hyperparameters"]["learning_rate"] == 1e-2
    assert results["num_eval"] == 60 and results["objective"] == "val_accuracy"
    seeds = results["seeds"]
    assert seeds["seeds"] == [1, 2] and len(seeds["values"]) == 2
    assert seeds["mean"] == pytest.approx(np.mean(seeds["values"]))
    assert seeds["std"] == pytest.approx(np.std(seeds["values"], ddof=1))
    final = results["final"]
    assert final["kind"] == "ensemble of 2" and not final["refit"]
    assert final["members"] == [os.path.join(values["model_dir"], "seeds", f"seed_{s}") for s in (1, 2)]
    assert final["validation_metrics"]["accuracy"] >= 0.9  # the ensemble, on the split its members never saw
    # the flipped eval file is only reported, as it is: the learned model gets it wrong
    assert final["eval_metrics"]["accuracy"] <= 0.25 and seeds["eval"]["accuracy"]["mean"] <= 0.25
    assert final["export_path"] == str(tmp_path / "savedmodels" / "keywords" / "1")
    rows = [l.split("\t") for l in open(final["predictions_file"]).read().splitlines()]
    assert rows[0] == ["id", "label", "prob_neg", "prob_pos"] and len(rows) == 7
    assert sum(r[1] == ("pos" if i % 2 else "neg") for i, r in enumerate(rows[1:])) >= 5
    table = (tmp_path / "run" / "tuning" / "results.md").read_text()
    assert "| 1 (chosen) | COMPLETED |" in table or "| 0 (chosen) | COMPLETED |" in table

    import tensorflow as tf
    serving = tf.saved_model.load(final["export_path"]).signatures["serving_default"]
    out = serving(text=tf.constant(["the film was excellent", "the film was terrible"]))
    assert [s.decode() for s in out["labels"].numpy()] == ["pos", "neg"]

    runs, experiment = _hparams_runs(str(tmp_path / "run" / "tuning" / "hparams"))
    assert set(experiment[0]) == set(SPACE) and experiment[1] == ["val_accuracy"]
    assert sorted(runs) == ["trial_0", "trial_1"]
    for trial_id, (hparams, metrics) in ((k[len("trial_"):], v) for k, v in runs.items()):
        assert hparams["learning_rate"] == pytest.approx(trials[trial_id]["hyperparameters"]["learning_rate"])
        assert hparams["pooling"] == "mean" and hparams["num_train_epochs"] == 1  # numbers come back as floats
        assert metrics["val_accuracy"] == pytest.approx(trials[trial_id]["metrics"]["val_accuracy"])


@pytest.mark.slow
def test_hyperband_search(tmp_path, task):
    from kzoo.tasks.tuning import TuneRun, tune_classifier

    run = TuneRun(**task, tuner="hyperband", max_trials=3, hyperband_max_epochs=2, hyperband_factor=2, refit=False)
    results = tune_classifier(run)
    trials = results["trials"]
    # its first bracket: two 1-epoch trials, then the better one's configuration for 2 epochs
    assert [row["status"] for row in trials] == ["COMPLETED"] * 3
    assert "num_train_epochs" not in results["search_space"]
    assert [row["hyperparameters"]["num_train_epochs"] for row in trials] == [1, 1, 2]
    assert trials[2]["hyperparameters"]["learning_rate"] == 1e-2
    best = results["best"]
    assert best["metrics"]["val_accuracy"] == max(row["metrics"]["val_accuracy"] for row in trials)
    final = results["final"]
    assert final["refit"] is False and final["members"] == [os.path.join(run.model_dir, "seeds", "seed_1")]
    assert results["seeds"]["seeds"] == [1]


@pytest.mark.slow
def test_bayesian_chief_and_two_workers_share_one_oracle_and_a_killed_worker_runs_its_trial_again(tmp_path, task):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "space.json").write_text(json.dumps(dict(SPACE, learning_rate=[1e-6, 1e-3, 1e-2])))
    values = dict(task, tuner="bayesian", max_trials=3, oracle_address=f"127.0.0.1:{port}")
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in ("chief", "worker0", "worker1", "worker1b")}
    try:
        chief = _start(dict(values, tuner_id="chief"), logs["chief"])
        worker0 = _start(dict(values, tuner_id="worker0"), logs["worker0"])
        worker1 = _start(dict(values, tuner_id="worker1"), logs["worker1"])
        search = tmp_path / "run" / "tuning" / "search"
        deadline = time.time() + 300
        while True:  # kill worker1 once its trial is training
            text = (tmp_path / "worker1.log").read_text()
            started = [line.split("trial ")[1].split(":")[0] for line in text.splitlines() if "] trial " in line]
            if started and os.path.exists(search / f"trial_{started[-1]}" / "run"):
                break
            assert worker1.poll() is None and time.time() < deadline, text[-3000:]
            time.sleep(0.1)
        worker1.send_signal(signal.SIGKILL)
        worker1.wait()
        killed = started[-1]
        assert not os.path.exists(search / f"trial_{killed}" / "kzoo_trial.json")
        worker1 = _start(dict(values, tuner_id="worker1"), logs["worker1b"])
        for name, process in (("worker0", worker0), ("worker1b", worker1), ("chief", chief)):
            assert process.wait(timeout=600) == 0, (tmp_path / f"{name}.log").read_text()[-4000:]
    finally:
        for process in (locals().get(n) for n in ("chief", "worker0", "worker1")):
            if process is not None and process.poll() is None:
                process.kill()
        for log in logs.values():
            log.close()
    restarted = (tmp_path / "worker1b.log").read_text()
    assert f"] trial {killed}:" in restarted  # the restarted worker got its unfinished trial back
    ran = [line for name in ("worker0", "worker1b") for line in (tmp_path / f"{name}.log").read_text().splitlines()
           if "] trial " in line]
    assert len(ran) == 3, ran  # every trial ran once to the end, on one of the workers
    results = json.loads((search.parent / "results.json").read_text())
    assert [row["status"] for row in results["trials"]] == ["COMPLETED"] * 3
    assert sorted(row["hyperparameters"]["learning_rate"] for row in results["trials"]) == [1e-6, 1e-3, 1e-2]
    assert results["final"]["members"] == [os.path.join(values["model_dir"], "final", "seed_1")]
    assert "worker worker0: the search is over" in (tmp_path / "worker0.log").read_text()


def test_search_space_file(tmp_path):
    from kzoo.tasks.tuning import DEFAULT_SPACE, hyperparameters, read_search_space

    default = hyperparameters(read_search_space(pooling="cls"))  # the shipped space builds, and samples
    assert sorted(default.values) == sorted(DEFAULT_SPACE) and default.values["pooling"] == "cls"
    assert default.values["num_train_epochs"] == 2 and default.values["learning_rate"] == 1e-5

    path = tmp_path / "space.json"
    path.write_text(json.dumps({"learning_rate": {"type": "float", "min": 1e-5, "max": 1e-4, "sampling": "log"},
                                "train_batch_size": [16, 32, 64], "dropout": 0.2, "layerwise_lr_decay": None}))
    space = read_search_space(str(path), pooling="mean")
    assert space["learning_rate"] == {"type": "float", "min": 1e-5, "max": 1e-4, "sampling": "log"}
    assert space["train_batch_size"] == {"type": "choice", "values": [16, 32, 64]}
    assert space["dropout"] == {"type": "fixed", "value": 0.2}
    assert "layerwise_lr_decay" not in space and space["seed"] == dict(DEFAULT_SPACE["seed"], step=1, sampling="linear")
    assert space["pooling"]["values"][0] == "mean"  # the checkpoint's own pooling first
    for content, message in [
        ("{\"learning_rate\": [1e-5,,]}", "not valid JSON: line 1, column"),
        ("[1, 2]", "expected a JSON object"),
        ("{\"train_file\": [\"a\", \"b\"]}", "train_file: not a hyperparameter of run_classifier"),
        ("{\"learning_rate\": {\"type\": \"float\", \"min\": 1e-3, \"max\": 1e-4}}", "min 0.001 must be below max"),
        ("{\"learning_rate\": {\"type\": \"float\", \"min\": 0, \"max\": 1e-4, \"sampling\": \"log\"}}",
         "log sampling needs min > 0"),
        ("{\"learning_rate\": {\"type\": \"grid\"}}", "expected an object with a type in"),
        ("{\"learning_rate\": {\"type\": \"float\", \"min\": 1e-5, \"max\": 1e-4, \"step\": 2}}",
         "unknown key(s) ['step']"),
        ("{\"lr_schedule\": [\"linear\", \"exponential\"]}", "lr_schedule: 'exponential'"),
        ("{\"pooling\": [\"mean\", \"attention\"]}", "pooling: 'attention' is not one of"),
        ("{\"train_batch_size\": [16, \"32\"]}", "values must all be numbers"),
        ("{\"num_train_epochs\": {\"type\": \"int\", \"min\": 1.5, \"max\": 3}}", "min must be an integer"),
        ("{\"feature_extraction\": 1}", "expected a boolean"),
    ]:
        path.write_text(content)
        with pytest.raises(ValueError) as error:
            read_search_space(str(path))
        assert str(error.value).startswith(f"{path}: ") and message in str(error.value), str(error.value)
