"""Load Hugging Face BERT folders (config.json + weights) into kzoo models.

Hugging Face names (`encoder.layer.3.attention.self.query.weight`, with or
without a `bert.` prefix) are translated to the official ones, and torch
`Linear` weights ([out, in]) transposed to TensorFlow's [in, out]; the official
assignment map does the rest.
"""

import os
import re

from kzoo.checkpoints.assign import assign

_LAYER = re.compile(r"\.layer\.(\d+)\.")
_SECTIONS = ("embeddings.", "encoder.", "pooler.")
# BertForPreTraining / BertForMaskedLM heads. `cls.predictions.decoder.weight` is
# the tied word table (reported unused); `cls.predictions.decoder.bias` is the
# same tensor as `cls.predictions.bias` (whichever comes second is unused). Torch's seq_relationship
# weight is [2, hidden], as the official checkpoint stores it (no transpose).
_HEADS = {
    "cls.predictions.transform.dense.weight": ("cls/predictions/transform/dense/kernel", True),
    "cls.predictions.transform.dense.bias": ("cls/predictions/transform/dense/bias", False),
    "cls.predictions.transform.LayerNorm.weight": ("cls/predictions/transform/LayerNorm/gamma", False),
    "cls.predictions.transform.LayerNorm.bias": ("cls/predictions/transform/LayerNorm/beta", False),
    "cls.predictions.bias": ("cls/predictions/output_bias", False),
    "cls.predictions.decoder.bias": ("cls/predictions/output_bias", False),
    "cls.seq_relationship.weight": ("cls/seq_relationship/output_weights", False),
    "cls.seq_relationship.bias": ("cls/seq_relationship/output_bias", False),
}


def official_name(hf_name):
    """(official name, transpose?) for a HF BERT weight name, or None."""
    if hf_name in _HEADS:
        return _HEADS[hf_name]
    name = hf_name[len("bert."):] if hf_name.startswith("bert.") else hf_name
    if not name.startswith(_SECTIONS):
        return None
    module, _, leaf = name.rpartition(".")
    module = _LAYER.sub(r".layer_\1.", module + ".").rstrip(".")
    path = "bert/" + module.replace(".", "/")
    if module.endswith("LayerNorm"):
        leaf = {"weight": "gamma", "bias": "beta"}.get(leaf, leaf)
        return (f"{path}/{leaf}", False) if leaf in ("gamma", "beta") else None
    if module.endswith("_embeddings"):
        return (path, False) if leaf == "weight" else None
    if leaf == "weight":
        return f"{path}/kernel", True
    if leaf == "bias":
        return f"{path}/bias", False
    return None


def weights_file(folder):
    """The weights file of a HF folder: model.safetensors, else pytorch_model.bin."""
    for name in ("model.safetensors", "pytorch_model.bin"):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            return path
    raise ValueError(f"{folder}: no model.safetensors or pytorch_model.bin in this Hugging Face folder")


def _read_all(path):
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file

        return load_file(path)
    try:
        import torch
    except ImportError as e:
        raise ValueError(f"{path}: reading pytorch_model.bin needs torch; install it or use model.safetensors") from e
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v.float().numpy() if v.is_floating_point() else v.numpy() for k, v in state.items()}


def load_hf_bert(model, folder, strict=False, encoder=None):
    """Loads a Hugging Face BERT folder into the BERT encoder inside `model`.

    Args:
        model: any keras.Model containing one kzoo BERT encoder.
        folder: a folder with config.json and model.safetensors (or
            pytorch_model.bin when torch is installed).
        strict: raise when an encoder variable is left unloaded.
        encoder: the encoder sub-model, when `model` holds several.

    Returns:
        A `LoadReport` whose names are the HF weight names, already logged.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise ValueError(f"{folder}: not a folder (expected a Hugging Face BERT folder)")
    path = weights_file(folder)
    try:
        arrays = _read_all(path)
    except ValueError:
        raise
    except Exception as e:  # safetensors / torch raise their own types on corrupt files
        raise ValueError(f"{path}: cannot read weights: {e}") from e
    stored, unmapped = {}, []
    for hf_name in sorted(arrays):
        mapped = official_name(hf_name)
        if mapped is None:
            unmapped.append(hf_name)
            continue
        name, transpose = mapped
        if name in stored:  # a second name for the same tensor (tied biases)
            unmapped.append(hf_name)
            continue
        read = (lambda a=arrays[hf_name]: a.T) if transpose else (lambda a=arrays[hf_name]: a)
        stored[name] = (hf_name, read)
    report = assign(model, stored, unmapped, path, strict=strict, encoder=encoder)
    report.log()
    return report
