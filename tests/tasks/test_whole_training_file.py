"""validation_fraction=0 trains on the whole training file (evaluating only on an eval file when one is given),
and the training progress bar knows its number of steps from the first epoch (no `1/Unknown`, no "ran out of
data" warning), bucketed pipeline included."""

import re
import warnings

import pytest

from kzoo.data import EXAMPLE_INTENTS, read_task
from tests.tools.test_run_tagger import _sentences, _write_conll


def test_classifier_trains_on_the_whole_file_with_a_known_step_count(tmp_path, tiny_bert_folder, capfd):
    from kzoo.tasks import ClassifierRun, run_classifier

    examples = read_task("tsv", EXAMPLE_INTENTS)
    run = ClassifierRun(init_checkpoint=tiny_bert_folder(1), validation_fraction=0.0, num_train_epochs=1,
                        train_batch_size=32, model_dir=str(tmp_path / "run"), export_dir="", verbose=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_classifier(run)
    out = capfd.readouterr().out
    assert result["num_train"] == len(examples.texts) and result["num_eval"] == 0 and result["metrics"] == {}
    # Bucketed by length: more batches than ceil(360 / 32) = 12, and the bar shows their total from the start.
    totals = {int(n) for n in re.findall(r"\b\d+/(\d+)\b", out)}
    assert len(totals) == 1 and totals.pop() > 12, out[-2000:]
    assert "Unknown" not in out
    assert not [w for w in caught if "ran out of data" in str(w.message)]

    # With an eval file, validation_fraction=0 still trains on everything and evaluates on that file.
    eval_file = tmp_path / "eval.tsv"
    eval_file.write_text("text\tlabel\nwake me at 7\talarm\nplay some jazz\tmusic\n")
    run.eval_file, run.verbose, run.model_dir = str(eval_file), 0, str(tmp_path / "run2")
    result = run_classifier(run)
    assert result["num_train"] == len(examples.texts) and result["num_eval"] == 2
    assert 0.0 <= result["metrics"]["accuracy"] <= 1.0


@pytest.mark.parametrize("fraction", [-0.1, 1.0])
def test_fractions_outside_zero_one_are_refused(tmp_path, fraction, no_training):
    from kzoo.tasks import ClassifierRun, TaggerRun, run_classifier, run_tagger

    no_training()
    with pytest.raises(ValueError, match=re.escape("validation_fraction must be in [0, 1)")):
        run_classifier(ClassifierRun(validation_fraction=fraction, model_dir=str(tmp_path / "c"), export_dir=""))
    conll = tmp_path / "train.conll"
    _write_conll(conll, _sentences())
    with pytest.raises(ValueError, match=re.escape("validation_fraction must be in [0, 1)")):
        run_tagger(TaggerRun(train_file=str(conll), validation_fraction=fraction, model_dir=str(tmp_path / "t")))


def test_tagger_trains_on_every_sentence(tmp_path, tiny_bert_folder):
    from kzoo.tasks import TaggerRun, run_tagger

    conll = tmp_path / "train.conll"
    _write_conll(conll, _sentences())
    result = run_tagger(TaggerRun(init_checkpoint=tiny_bert_folder(1), train_file=str(conll),
                                  validation_fraction=0.0, num_train_epochs=1, model_dir=str(tmp_path / "run"),
                                  verbose=0))
    assert result["num_train"] == 40 and result["num_eval"] == 0 and result["metrics"] == {}
