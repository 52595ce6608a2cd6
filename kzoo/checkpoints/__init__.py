"""Pretrained weights: official TF1 checkpoints and Hugging Face folders of every family, named presets."""

from kzoo import presets  # kzoo.presets; also reachable as kzoo.checkpoints.presets
from kzoo.checkpoints.hf import load_hf, load_hf_bert
from kzoo.checkpoints.official import load_official, load_official_bert, save_official_bert
from kzoo.checkpoints.pretrained import (MINILM, Pretrained, load_masked_lm, load_pretrained, minilm_folder,
                                       sentence_settings)
from kzoo.checkpoints.report import LoadReport
from kzoo.checkpoints.sentence_transformers import SentenceSettings, read_sentence_transformers
