"""Worker process for test_multi_worker.py (run as a script, not collected by pytest).

Trains a tiny `bert_classifier` for STEPS steps of a fixed synthetic dataset
with a GLOBAL batch of GLOBAL_BATCH, under either
`get_strategy("multi_worker_mirrored")` (the cluster from TF_CONFIG, or from
--worker-hosts/--task-index) or the default strategy (the single-process
reference), and writes to OUT.npz: the initial and final weights, and the
example indices this process fed each step; and to OUT.json: losses,
optimizer steps and the strategy summary. Then a `DualEncoder` for DUAL_STEPS steps of
synthetic pairs (its weights and loss too).

    python tests/training/multi_worker_script.py OUT [--strategy default]
        [--worker-hosts h:p,h:p --task-index i]
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

GLOBAL_BATCH = 8
STEPS = 6
SEQ = 8
VOCAB = 64
NUM_CLASSES = 3
LEARNING_RATE = 0.5
DUAL_STEPS = 2


def synthetic_data(n=GLOBAL_BATCH * STEPS, seed=1):
    """Fixed encoder inputs (right padding, two segments) and labels, the same in every process."""
    import numpy as np

    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCAB, (n, SEQ)).astype("int32")
    lengths = rng.integers(3, SEQ + 1, n)
    positions = np.arange(SEQ)[None, :]
    mask = (positions < lengths[:, None]).astype("int32")
    types = ((positions >= lengths[:, None] // 2) & (mask == 1)).astype("int32")
    ids = ids * mask
    labels = rng.integers(0, NUM_CLASSES, n).astype("int32")
    return {"input_word_ids": ids, "input_mask": mask, "input_type_ids": types}, labels


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--strategy", default="multi_worker_mirrored", choices=["multi_worker_mirrored", "default"])
    parser.add_argument("--worker-hosts")
    parser.add_argument("--task-index", type=int)
    args = parser.parse_args()
    start = time.time()

    import tensorflow as tf

    from kzoo.training.strategy import get_strategy, is_chief, strategy_summary

    # The strategy comes first: MultiWorkerMirroredStrategy configures the
    # collective ops and starts this task's gRPC server, which must happen
    # before TensorFlow initialises its devices.
    strategy = get_strategy(args.strategy, worker_hosts=args.worker_hosts, task_index=args.task_index)

    import keras
    import numpy as np

    from kzoo.configs import BertConfig
    from kzoo.models import bert_classifier

    config = BertConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=32, max_position_embeddings=32, type_vocab_size=2,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    x, y = synthetic_data()

    # Sharding. Every process builds the SAME full dataset, batched with the
    # GLOBAL batch. model.fit hands it to strategy.experimental_distribute_dataset,
    # which rebatches each global batch of 8 into per-replica batches of
    # 8 / num_replicas_in_sync; with AutoShardPolicy.DATA worker i keeps the
    # i-th of them. So the union of one step's per-replica batches over the
    # workers is exactly the single-process global batch of that step (checked
    # below with an index dataset distributed the same way). DATA is explicit
    # here: AUTO would pick it too for in-memory data, but FILE for file-based
    # datasets, which splits by file rather than by batch.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA

    def batched(dataset):
        return dataset.batch(GLOBAL_BATCH, drop_remainder=True).with_options(options)

    indices = strategy.experimental_distribute_dataset(batched(tf.data.Dataset.range(len(y))))
    fed = [np.concatenate([np.asarray(t) for t in strategy.experimental_local_results(batch)])
           for batch in indices]

    keras.utils.set_random_seed(0)  # the same initial weights in every process (MWMS also broadcasts the chief's)
    with strategy.scope():
        model = bert_classifier(config, NUM_CLASSES, dropout=0.0)
        model.compile(keras.optimizers.SGD(LEARNING_RATE),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    initial = model.get_weights()
    history = model.fit(batched(tf.data.Dataset.from_tensor_slices((x, y))), epochs=1, shuffle=False, verbose=0)

    # A dual encoder on (anchor, positive) pairs of the same sharded global batches: its in-batch
    # negatives are gathered across the workers, so both equal the single process.
    from kzoo.models import DualEncoder, bert_encoder, sentence_encoder

    pairs = {"anchor": synthetic_data(seed=2)[0], "positive": synthetic_data(seed=3)[0]}
    keras.utils.set_random_seed(1)
    with strategy.scope():
        dual = DualEncoder(sentence_encoder(bert_encoder(config), pooling="mean"), symmetric=True)
        dual.compile(keras.optimizers.SGD(LEARNING_RATE))
    dual_initial = dual.anchor_encoder.get_weights()
    dual_history = dual.fit(batched(tf.data.Dataset.from_tensor_slices(pairs)).take(DUAL_STEPS), epochs=1,
                            shuffle=False, verbose=0)

    # Each process writes its own file (a real job writes shared outputs only
    # where is_chief(strategy)).
    arrays = {f"init_{i}": w for i, w in enumerate(initial)}
    arrays.update({f"dual_init_{i}": np.asarray(w) for i, w in enumerate(dual_initial)})
    arrays.update({f"dual_final_{i}": np.asarray(w) for i, w in enumerate(dual.anchor_encoder.get_weights())})
    arrays.update({f"final_{i}": np.asarray(w) for i, w in enumerate(model.get_weights())})
    arrays.update({f"fed_{s}": f for s, f in enumerate(fed)})
    np.savez(args.out + ".npz", **arrays)
    info = {
        "summary": strategy_summary(strategy),
        "replicas": strategy.num_replicas_in_sync,
        "is_chief": is_chief(strategy),
        "iterations": int(model.optimizer.iterations.numpy()),
        "loss": history.history["loss"],
        "dual_loss": dual_history.history["loss"],
        "seconds": time.time() - start,
    }
    with open(args.out + ".json", "w") as f:
        json.dump(info, f)
    print("DONE " + json.dumps(info), flush=True)


if __name__ == "__main__":
    main()
