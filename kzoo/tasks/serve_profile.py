"""Where the time of one serving request goes: op-level timing of an exported SavedModel.

`serve_breakdown(path, texts)` loads the SavedModel into a TensorFlow session, sends one text per
request through a signature (`serving_default` by default) with full tracing on, and sorts every
executed op by the name scope kzoo's layers give it:

- `tokenizer_and_packing`: WordPiece / SentencePiece / BPE ops, packing, padding, and where an
  export's real-token path finds the real tokens and gathers them into and out of the block stack
  (`real_token_layout`);
- `embeddings`: lookups, sums and the embedding LayerNorm (and an embedding projection);
- for each transformer block: `attention_projections` (query, key, value and output matmuls with
  their bias adds), `attention_scores` (the query-key product, mask, softmax, the weighted sum of
  values and the head reshapes), `feed_forward` (the two matmuls and the activation),
  `layer_norm_and_residual` (the two LayerNorms, residual sums, dropout's identity);
- `head`: pooler or pooling, the classifier's dense layer, softmax, argmax, label lookup;
- `other`: variable reads, function plumbing, anything not under a known scope.

Op times are the executor's own timings (`NodeExecStats.op_end_rel_micros`) averaged over the
traced requests; with two cores some ops run side by side, so they can add up to more than the
request. `busy_ms` is the time at least one op was running (the union of the op intervals) and
`overhead_ms` = the traced requests' mean latency - `busy_ms`: what a request costs besides its
ops (the session call, feeding and fetching, the executor scheduling ~1,000 small ops). Tracing
itself slows a request down a little: `traced_ms` against the untraced `p50_ms` shows by how much.
"""

import re
import time

import numpy as np
import tensorflow as tf

CATEGORIES = ("tokenizer_and_packing", "embeddings", "attention_projections", "attention_scores", "feed_forward",
              "layer_norm_and_residual", "head", "other")
_BLOCK = re.compile(r"/transformer_(?:layer_(\d+)|group_(\d+)_inner_(\d+))(?:_\d+)?/")
_PROJECTION = re.compile(r"/attention(?:_\d+)?/(?:query|key|value|attention_output|output_dense|pos_proj|pos_q_proj)"
                         r"(?:_\d+)?/")
_FEED_FORWARD = re.compile(r"/(?:intermediate|output)(?:_\d+)?/")
_TOKENIZER = re.compile(r"(?:tokenizer|packer|wordpiece|sentencepiece|bpe|/Pad(?:_\d+)?$|/Pad(?:_\d+)?/|"
                        r"(?:^|/)real_token_layout(?:_\d+)?/)", re.IGNORECASE)
_HEAD = re.compile(r"/(?:pooler|sentence_pooling|classification_head|logits|head|dropout|span_head)[^/]*/|"
                   r"/(?:Softmax|ArgMax|GatherV2|Cast)(?:_\d+)?$")


def categorize(node_name, op_type=""):
    """(category, block index or None) of an executed node's name and op type."""
    block = _BLOCK.search(node_name)
    if block:
        index = int(block.group(1)) if block.group(1) is not None else int(block.group(3))
        if "/attention_residual/" in node_name or "/ffn_residual/" in node_name:
            if "MatMul" not in op_type:
                return "layer_norm_and_residual", index
            # a projection whose residual sum grappler fused into its matmul: the node has the sum's name
            return ("attention_projections" if "/attention_residual/" in node_name else "feed_forward"), index
        if "/attention" in node_name and "attention_layer_norm" not in node_name:
            return ("attention_projections" if _PROJECTION.search(node_name) else "attention_scores"), index
        if _FEED_FORWARD.search(node_name) and "layer_norm" not in node_name:
            return "feed_forward", index
        return "layer_norm_and_residual", index
    if "/embeddings" in node_name or "embedding_projection" in node_name:
        return "embeddings", None
    if _TOKENIZER.search(node_name):
        return "tokenizer_and_packing", None
    if node_name.startswith("Func/") or "ReadVariableOp" in node_name or "StatefulPartitionedCall" not in node_name:
        return "other", None
    if _HEAD.search(node_name) or "/bert_classifier" in node_name:
        return "head", None
    return "other", None


def _union_micros(intervals):
    total, end = 0, None
    for start, stop in sorted(intervals):
        if end is None or start > end:
            total += stop - start
            end = stop
        elif stop > end:
            total += stop - end
            end = stop
    return total


def serve_breakdown(path, texts, signature="serving_default", input_name="text", traced_requests=20,
                    timed_requests=100, warmup_requests=5):
    """The op-level breakdown of batch-1 requests to the SavedModel at `path` (see the module doc).

    Args:
        path: a SavedModel version folder (e.g. what `export_classifier` returned).
        texts: request texts; request i sends `texts[i % len(texts)]`.
        signature, input_name: the signature and its string input.
        traced_requests: requests run with full tracing (their op timings are averaged).
        timed_requests: untraced requests for the latency percentiles.
        warmup_requests: untimed requests first.

    Returns:
        A JSON-able dict: `p50_ms` / `p90_ms` (untraced), `busy_ms`, `overhead_ms`, `ops_per_request`,
        `categories_ms` {category: ms}, `blocks_ms` [{category: ms} per block], `ops` {category: count}.
    """
    if not texts:
        raise ValueError("serve_breakdown needs at least one text")
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        meta = tf.compat.v1.saved_model.load(session, [tf.saved_model.SERVING], path)
        if signature not in meta.signature_def:
            raise ValueError(f"{path} has no signature {signature!r}; it has {sorted(meta.signature_def)}")
        definition = meta.signature_def[signature]
        if input_name not in definition.inputs:
            raise ValueError(f"signature {signature!r} of {path} has no input {input_name!r}; "
                             f"it has {sorted(definition.inputs)}")
        feed_name = definition.inputs[input_name].name
        fetches = {name: tensor.name for name, tensor in definition.outputs.items()}

        def request(i, **kwargs):
            return session.run(fetches, {feed_name: [texts[i % len(texts)]]}, **kwargs)

        for i in range(warmup_requests):
            request(i)
        latencies = []
        for i in range(timed_requests):
            start = time.perf_counter()
            request(i)
            latencies.append(time.perf_counter() - start)

        options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
        totals = {c: 0.0 for c in CATEGORIES}
        counts = {c: 0 for c in CATEGORIES}
        blocks = {}
        busy, ops, traced_seconds = 0.0, 0, 0.0
        for i in range(traced_requests):
            metadata = tf.compat.v1.RunMetadata()
            start = time.perf_counter()
            request(i, options=options, run_metadata=metadata)
            traced_seconds += time.perf_counter() - start
            intervals = []
            for device in metadata.step_stats.dev_stats:
                for node in device.node_stats:
                    micros = node.op_end_rel_micros
                    label = node.timeline_label  # "name = OpType(inputs)"
                    category, block = categorize(node.node_name, label.split(" = ", 1)[-1].split("(", 1)[0])
                    totals[category] += micros
                    counts[category] += 1
                    if block is not None:
                        per_block = blocks.setdefault(block, {c: 0.0 for c in CATEGORIES[2:6]})
                        per_block[category] += micros
                    intervals.append((node.all_start_micros, node.all_start_micros + max(node.all_end_rel_micros, 1)))
                    ops += 1
            busy += _union_micros(intervals)
    n = traced_requests
    p50 = 1e3 * float(np.percentile(latencies, 50))
    busy_ms = busy / n / 1e3
    return {
        "requests": {"traced": traced_requests, "timed": timed_requests},
        "p50_ms": p50,
        "p90_ms": 1e3 * float(np.percentile(latencies, 90)),
        "busy_ms": busy_ms,
        "traced_ms": 1e3 * traced_seconds / n,
        "overhead_ms": max(1e3 * traced_seconds / n - busy_ms, 0.0),
        "ops_per_request": ops / n,
        "categories_ms": {c: totals[c] / n / 1e3 for c in CATEGORIES},
        "ops": {c: counts[c] // n for c in CATEGORIES},
        "blocks_ms": [{c: v / n / 1e3 for c, v in blocks[b].items()} for b in sorted(blocks)],
    }


def breakdown_table(breakdown):
    """Markdown lines of a `serve_breakdown` result."""
    total = sum(breakdown["categories_ms"].values())
    lines = ["| part | op time, ms | share | ops |", "|---|---:|---:|---:|"]
    for category in CATEGORIES:
        ms = breakdown["categories_ms"][category]
        lines.append(f"| {category.replace('_', ' ')} | {ms:.2f} | {ms / total:.0%} | {breakdown['ops'][category]} |")
    lines.append(f"| all ops (summed) | {total:.2f} | | {int(breakdown['ops_per_request'])} |")
    lines.append(f"| time with an op running | {breakdown['busy_ms']:.2f} | | |")
    lines.append(f"| per-call overhead (traced request - busy) | {breakdown['overhead_ms']:.2f} | | |")
    lines.append(f"| traced request, mean | {breakdown['traced_ms']:.2f} | | |")
    lines.append(f"| request p50 (untraced) | {breakdown['p50_ms']:.2f} | | |")
    return lines
