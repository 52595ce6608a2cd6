"""fill_mask for the families with a masked-LM head, against transformers on the same folders.

The tiny random RoBERTa (RobertaForMaskedLM), ALBERT (AlbertForPreTraining) and DeBERTa-v3
(DebertaV2ForMaskedLM) folders of `tests.family_models` are loaded with
`kzoo.checkpoints.load_masked_lm`; a subprocess that never imports TensorFlow tokenizes the same
texts with transformers' tokenizer of the folder and runs `AutoModelForMaskedLM` on kzoo's ids. The
mask is written as the family's own token, declared with `lstrip=True` as in the released RoBERTa,
XLM-R and ALBERT tokenizer files. DeBERTa-v3's files declare a plain `[MASK]`; kzoo treats the
space before a mask the same way for every family, so the reference declares DeBERTa's mask as the
others' too.
The ids must be the same, the logits at the masks within 1e-4, and kzoo's top-k must be
transformers' top-k (up to ties within 1e-6). Skips when transformers / torch (test extras) or
../shared (the tokenizer assets) are absent.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from kzoo.checkpoints import load_masked_lm
from kzoo.models.pretrainer import fill_mask, fill_mask_ids, mask_markers
from tests.family_models import tiny_family_folders

TOP_K = 5
TEXTS = {
    "roberta": ["The capital of France is <mask>.", "<mask> went to the market, and bought <mask> apples.",
                "A film that is <mask> funny and moving"],
    "albert": ["The capital of France is [MASK].", "[MASK] went to the market, and bought [MASK] apples.",
               "A film that is [MASK] funny and moving"],
    "deberta_v2": ["The capital of France is [MASK].", "[MASK] went to the market, and bought [MASK] apples."],
}

REFERENCE = textwrap.dedent("""
    import json, sys
    import numpy as np
    import torch, transformers
    job = json.load(open(sys.argv[1]))
    out = {}
    for family, spec in job.items():
        # The released roberta-base / xlm-roberta-base / albert-base-v2 tokenizers declare their mask
        # token with lstrip=True (it absorbs the space before it); the tiny folders have no tokenizer
        # config, and transformers 5's default is lstrip=False: say it as the released ones do.
        mask = transformers.AddedToken(spec["mask_token"], lstrip=True, rstrip=False, normalized=False, special=True)
        tokenizer = transformers.AutoTokenizer.from_pretrained(spec["folder"], mask_token=mask)
        model = transformers.AutoModelForMaskedLM.from_pretrained(spec["folder"]).eval()
        ids = np.array(spec["ids"], dtype=np.int64)
        with torch.no_grad():
            logits = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(spec["mask"])).logits.numpy()
        out[family] = {
            "hf_ids": [tokenizer(text)["input_ids"] for text in spec["texts"]],
            "mask_token": tokenizer.mask_token,
            "logits": logits[ids == tokenizer.mask_token_id].tolist(),
        }
    json.dump(out, open(sys.argv[2], "w"))
""")


def _pad(rows, pad_id):
    length = max(len(r) for r in rows)
    ids = np.full((len(rows), length), pad_id, "int32")
    mask = np.zeros((len(rows), length), "int32")
    for i, r in enumerate(rows):
        ids[i, :len(r)], mask[i, :len(r)] = r, 1
    return ids, mask


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    folders = tiny_family_folders(tmp_path_factory)
    root = tmp_path_factory.mktemp("fill_mask_reference")
    loaded, job = {}, {}
    for family in TEXTS:
        model, tokenizer = load_masked_lm(str(folders[family]))
        rows = [fill_mask_ids(tokenizer, text) for text in TEXTS[family]]
        ids, mask = _pad(rows, tokenizer.pad_token_id)
        loaded[family] = (model, tokenizer, rows, ids, mask)
        job[family] = {"folder": str(folders[family]), "texts": TEXTS[family], "ids": ids.tolist(),
                       "mask": mask.tolist(), "mask_token": mask_markers(tokenizer)[0]}
    (root / "job.json").write_text(json.dumps(job), encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", REFERENCE, str(root / "job.json"), str(root / "out.json")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    reference = json.loads((root / "out.json").read_text(encoding="utf-8"))
    return {family: (*loaded[family], reference[family]) for family in TEXTS}


@pytest.mark.parametrize("family", sorted(TEXTS))
def test_fill_mask_matches_transformers(cases, family):
    model, tokenizer, rows, ids, mask, reference = cases[family]
    assert reference["mask_token"] in mask_markers(tokenizer)
    assert rows == reference["hf_ids"]  # the same ids as transformers' tokenizer, mask token included
    positions = ids == tokenizer.mask_token_id
    logits = np.asarray(model({"input_word_ids": ids, "input_mask": mask, "input_type_ids": 0 * ids})["mlm_logits"])
    expected = np.array(reference["logits"], np.float32)
    np.testing.assert_allclose(logits[positions], expected, atol=1e-4, rtol=0)

    results = fill_mask(model, tokenizer, TEXTS[family], top_k=TOP_K)
    assert [len(r) for r in results] == [int(p.sum()) for p in positions]
    probabilities = np.exp(expected - expected.max(-1, keepdims=True))
    probabilities /= probabilities.sum(-1, keepdims=True)
    vocabulary = [t.decode("utf-8") for t in tokenizer.ids_to_tokens(np.arange(tokenizer.vocab_size)).numpy()]
    index = {token: i for i, token in enumerate(vocabulary)}
    for slot, predictions in enumerate(p for per_text in results for p in per_text):
        reference_probs = probabilities[slot]
        kth = np.sort(reference_probs)[-TOP_K]
        for token, probability in predictions:
            assert abs(probability - reference_probs[index[token]]) < 1e-6
            assert reference_probs[index[token]] >= kth - 1e-6, (family, slot, token)
        assert [p for _, p in predictions] == sorted((p for _, p in predictions), reverse=True)


def test_bracket_mask_works_for_every_family(cases):
    """`[MASK]` marks a mask in a RoBERTa text too: the same ids as `<mask>`."""
    _, tokenizer, rows, *_ = cases["roberta"]
    assert mask_markers(tokenizer) == ("<mask>", "[MASK]")
    assert [fill_mask_ids(tokenizer, text.replace("<mask>", "[MASK]")) for text in TEXTS["roberta"]] == rows
    assert rows[0][0] == tokenizer.cls_token_id == 0 and rows[0][-1] == tokenizer.sep_token_id == 2
    with pytest.raises(ValueError, match="no mask"):
        fill_mask_ids(tokenizer, "no marker here")
