"""One transformer encoder block, post-LN (BERT) or pre-LN, with optional
bottleneck adapters (Houlsby / Pfeiffer) and LoRA; its attention is plain,
Shaw et al.'s relative or DeBERTa's disentangled attention."""

import keras

from kzoo.layers import activations
from kzoo.layers.adapters import BottleneckAdapter, LowRankAdapter
from kzoo.layers.disentangled_attention import DisentangledSelfAttention
from kzoo.layers.relative_attention import RelativeMultiHeadAttention
from kzoo.layers.trainability import freeze_after_build, frozen_parts

ADAPTER_TYPES = (None, "houlsby", "pfeiffer")
LORA_TARGETS = ("query", "key", "value", "attention_output", "intermediate", "output")
_ATTENTION_TARGETS = ("query", "key", "value", "attention_output")


@keras.saving.register_keras_serializable(package="kzoo")
class TransformerEncoderBlock(keras.layers.Layer):
    """Self-attention and feed-forward sub-layers with residuals and LayerNorm.

    Post-LN (BERT, `norm_first=False`): `x = LN(x + Drop(SubLayer(x)))`.
    Pre-LN (`norm_first=True`): `x = x + Drop(SubLayer(LN(x)))`; the encoder
    then adds one final LayerNorm after the last block.
    Attention is `keras.layers.MultiHeadAttention` (with
    `max_relative_position` > 0, `kzoo.layers.RelativeMultiHeadAttention`:
    Shaw et al.'s relative positions; with `disentangled_attention`,
    `kzoo.layers.DisentangledSelfAttention`: DeBERTa's); padding keys are
    masked out so padding never changes the outputs at real positions.

    Args:
        num_heads: attention heads; must divide the input width.
        intermediate_size: feed-forward inner width.
        activation: feed-forward activation name ("gelu" is exact erf GELU,
            "gelu_new" the tanh approximation; see `kzoo.configs.ACTIVATIONS`).
        dropout: dropout on each sub-layer's output.
        attention_dropout: dropout on the attention probabilities.
        layer_norm_eps: LayerNorm epsilon.
        norm_first: pre-LN when True.
        initializer_range: stddev of the truncated-normal kernel initialiser.
        adapter_type: None (no adapters), "houlsby" (a `BottleneckAdapter`
            on the attention sub-layer's output, named "attention_adapter",
            and one on the feed-forward output, "ffn_adapter") or "pfeiffer"
            (only "ffn_adapter"). Each sits after its sub-layer's output
            projection and dropout, before the residual add (and, post-LN,
            the LayerNorm). Adapters are the identity at initialisation.
        adapter_size: bottleneck width of the adapters.
        adapter_activation: bottleneck activation.
        lora_rank: rank r of LoRA updates (0: no LoRA).
        lora_alpha: LoRA scale numerator (update = alpha / r * x @ A @ B);
            None means r.
        lora_targets: the projections that get a `LowRankAdapter`, among
            "query", "key", "value", "attention_output", "intermediate",
            "output". Sub-layers are named "<target>_lora".
        frozen_parts: sub-layers or variables of the block to freeze when it
            is built, as paths relative to it ("attention",
            "attention/key", "output/bias"). `get_config()` records the
            block's current freezing here (see
            `kzoo.layers.trainability.frozen_parts`), so that a block partly
            frozen by `kzoo.models.enable_parameter_efficient_training` (its
            attention and feed-forward projections frozen, its adapters, LoRA
            factors and LayerNorms trainable) reloads from a `.keras` file
            with the same trainable variables. A block frozen as a whole
            records nothing here: its `trainable=False` freezes every
            sub-layer when it is built. Default: nothing frozen but the LoRA
            bases.
        max_relative_position: k of Shaw et al.'s relative-position
            attention (0: plain attention). The attention sub-layer then
            holds `relative_key_embeddings` (and `relative_value_embeddings`)
            of shape [2k+1, head_size], initialised with the block's truncated
            normal; LoRA and adapters apply as for plain attention.
        relative_position_values: with k > 0, add the relative embeddings to
            the values too (a^V), not only to the keys.
        disentangled_attention: None, or the options of a
            `kzoo.layers.DisentangledSelfAttention` (DeBERTa-v2/v3; a dict
            with `position_buckets`, `max_relative_positions`,
            `pos_att_type`, `share_att_key`: `BertConfig.
            disentangled_attention`). The block is then called with the
            encoder's shared `relative_embeddings` table ([rows, width]) and
            masks padding queries as well as keys (as the reference: only
            padding positions' outputs change); the relative table gets
            dropout at the block's `dropout` rate. LoRA on "query" / "key"
            also changes the projections of the relative table (with
            share_att_key), exactly as merging the update into the kernels
            does; the separate `pos_key` / `pos_query` projections
            (share_att_key False) get no LoRA.

    With LoRA, the base kernel and bias of every target projection are
    frozen (not trainable), and stay frozen when `trainable` is set on the
    block or any model above it; the base variables keep their names and
    places (`block.attention.query_dense.kernel`, ...), so pretrained
    checkpoints load as usual and report the adapter and LoRA variables as
    new.

    Example:
    >>> block = TransformerEncoderBlock(num_heads=2, intermediate_size=16)
    >>> tuple(block(keras.ops.ones((2, 3, 8)), padding_mask=keras.ops.ones((2, 3))).shape)
    (2, 3, 8)
    >>> adapted = TransformerEncoderBlock(num_heads=2, intermediate_size=16, adapter_type="houlsby",
    ...                                   adapter_size=4, lora_rank=2)
    >>> tuple(adapted(keras.ops.ones((2, 3, 8))).shape)
    (2, 3, 8)
    >>> sorted(v.path.split("/", 1)[1] for v in adapted.trainable_weights if "lora" in v.path)
    ['query_lora/lora_a', 'query_lora/lora_b', 'value_lora/lora_a', 'value_lora/lora_b']
    """

    def __init__(
        self,
        num_heads,
        intermediate_size,
        activation="gelu",
        dropout=0.1,
        attention_dropout=0.1,
        layer_norm_eps=1e-12,
        norm_first=False,
        initializer_range=0.02,
        adapter_type=None,
        adapter_size=64,
        adapter_activation="gelu",
        lora_rank=0,
        lora_alpha=None,
        lora_targets=("query", "value"),
        frozen_parts=(),
        max_relative_position=0,
        relative_position_values=True,
        disentangled_attention=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if adapter_type not in ADAPTER_TYPES:
            raise ValueError(f"unknown adapter_type {adapter_type!r}; expected one of {list(ADAPTER_TYPES)}")
        if not isinstance(adapter_size, int) or isinstance(adapter_size, bool) or adapter_size <= 0:
            raise ValueError(f"adapter_size must be a positive integer, got {adapter_size!r}")
        activations.get_activation(adapter_activation)  # fails early on an unknown name
        if not isinstance(lora_rank, int) or isinstance(lora_rank, bool) or lora_rank < 0:
            raise ValueError(f"lora_rank must be a non-negative integer (0: no LoRA), got {lora_rank!r}")
        if lora_alpha is not None and not (isinstance(lora_alpha, (int, float)) and lora_alpha > 0):
            raise ValueError(f"lora_alpha must be positive (or None for alpha = rank), got {lora_alpha!r}")
        if isinstance(lora_targets, str):
            lora_targets = (lora_targets,)
        lora_targets = tuple(lora_targets)
        unknown = [t for t in lora_targets if t not in LORA_TARGETS]
        if unknown:
            raise ValueError(f"unknown lora_targets {unknown}; expected some of {list(LORA_TARGETS)}")
        if len(set(lora_targets)) != len(lora_targets):
            raise ValueError(f"lora_targets has duplicates: {list(lora_targets)}")
        if lora_rank and not lora_targets:
            raise ValueError("lora_rank > 0 needs at least one of lora_targets")
        if (isinstance(max_relative_position, bool) or not isinstance(max_relative_position, int)
                or max_relative_position < 0):
            raise ValueError(f"max_relative_position must be a non-negative integer (0: no relative positions), "
                             f"got {max_relative_position!r}")
        if not isinstance(relative_position_values, bool):
            raise ValueError(f"relative_position_values must be True or False, got {relative_position_values!r}")
        if disentangled_attention is not None:
            if not isinstance(disentangled_attention, dict):
                raise ValueError(f"disentangled_attention must be None or a dict of DisentangledSelfAttention "
                                 f"options, got {disentangled_attention!r}")
            if max_relative_position:
                raise ValueError("max_relative_position (Shaw et al.) and disentangled_attention (DeBERTa) are "
                                 "two kinds of relative attention: choose one")
            disentangled_attention = dict(disentangled_attention)
            if "pos_att_type" in disentangled_attention:
                disentangled_attention["pos_att_type"] = list(disentangled_attention["pos_att_type"])
        self.max_relative_position = max_relative_position
        self.relative_position_values = relative_position_values
        self.disentangled_attention = disentangled_attention
        self.adapter_type = adapter_type
        self.adapter_size = adapter_size
        self.adapter_activation = adapter_activation
        self.lora_rank = lora_rank
        self.lora_alpha = lora_alpha
        self.lora_targets = lora_targets
        self._frozen_parts = [str(p) for p in (frozen_parts or ())]
        self.num_heads = num_heads
        self.intermediate_size = intermediate_size
        self.activation = activation
        self.dropout_rate = dropout
        self.attention_dropout = attention_dropout
        self.layer_norm_eps = layer_norm_eps
        self.norm_first = norm_first
        self.initializer_range = initializer_range
        self._activation_fn = activations.get_activation(activation)
        self.supports_masking = False

    def build(self, input_shape):
        hidden_size = input_shape[-1]
        if hidden_size % self.num_heads:
            raise ValueError(f"{self.name}: width {hidden_size} is not divisible by num_heads {self.num_heads}")
        init = keras.initializers.TruncatedNormal(stddev=self.initializer_range)
        common = dict(dtype=self.dtype_policy)
        attention = dict(num_heads=self.num_heads, key_dim=hidden_size // self.num_heads,
                         dropout=self.attention_dropout, kernel_initializer=init, name="attention", **common)
        if self.disentangled_attention is not None:
            self.attention = DisentangledSelfAttention(relative_dropout=self.dropout_rate,
                                                       **self.disentangled_attention, **attention)
        elif self.max_relative_position:
            self.attention = RelativeMultiHeadAttention(
                max_relative_position=self.max_relative_position, relative_values=self.relative_position_values,
                relative_initializer=init, **attention,
            )
        else:
            self.attention = keras.layers.MultiHeadAttention(**attention)
        self.attention.build(input_shape, input_shape)
        self.attention_layer_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_eps, name="attention_layer_norm", **common
        )
        self.attention_layer_norm.build(input_shape)
        # With LoRA on it, the activation is applied after the update is added.
        self.intermediate_dense = keras.layers.Dense(
            self.intermediate_size,
            activation=None if self._has_lora("intermediate") else self._activation_fn,
            kernel_initializer=init,
            name="intermediate", **common,
        )
        self.intermediate_dense.build(input_shape)
        self.output_dense = keras.layers.Dense(hidden_size, kernel_initializer=init, name="output", **common)
        self.output_dense.build(tuple(input_shape[:-1]) + (self.intermediate_size,))
        self.output_layer_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_eps, name="output_layer_norm", **common
        )
        self.output_layer_norm.build(input_shape)
        self.attention_output_dropout = keras.layers.Dropout(self.dropout_rate, **common)
        self.output_dropout = keras.layers.Dropout(self.dropout_rate, **common)

        adapter = dict(activation=self.adapter_activation, initializer_range=self.initializer_range, **common)
        if self.adapter_type == "houlsby":
            self.attention_adapter = BottleneckAdapter(self.adapter_size, name="attention_adapter", **adapter)
            self.attention_adapter.build(input_shape)
        if self.adapter_type in ("houlsby", "pfeiffer"):
            self.ffn_adapter = BottleneckAdapter(self.adapter_size, name="ffn_adapter", **adapter)
            self.ffn_adapter.build(input_shape)

        head_size = hidden_size // self.num_heads
        lora_shapes = {  # target -> (input shape, output dims, input axes)
            "query": (input_shape, (self.num_heads, head_size), 1),
            "key": (input_shape, (self.num_heads, head_size), 1),
            "value": (input_shape, (self.num_heads, head_size), 1),
            "attention_output": (tuple(input_shape[:-1]) + (self.num_heads, head_size), (hidden_size,), 2),
            "intermediate": (input_shape, (self.intermediate_size,), 1),
            "output": (tuple(input_shape[:-1]) + (self.intermediate_size,), (hidden_size,), 1),
        }
        for target in self._lora_active_targets():
            shape, output_dims, input_axes = lora_shapes[target]
            lora = LowRankAdapter(self.lora_rank, output_dims, alpha=self.lora_alpha, input_axes=input_axes,
                                  name=f"{target}_lora", **common)
            lora.build(shape)
            setattr(self, f"{target}_lora", lora)
        self.built = True
        freeze_after_build(self, self._frozen_parts)
        self._freeze_lora_bases()

    # LoRA bookkeeping -------------------------------------------------------

    def _lora_active_targets(self):
        return self.lora_targets if self.lora_rank else ()

    def _has_lora(self, target):
        return target in self._lora_active_targets()

    def projection(self, target):
        """The projection layer named by a LoRA target ("query", ..., "output")."""
        if target not in LORA_TARGETS:
            raise ValueError(f"unknown LoRA target {target!r}; expected one of {list(LORA_TARGETS)}")
        if target in _ATTENTION_TARGETS:
            return getattr(self.attention, "output_dense" if target == "attention_output" else f"{target}_dense")
        return self.intermediate_dense if target == "intermediate" else self.output_dense

    def lora_base_layers(self):
        """{target: the projection layer LoRA adapts} (empty without LoRA)."""
        return {t: self.projection(t) for t in self._lora_active_targets()}

    def lora_layers(self):
        """{target: its `LowRankAdapter`} (empty without LoRA or before build)."""
        if not self.built:
            return {}
        return {t: getattr(self, f"{t}_lora") for t in self._lora_active_targets()}

    def adapter_layers(self):
        """The block's `BottleneckAdapter`s (empty without adapters or before build)."""
        if not self.built:
            return []
        return [getattr(self, n) for n in ("attention_adapter", "ffn_adapter") if hasattr(self, n)]

    def _lora_base_variables(self):
        return [v for dense in self.lora_base_layers().values() for v in dense.weights]

    def _freeze_lora_bases(self):
        if not self.built:
            return
        for v in self._lora_base_variables():
            v.trainable = False

    @property
    def trainable(self):
        return keras.layers.Layer.trainable.fget(self)

    @trainable.setter
    def trainable(self, value):
        # Keras propagates `trainable` to every variable of every sub-layer;
        # the base kernels and biases of LoRA targets must stay frozen.
        keras.layers.Layer.trainable.fset(self, value)
        self._freeze_lora_bases()

    def call(self, x, padding_mask=None, relative_embeddings=None, training=None):
        if self.real_tokens_only and not training and padding_mask is not None and self._plain_attention():
            return self._call_on_real_tokens(x, padding_mask)
        return self._call(x, padding_mask, relative_embeddings, training)

    def _call(self, x, padding_mask, relative_embeddings, training):
        attention_mask = None
        disentangled = self.disentangled_attention is not None
        if disentangled and relative_embeddings is None:
            raise ValueError(f"{self.name}: a block with disentangled attention needs the encoder's shared "
                             "relative_embeddings")
        if padding_mask is not None:
            keys = keras.ops.cast(padding_mask, "bool")
            # [batch, 1, keys]: every query may attend to every real key. DeBERTa: [batch, queries, keys], padding
            # queries see nothing (the reference's mask; they attend uniformly, as there).
            attention_mask = keras.ops.logical_and(keys[:, :, None], keys[:, None, :]) if disentangled else (
                keys[:, None, :])

        residual = x
        if self.norm_first:
            x = self.attention_layer_norm(x)
        if any(self._has_lora(t) for t in _ATTENTION_TARGETS):
            x = self._lora_attention(x, attention_mask, training, relative_embeddings)
        elif disentangled:
            x = self.attention.attend(x, relative_embeddings, attention_mask=attention_mask, training=training)
        else:
            x = self.attention(x, x, attention_mask=attention_mask, training=training)
        return self._feed_forward(self._attention_residual(residual, x, training), training)

    def _attention_residual(self, residual, x, training):
        """The attention sub-layer after its output projection: dropout, adapter, residual, LayerNorm."""
        import tensorflow as tf

        x = self.attention_output_dropout(x, training=training)
        if self.adapter_type == "houlsby":
            x = self.attention_adapter(x)
        with tf.name_scope("attention_residual"):  # grappler may fuse the sum into the output projection's matmul
            x = residual + x
        return x if self.norm_first else self.attention_layer_norm(x)

    def _feed_forward(self, x, training):
        """The feed-forward sub-layer with its residual and LayerNorm (any leading shape)."""
        import tensorflow as tf

        residual = x
        if self.norm_first:
            x = self.output_layer_norm(x)
        inner = self.intermediate_dense(x)
        if self._has_lora("intermediate"):
            inner = self._activation_fn(inner + self.intermediate_lora(x))
        x = self.output_dense(inner)
        if self._has_lora("output"):
            x = x + self.output_lora(inner)
        x = self.output_dropout(x, training=training)
        if self.adapter_type is not None:
            x = self.ffn_adapter(x)
        with tf.name_scope("ffn_residual"):  # grappler may fuse the sum into the output layer's matmul
            x = residual + x
        if not self.norm_first:
            x = self.output_layer_norm(x)
        return x

    # Serving on the real tokens only ------------------------------------------

    # Set on the copy of a model an exporter traces (`kzoo.export.precision.serving_copy(...,
    # real_tokens_only=True)`), never on a model that trains: shapes then depend on the data, which
    # XLA and TPUs do not compile.
    real_tokens_only = False

    def _plain_attention(self):
        """Keras' multi-head attention without LoRA on it: the blocks `_call_on_real_tokens` serves."""
        return (self.disentangled_attention is None and not self.max_relative_position
                and not any(self._has_lora(t) for t in _ATTENTION_TARGETS)
                and not getattr(self.attention, "_use_gate", False))

    def _call_on_real_tokens(self, x, padding_mask):
        """Inference that computes nothing for padding: what `call` gives at the real positions.

        The projections, the feed-forward pair, the adapters and LayerNorms run on the real tokens of the
        batch as one [tokens, width] matrix (2-D matmuls: no per-call einsum or tensordot reshapes); only
        the attention scores are computed in a [heads, rows, length] layout (queries, keys and values
        gathered there, padding keys masked as in `call`), for groups of rows of similar lengths, each
        padded to its own longest. Outputs at padding positions are zeros,
        not what `call` computes there (which no real position reads: padding keys are masked). A batch of
        short sentences padded to its longest does a fraction of the work (SST-2, batch 32: a third of
        the rows are real).

        Within one traced graph the blocks share the work around them (`_RealTokenLayout`): where the
        real tokens sit is computed once per padding mask, and a block given the previous block's output
        takes that block's [tokens, width] rows instead of gathering them again, so the [batch, length]
        output a block returns is left to grappler to prune unless something else reads it (the last
        block's, the encoder outputs an export returns).
        """
        layout = _RealTokenLayout.of(padding_mask)
        return layout.padded(self._serve_real_tokens(layout.tokens(x), layout, x))

    def _serve_real_tokens(self, tokens, layout, x):
        """The block on the real tokens ([tokens, width] -> [tokens, width]); `x` is the padded input."""
        import tensorflow as tf

        width = tokens.shape[-1]
        attention = self.attention
        h = self.attention_layer_norm(tokens) if self.norm_first else tokens
        # [heads, tokens + 1, size] each: the extra row (a zero input, projected to its bias) is what padding
        # slots read: keys masked, values weighted 0, queries never read back
        h = _with_zero_row(h)
        projections = (attention.query_dense, attention.key_dense, attention.value_dense)
        with tf.name_scope(attention.name):  # the scopes `call` gives these ops (`kzoo.tasks.serve_profile`)
            if _serving_arithmetic(attention.query_dense):
                query, key, value = (_project_heads(dense, h) for dense in projections)
                context = self._real_token_attention(query, key, value, layout)
            else:  # a mixed policy's projections: Keras' attention, as `call` computes it, on the padded layout
                query, key, value = (_project_2d(dense, h, attention_heads=True) for dense in projections)
                heads = [tf.gather(t, layout.slots) for t in (query, key, value)]
                attention_mask = attention._compute_attention_mask(x, x, attention_mask=layout.keys[:, None, :])
                context, _ = attention._compute_attention(*heads, attention_mask, False)
                context = tf.gather(tf.reshape(context, [-1, *context.shape[2:]]), layout.positions)
            attended = _project_2d(attention.output_dense, tf.reshape(context, [-1, width]))
        return self._feed_forward(self._attention_residual(tokens, attended, False), False)

    def _real_token_attention(self, query, key, value, layout):
        """Scaled dot-product attention of real-token queries, keys and values ([heads, tokens + 1, size],
        float32; padding slots read the last row) in a [heads, rows, length, size] layout gathered from
        them for each of the layout's groups of rows, with padding keys masked as Keras' softmax masks
        them; returns the context [tokens, heads, size]. Gathers place the tokens (no scatters). A batch
        without padding needs neither gathers nor a mask: its tokens are the [batch, length] layout."""
        import tensorflow as tf

        query = query * (1.0 / float(self.attention._key_dim) ** 0.5)

        def attend(q, k, v, key_bias=None):  # [heads, rows, length, size] each
            scores = tf.matmul(q, k, transpose_b=True)  # [heads, rows, queries, keys]
            context = tf.matmul(tf.nn.softmax(scores if key_bias is None else scores + key_bias), v)
            return tf.reshape(context, [context.shape[0], -1, context.shape[-1]])  # [heads, rows * length, size]

        def grouped():
            contexts = [attend(*(tf.gather(t, slots, axis=1) for t in (query, key, value)), key_bias)
                        for slots, key_bias in layout.attention_groups]
            return tf.gather(tf.concat(contexts, 1), layout.context_index, axis=1)  # [heads, tokens, size]

        def unpadded():  # every position real (every batch of one): the tokens are the batch in order
            rows, length = tf.unstack(tf.shape(layout.keys))
            return attend(*(tf.reshape(t[:, :-1], [t.shape[0], rows, length, t.shape[-1]])
                            for t in (query, key, value)))

        return tf.transpose(tf.cond(layout.unpadded, unpadded, grouped), [1, 0, 2])

    def _lora_attention(self, x, attention_mask, training, relative_embeddings=None):
        """`self.attention(x, x)` with LoRA updates added to its projections.

        The same steps as `keras.layers.MultiHeadAttention.call` for
        self-attention with an explicit mask, through the layer's own
        sub-layers and its `_compute_attention` (the documented extension
        point of subclasses), so the outputs equal the plain call's exactly
        when the updates are zero. Disentangled attention runs its `attend`
        with these projections, which also project the relative table.
        """
        attention = self.attention
        if self.disentangled_attention is not None:
            def project(target, h):
                out = getattr(attention, f"{target}_dense")(h)
                return out + getattr(self, f"{target}_lora")(h) if self._has_lora(target) else out

            def project_output(context):
                out = attention.output_dense(context)
                return out + self.attention_output_lora(context) if self._has_lora("attention_output") else out

            return attention.attend(x, relative_embeddings, attention_mask=attention_mask, training=training,
                                    project=project, project_output=project_output)
        attention_mask = attention._compute_attention_mask(x, x, attention_mask=attention_mask)
        projected = {}
        for target in ("query", "key", "value"):
            h = getattr(attention, f"{target}_dense")(x)
            if self._has_lora(target):
                h = h + getattr(self, f"{target}_lora")(x)
            projected[target] = h
        context, _ = attention._compute_attention(
            projected["query"], projected["key"], projected["value"], attention_mask, training
        )
        out = attention.output_dense(context)
        if self._has_lora("attention_output"):
            out = out + self.attention_output_lora(context)
        return out

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            num_heads=self.num_heads,
            intermediate_size=self.intermediate_size,
            activation=self.activation,
            dropout=self.dropout_rate,
            attention_dropout=self.attention_dropout,
            layer_norm_eps=self.layer_norm_eps,
            norm_first=self.norm_first,
            initializer_range=self.initializer_range,
            adapter_type=self.adapter_type,
            adapter_size=self.adapter_size,
            adapter_activation=self.adapter_activation,
            lora_rank=self.lora_rank,
            lora_alpha=self.lora_alpha,
            lora_targets=list(self.lora_targets),
            frozen_parts=frozen_parts(self, self._lora_base_variables()) if self.built else list(self._frozen_parts),
            max_relative_position=self.max_relative_position,
            relative_position_values=self.relative_position_values,
            disentangled_attention=self.disentangled_attention,
        )
        return config


def _with_zero_row(t):
    import tensorflow as tf

    return tf.concat([t, tf.zeros_like(t[:1])], 0)


class _RealTokenLayout:
    """Where a batch's real tokens sit, for the blocks serving on them (`_call_on_real_tokens`).

    `positions` [tokens]: each real token's place in the flattened [batch * length] batch; `slots`
    [batch, length]: each position's row in a [tokens + 1, ...] matrix (padding: the last row, which
    the blocks fill with zeros or biases); `keys` the mask as booleans, `unpadded` whether all of it
    is real; `attention_groups` and `context_index` place the attention scores (`_attention_groups`).
    While a graph is traced, one layout per padding mask serves every block of it (`of`), and it
    remembers the [tokens, width] rows of each [batch, length, width] output it made (`padded`), which
    `tokens` then returns instead of a gather.
    """

    # Rows sorted by length and cut into this many groups, each padded to its own longest for the
    # attention scores (`attention_groups`).
    length_groups = 3

    SCOPE = "real_token_layout/"  # an absolute name scope for the layout's ops, outside any block's

    def __init__(self, padding_mask):
        import tensorflow as tf

        with tf.name_scope(self.SCOPE):
            self.keys = tf.cast(padding_mask, tf.bool)
            real = tf.reshape(self.keys, [-1])
            self.positions = tf.where(real)[:, 0]
            count = tf.shape(self.positions)[0]
            self.slots = tf.reshape(tf.where(real, tf.cumsum(tf.cast(real, tf.int32)) - 1, count),
                                    tf.shape(self.keys))
            self.unpadded = tf.reduce_all(self.keys)
            self._attention_groups()
        self._rows = {}  # ref of an output of `padded` -> the [tokens, width] rows it was gathered from

    def _attention_groups(self):
        """`attention_groups`: (slots [rows, length], key bias [1, rows, 1, length]) per group of rows, and
        `context_index` [tokens]: each real token's row in the groups' [rows * length] outputs concatenated.

        A batch is padded to its longest sentence; its attention scores need not be. The rows, sorted by
        the extent of their real tokens, are cut into `length_groups` groups of consecutive rows, and each
        group's queries, keys and values are gathered to that group's own longest (SST-2, batch 32, three
        groups: 37% of the score entries and 51% of the gathered rows of one group). A row's scores do not
        depend on the other rows, so the grouping changes no output.
        """
        import tensorflow as tf

        shape = tf.shape(self.keys)
        rows, length = shape[0], shape[1]
        extent = tf.reduce_max(tf.where(self.keys, tf.range(1, length + 1)[None, :], 0), axis=1)  # [rows]
        order = tf.argsort(extent, stable=True)
        groups, offsets = [], []
        start, offset = 0, 0
        for g in range(1, self.length_groups + 1):
            end = rows * g // self.length_groups
            members = order[start:end]
            longest = tf.reduce_max(tf.concat([[0], tf.gather(extent, members)], 0))
            slots = tf.gather(self.slots, members)[:, :longest]
            keys = tf.gather(self.keys, members)[:, :longest]
            groups.append((slots, tf.where(keys, 0.0, -1e9)[None, :, None, :]))  # Keras' softmax: -1e9 at masked keys
            offsets.append(offset + tf.range(end - start) * longest)  # each member row's first output row
            offset += (end - start) * longest
            start = end
        self.attention_groups = groups
        row_offsets = tf.gather(tf.concat(offsets, 0), tf.argsort(order))  # back to the batch's row order
        row, position = self.positions // tf.cast(length, tf.int64), self.positions % tf.cast(length, tf.int64)
        self.context_index = tf.gather(row_offsets, row) + tf.cast(position, tf.int32)

    @classmethod
    def of(cls, padding_mask):
        """The layout of `padding_mask`: shared within the graph being traced, a new one when eager."""
        import tensorflow as tf

        if tf.executing_eagerly():
            return cls(padding_mask)
        graph = tf.compat.v1.get_default_graph()
        layouts = getattr(graph, "_kzoo_real_token_layouts", None)
        if layouts is None:  # on the graph itself: it lives as long as the graph, tensors included
            layouts = graph._kzoo_real_token_layouts = {}
        key = padding_mask.ref()
        if key not in layouts:
            layouts[key] = cls(padding_mask)
        return layouts[key]

    def tokens(self, x):
        """The real tokens of a [batch, length, width] tensor as [tokens, width]."""
        import tensorflow as tf

        rows = self._rows.get(x.ref())
        if rows is not None:
            return rows
        with tf.name_scope(self.SCOPE):
            return tf.gather(tf.reshape(x, [-1, x.shape[-1]]), self.positions)

    def padded(self, tokens):
        """[tokens, width] back to [batch, length, width], zeros at padding."""
        import tensorflow as tf

        with tf.name_scope(self.SCOPE):
            x = tf.gather(_with_zero_row(tokens), self.slots)
        self._rows[x.ref()] = tokens
        return x


def _serving_arithmetic(dense):
    """Whether `dense` computes as `_project_2d` and `_project_heads` do: float32, or a bfloat16 serving
    copy's (bfloat16 kernel and product, float32 bias); not a mixed policy's."""
    return dense.kernel.dtype == "bfloat16" or dense.compute_dtype == "float32"


def _project_heads(dense, x):
    """A query, key or value `EinsumDense` ([width] -> [heads, size]) on a [tokens, width] matrix, as
    [heads, tokens, size] in float32 (`_serving_arithmetic` layers only). A serving copy stores the
    kernel heads first (`dense.heads_first`: [heads, width, size], `kzoo.export.precision`), and one
    batched matmul gives that layout; otherwise a 2-D matmul and a transpose."""
    import tensorflow as tf

    if not getattr(dense, "heads_first", False):
        return tf.transpose(_project_2d(dense, x, attention_heads=True), [1, 0, 2])
    kernel = dense.kernel
    with tf.name_scope(dense.name):
        y = tf.cast(tf.matmul(tf.cast(x, kernel.dtype)[None], kernel), "float32")
        return y if dense.bias is None else y + tf.cast(dense.bias, "float32")[:, None, :]


def _project_2d(dense, x, attention_heads=False):
    """An attention `EinsumDense` (query/key/value: [width] -> [heads, size]; output: [heads * size] ->
    [width], given 2-D) on a [tokens, width] matrix as one 2-D matmul, with the layer's own arithmetic:
    float32, or a bfloat16 serving copy's (`kzoo.export.precision`: bfloat16 kernel and product, float32
    bias). Other precisions (a mixed policy) call the layer itself."""
    import tensorflow as tf

    kernel = dense.kernel
    if _serving_arithmetic(dense):
        with tf.name_scope(dense.name):
            product = tf.matmul(tf.cast(x, kernel.dtype), tf.reshape(kernel, [x.shape[-1], -1]))
            y = tf.cast(product, "float32")
            if dense.bias is not None:
                y = tf.nn.bias_add(y, tf.reshape(tf.cast(dense.bias, "float32"), [-1]))
            return tf.reshape(y, [-1, *kernel.shape[1:]]) if attention_heads else y
    # the layer takes [1, tokens, width] (query/key/value) or [1, tokens, heads, size] (output)
    return dense(x[None] if attention_heads else tf.reshape(x, [1, -1, *kernel.shape[:-1]]))[0]
