"""`kzoo.tasks.serve_profile`: how executed ops are sorted (the end-to-end breakdown runs in
tests/tools/test_benchmark.py)."""

import pytest

from kzoo.tasks.serve_profile import _union_micros, categorize

P = "StatefulPartitionedCall_1/StatefulPartitionedCall/"


@pytest.mark.parametrize("name, want", [
    (P + "bert_tokenizer_1/RegexSplitWithOffsets", ("tokenizer_and_packing", None)),
    (P + "bert_packer_1/RoundRobinTrimmer/trim/sub", ("tokenizer_and_packing", None)),
    (P + "Pad_2", ("tokenizer_and_packing", None)),
    (P + "real_token_layout/Where", ("tokenizer_and_packing", None)),
    (P + "real_token_layout_1/GatherV2_1", ("tokenizer_and_packing", None)),
    (P + "bert_classifier_1/bert_encoder_1/embeddings_1/layer_norm_1/mul", ("embeddings", None)),
    (P + "bert_classifier_1/albert_encoder_1/embedding_projection_1/MatMul", ("embeddings", None)),
    (P + "bert_classifier_1/bert_encoder_1/transformer_layer_3_1/attention_1/query_1/einsum/Einsum",
     ("attention_projections", 3)),
    (P + "bert_classifier_1/bert_encoder_1/transformer_layer_0_1/attention_1/attention_output_1/Add",
     ("attention_projections", 0)),
    (P + "bert_classifier_1/bert_encoder_1/transformer_layer_0_1/attention_1/softmax_1/Softmax",
     ("attention_scores", 0)),
    (P + "bert_classifier_1/bert_encoder_1/transformer_layer_1_1/attention_1/MatMul_1", ("attention_scores", 1)),
    # the real-token path's ops: its own scopes under the block's
    (P + "bert_classifier_1/bert_encoder_1/transformer_layer_2_1/attention/value/MatMul", ("attention_projections", 2)),
    (P + "bert_classifier_1/bert_encoder_1/transformer_layer_2_1/attention/attention_output/BiasAdd",
     ("attention_projections", 2)),
    (P + "bert_classifier_1/bert_encoder_1/transformer_layer_2_1/attention/GatherV2_3", ("attention_scores", 2)),
    (P + "bert_classifier_1/bert_encoder_1/transformer_layer_1_1/intermediate_1/Tensordot/MatMul",
     ("feed_forward", 1)),
    (P + "bert_classifier_1/bert_encoder_1/transformer_layer_1_1/output_1/BiasAdd", ("feed_forward", 1)),
    (P + "bert_classifier_1/bert_encoder_1/transformer_layer_1_1/output_layer_norm_1/moments/mean",
     ("layer_norm_and_residual", 1)),
    (P + "bert_classifier_1/bert_encoder_1/transformer_layer_1_1/attention_layer_norm_1/add",
     ("layer_norm_and_residual", 1)),
    (P + "bert_classifier_1/bert_encoder_1/transformer_layer_1_1/add", ("layer_norm_and_residual", 1)),
    (P + "bert_classifier_1/albert_encoder_1/transformer_group_0_inner_1_1/intermediate_1/MatMul",
     ("feed_forward", 1)),
    (P + "bert_classifier_1/bert_encoder_1/pooler_1/dense_1/Tanh", ("head", None)),
    (P + "bert_classifier_1/classifier_1/logits_1/BiasAdd", ("head", None)),
    (P + "Softmax", ("head", None)),
    (P + "ArgMax", ("head", None)),
    ("Func/StatefulPartitionedCall_1/input/_19", ("other", None)),
    ("transformer_layer_0/attention/query/kernel", ("other", None)),
    (P + "bert_classifier_1/bert_encoder_1/pooler_1/dense_1/BiasAdd/ReadVariableOp", ("other", None)),
])
def test_ops_are_sorted_by_their_layer(name, want):
    assert categorize(name) == want


@pytest.mark.parametrize("name, op_type, want", [
    # grappler fuses a residual sum into the matmul before it; the fused node keeps the sum's name
    (P + "bert_classifier_1/bert_encoder_1/transformer_layer_2_1/attention_residual/add", "_MklNativeFusedMatMul",
     ("attention_projections", 2)),
    (P + "bert_classifier_1/bert_encoder_1/transformer_layer_2_1/ffn_residual/add", "_MklNativeFusedMatMul",
     ("feed_forward", 2)),
    (P + "bert_classifier_1/bert_encoder_1/transformer_layer_2_1/attention_residual/add", "AddV2",
     ("layer_norm_and_residual", 2)),
    (P + "bert_classifier_1/bert_encoder_1/transformer_layer_2_1/ffn_residual/add", "AddV2",
     ("layer_norm_and_residual", 2)),
])
def test_a_residual_sum_fused_into_a_matmul_counts_as_the_matmul(name, op_type, want):
    assert categorize(name, op_type) == want


def test_busy_time_is_the_union_of_op_intervals():
    assert _union_micros([]) == 0
    assert _union_micros([(0, 10), (5, 12), (20, 25), (21, 22)]) == 17
    assert _union_micros([(3, 4), (0, 10)]) == 10
