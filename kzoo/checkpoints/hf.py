"""Load Hugging Face folders (config.json + weights) of every family into kzoo models.

Hugging Face names (`encoder.layer.3.attention.self.query.weight`, with or
without a `bert.` / `albert.` / `deberta.` / ... prefix) are translated to the canonical
ones of the encoder's family (`kzoo.checkpoints.mapping.family_map(...).
hf_name`: the official names for BERT, ALBERT and ELECTRA), and torch
`Linear` weights ([out, in]) transposed to TensorFlow's [in, out]; the
family's assignment map does the rest.
"""

import os

from kzoo.checkpoints import mapping
from kzoo.checkpoints.assign import assign
from kzoo.checkpoints.bert_map import official_name  # noqa: F401  (BERT's translation, kept here for callers)
from kzoo.models.walk import find_encoder


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


def load_hf(model, folder, strict=False, encoder=None):
    """Loads a Hugging Face folder into the kzoo encoder inside `model`.

    The encoder's family (`kzoo.models.encoder_family`) picks the name
    translation and the map. Heads in the folder that `model` has (e.g.
    DistilBertForSequenceClassification's `classifier` into a
    `kzoo.models.bert_classifier`) are loaded too; the others are unused.

    Args:
        model: any keras.Model containing one kzoo encoder.
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
    family = mapping.family_map(encoder if encoder is not None else find_encoder(model))
    stored, unmapped = {}, []
    for hf_name in sorted(arrays):
        mapped = family.hf_name(hf_name)
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


load_hf_bert = load_hf  # its first name; it loads every family
