"""kzoo text: in-graph tokenizers (WordPiece, SentencePiece, byte-level BPE), input packing and
SQuAD processing."""

from kzoo.text import alignment, squad
from kzoo.text.alignment import pieces_with_offsets
from kzoo.text.bpe import RobertaTokenizer
from kzoo.text.deberta import DebertaV2Tokenizer
from kzoo.text.family import FAMILIES, infer_family, packer_from_tokenizer, tokenizer_from_folder
from kzoo.text.packing import BertPacker, RobertaPacker
from kzoo.text.sentencepiece import AlbertTokenizer, SentencePieceTokenizer, XLMRobertaTokenizer
from kzoo.text.tokenizer import BertTokenizer
