"""kzoo layers: one layer per file, each serialisable with `get_config`."""

from kzoo.layers.activations import get_activation, gelu_approximate, gelu_exact
from kzoo.layers.adapters import BottleneckAdapter, LowRankAdapter
from kzoo.layers.disentangled_attention import DisentangledSelfAttention
from kzoo.layers.embeddings import BertEmbeddings
from kzoo.layers.masked_lm import MaskedLMHead
from kzoo.layers.pooling import POOLING_MODES, SentencePooling
from kzoo.layers.heads import IGNORE_LABEL, BertPooler, ClassificationHead, NextSentenceHead, SpanHead, TokenClassificationHead
from kzoo.layers.relative_attention import RelativeMultiHeadAttention
from kzoo.layers.transformer import TransformerEncoderBlock
