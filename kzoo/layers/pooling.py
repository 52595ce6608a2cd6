"""One vector per text from an encoder's token states: sentence-transformers' pooling modes."""

import keras
from keras import ops

POOLING_MODES = ("mean", "cls", "max", "pooler")


@keras.saving.register_keras_serializable(package="kzoo")
class SentencePooling(keras.layers.Layer):
    """Pools `sequence_output` [batch, seq, hidden] over the real tokens of
    `input_mask` [batch, seq] to float32 [batch, hidden], as
    sentence-transformers' `Pooling` and `Normalize` modules compute it:

    - "mean": sum of the real tokens' states / max(number of real tokens, 1e-9)
      (padding never contributes; a text with no real token gives zeros);
    - "cls": the first token's state;
    - "max": the largest value over the real tokens in each dimension (padding
      set to -1e9 first, as the reference does);
    - "pooler": the encoder's `pooled_output`, passed as `pooled` (BERT's
      tanh pooler, DeBERTa's ContextPooler, ...).

    With `normalize`, the result is divided by max(its L2 norm, 1e-12)
    (`torch.nn.functional.normalize`, the reference's `Normalize` module), so
    dot products are cosine similarities. The arithmetic is float32 whatever
    the layer's compute dtype.

    `max_seq_length` records the length (in tokens, specials included) the
    embedding was trained with, which exports truncate to by default
    (sentence-transformers' `max_seq_length`); None when unknown.

    Example:
    >>> states = keras.ops.convert_to_tensor([[[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]]])
    >>> mask = keras.ops.convert_to_tensor([[1, 1, 0]])
    >>> keras.ops.convert_to_numpy(SentencePooling("mean")(states, mask)).tolist()
    [[2.0, 3.0]]
    """

    def __init__(self, mode="mean", normalize=False, max_seq_length=None, **kwargs):
        super().__init__(**kwargs)
        if mode not in POOLING_MODES:
            raise ValueError(f"pooling must be one of {list(POOLING_MODES)}, got {mode!r}")
        if not isinstance(normalize, bool):
            raise ValueError(f"normalize must be True or False, got {normalize!r}")
        if max_seq_length is not None and (isinstance(max_seq_length, bool) or not isinstance(max_seq_length, int)
                                           or max_seq_length < 3):
            raise ValueError(f"max_seq_length must be an integer >= 3 or None, got {max_seq_length!r}")
        self.mode = mode
        self.normalize = normalize
        self.max_seq_length = max_seq_length

    def call(self, sequence_output, input_mask=None, pooled=None):
        if self.mode == "pooler":
            if pooled is None:
                raise ValueError(f"{self.name}: pooling 'pooler' needs the encoder's pooled_output (pooled=)")
            x = ops.cast(pooled, "float32")
        else:
            states = ops.cast(sequence_output, "float32")
            if self.mode == "cls":
                x = states[:, 0]
            else:
                if input_mask is None:
                    raise ValueError(f"{self.name}: pooling {self.mode!r} needs input_mask")
                mask = ops.cast(input_mask, "float32")[:, :, None]
                if self.mode == "mean":
                    x = ops.sum(states * mask, axis=1) / ops.maximum(ops.sum(mask, axis=1), 1e-9)
                else:
                    x = ops.max(ops.where(mask > 0, states, -1e9), axis=1)
        if self.normalize:
            x = x / ops.maximum(ops.sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True)), 1e-12)
        return x

    def compute_output_shape(self, sequence_output_shape, input_mask_shape=None, pooled_shape=None):
        return (sequence_output_shape[0], sequence_output_shape[-1])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "normalize": self.normalize,
                "max_seq_length": self.max_seq_length}
