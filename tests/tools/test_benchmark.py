"""tools/benchmark.py end to end on a tiny model: the JSON, its ratios and the table."""

import json
import os
import subprocess
import sys

import pytest

from kzoo.tasks import benchmark
from tests.conftest import REPO, SHARED

TINY = ["--num_layers=1", "--hidden_size=32", "--num_heads=2", "--intermediate_size=64", "--deberta_num_layers=1",
        "--deberta_hidden_size=32", "--deberta_num_heads=2", "--deberta_intermediate_size=64",
        "--deberta_vocab_size=1000", "--deberta_batch_size=4"]


def _run(tmp_path, *flags):
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", "benchmark.py"), *flags],
                          capture_output=True, text=True, timeout=600, cwd=str(tmp_path))


@pytest.mark.slow
def test_quick_run_writes_consistent_figures(tmp_path, minilm_hf_folder):
    out_json, out_md = tmp_path / "b.json", tmp_path / "b.md"
    sst2 = os.path.join(SHARED, "data", "sst2", "train.tsv")  # named, so that KZOO_TEST_SHARED applies to the tool
    run = _run(tmp_path, "--quick", *TINY, "--batch_size=8", "--num_examples=256", "--window_steps=2",
               "--num_windows=2", "--serving_requests=5", "--serving_batches=2", "--matmul_size=256", "--fixed_lengths=64",
               f"--data_file={sst2}", f"--output_json={out_json}", f"--output_markdown={out_md}")
    assert run.returncode == 0, run.stderr[-4000:]
    r = json.loads(out_json.read_text())
    o = r["options"]
    # --quick presets what was not given; given flags win.
    assert r["quick"] and (o["window_steps"], o["num_windows"], o["measure_xla"], o["batch_size"]) == (2, 2, False, 8)
    assert o["warmup_steps"] == benchmark.BenchmarkOptions.quick().warmup_steps

    training, serving, ratios = r["training"], r["serving"], r["ratios"]
    # (the XLA rows of the full run add minutes of compilation; the quick preset leaves them out)
    assert set(training) == {"real_lengths", "fixed_64", "real_lengths_bf16"}  # (one fixed length given)
    for setting, figures in training.items():
        name = setting.replace("real_lengths", "train_real_lengths").replace("fixed", "train_fixed")
        assert ratios[name] == pytest.approx(figures["kzoo"]["examples_per_second"]
                                             / figures["keras_hub"]["examples_per_second"])
        for system in ("kzoo", "keras_hub"):
            f = figures[system]
            assert len(f["window_examples_per_second"]) == 2 and f["examples_per_second"] > 0
            assert f["mfu"] == pytest.approx(f["flop_rate"] / r["matmul_peak_flops"])
            if not setting.startswith("real_lengths") or system == "keras_hub":  # fixed shapes: FLOPs known
                length = 128 if setting.startswith("real_lengths") else int(setting.split("_")[1])
                per_example = benchmark.training_flops(8, length, 1, 32, 64) / 8
                assert f["flop_rate"] / f["examples_per_second"] == pytest.approx(per_example)
    real = training["real_lengths"]
    assert 2 < real["kzoo"]["mean_padded_length"] < 128 == real["keras_hub"]["mean_padded_length"]
    assert ratios["mfu"] == r["mfu"] == real["kzoo"]["mfu"] > 0
    assert r["matmul_peak_flops"] == max(r["matmul_peak_flops_before_after"])

    for batch, requests in ((1, 5), (32, 2)):
        for system in ("kzoo", "keras_hub"):
            s = serving[f"batch_{batch}"][system]
            assert s["requests"] == requests and 0 < s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"]
        for q in ("p50", "p90", "p99"):
            assert ratios[f"serve_{q}_batch{batch}"] == pytest.approx(
                serving[f"batch_{batch}"]["kzoo"][f"{q}_ms"] / serving[f"batch_{batch}"]["keras_hub"][f"{q}_ms"])
    assert {"train_real_lengths", "train_fixed_64", "serve_p50_batch1", "mfu"} <= set(ratios)
    assert "train_fixed_128" not in ratios
    # kzoo's own figures: float32 and bfloat16 exports, mixed_bfloat16 training over float32.
    assert ratios["serve_p50_batch1_ms"] == serving["batch_1"]["kzoo"]["p50_ms"]
    assert ratios["serve_p50_batch1_bf16_ms"] == serving["batch_1"]["kzoo_bf16"]["p50_ms"] > 0
    assert ratios["serve_throughput_batch32"] == serving["batch_32"]["kzoo"]["examples_per_second"]
    assert serving["batch_32"]["kzoo_bf16"]["requests"] == 2
    assert ratios["train_bf16_speedup"] == pytest.approx(training["real_lengths_bf16"]["kzoo"]["examples_per_second"]
                                                         / training["real_lengths"]["kzoo"]["examples_per_second"])
    breakdown = r["serve_breakdown"]
    assert breakdown["requests"]["traced"] == 10 and len(breakdown["blocks_ms"]) == 1  # --quick, one block
    assert all(breakdown["categories_ms"][c] > 0 for c in ("tokenizer_and_packing", "attention_projections",
                                                            "attention_scores", "feed_forward", "head"))
    assert 0 < breakdown["busy_ms"] <= breakdown["traced_ms"]
    assert set(r["machine"]["cpu_flags"]) <= set(benchmark.MATMUL_FLAGS)

    if os.path.exists(sst2):
        assert r["data"]["source"].startswith("SST-2") and r["data"]["examples"] == 256
        assert r["data"]["packing_agreement_with_keras_hub"] == {"64": 1.0}
    else:  # without ../shared: synthetic sentences with SST-2's lengths
        assert r["data"]["source"].startswith("synthetic") and r["data"]["examples"] == 256

    # The DeBERTa-v3 section: the same architecture in both systems, interleaved windows, three serving rows.
    deberta = r["deberta"]
    assert deberta["model"]["parameters"]["kzoo"] == deberta["model"]["parameters"]["keras_hub"] > 0
    assert set(deberta["training"]) == {"fixed_64"}
    for length in (64,):
        figures = deberta["training"][f"fixed_{length}"]
        assert ratios[f"deberta_train_fixed_{length}"] == pytest.approx(
            figures["kzoo"]["examples_per_second"] / figures["keras_hub"]["examples_per_second"])
        assert all(len(figures[s]["window_examples_per_second"]) == 2 for s in ("kzoo", "keras_hub"))
    b1 = deberta["serving"]["batch_1"]
    assert set(b1) == {"kzoo", "keras_hub", "keras_hub_padded"}
    assert all(b1[row]["requests"] == 5 and 0 < b1[row]["p50_ms"] <= b1[row]["p99_ms"] for row in b1)
    assert ratios["deberta_serve_p50_batch1"] == pytest.approx(b1["kzoo"]["p50_ms"] / b1["keras_hub"]["p50_ms"])
    assert ratios["deberta_serve_p50_batch1_padded"] == pytest.approx(
        b1["kzoo"]["p50_ms"] / b1["keras_hub_padded"]["p50_ms"])

    table = out_md.read_text()
    assert table in run.stdout
    assert f"{ratios['train_real_lengths']:.2f}x" in table and f"{ratios['serve_p50_batch1']:.2f}x" in table
    assert f"{ratios['deberta_serve_p50_batch1_padded']:.2f}x (p50)" in table
    # header, training, serving, DeBERTa training and serving, FLOP utilisation rows
    # (+ the mixed_bfloat16 training row and speed-up, the two bfloat16 serving rows, the breakdown table)
    assert table.count("\n| ") == 1 + 2 + 2 * 4 + 1 + 2 + 2 + 2 + 2 + 14
    assert r["machine"]["cores"] >= 1 and r["machine"]["tensorflow"]


def test_bad_flags_fail_with_the_field_named(tmp_path):
    run = _run(tmp_path, "--hidden_size=30", "--num_heads=4", f"--output_json={tmp_path / 'b.json'}")
    assert run.returncode != 0 and "hidden_size 30 is not divisible by num_heads 4" in run.stderr
    assert not (tmp_path / "b.json").exists()
