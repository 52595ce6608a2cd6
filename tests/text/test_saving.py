"""kzoo.text.saving: every family's tokenizer written into a folder and read back gives the same ids,
under the family's own file names; the legacy WordPiece record still reads; bad records are named."""

import json

import pytest
import tensorflow as tf

from kzoo import io as kzoo_io
from kzoo.text import BertTokenizer, tokenizer_from_folder
from kzoo.text.saving import read_tokenizer, write_tokenizer
from kzoo.training.common import load_tokenizer, save_tokenizer

from tests.text.test_family_packing import HARD_STRINGS, family_assets

FILES = {"albert": ["kzoo_tokenizer.json", "spiece.model"],
         "xlm_roberta": ["kzoo_tokenizer.json", "sentencepiece.bpe.model"],
         "roberta": ["kzoo_tokenizer.json", "merges.txt", "vocab.json"]}


@pytest.mark.parametrize("family", sorted(FILES))
def test_round_trip_of_every_family(family, tmp_path, tmp_path_factory):
    assets = family_assets(tmp_path_factory)
    tokenizer = tokenizer_from_folder(assets.folders[family])
    texts = tf.constant(assets.strings[:300] + HARD_STRINGS)
    path = save_tokenizer(tokenizer, str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == FILES[family]
    assert path == kzoo_io.join(str(tmp_path), {"albert": "spiece.model", "xlm_roberta": "sentencepiece.bpe.model",
                                                "roberta": "vocab.json"}[family])
    restored = load_tokenizer(str(tmp_path))
    assert type(restored) is type(tokenizer)
    assert restored.get_config() | {"name": None} == tokenizer.get_config() | {"name": None}
    assert restored(texts).to_list() == tokenizer(texts).to_list()
    # The files are the family's own: the folder reads as that family's checkpoint tokenizer too.
    (tmp_path / "config.json").write_text(json.dumps({"model_type": family.replace("_", "-")}))
    assert tokenizer_from_folder(tmp_path)(texts).to_list() == tokenizer(texts).to_list()


def test_wordpiece_record_and_the_legacy_forms(tmp_path):
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", ",", "wor", "##ld", "Hello"]
    cased = BertTokenizer(vocabulary=vocabulary, lower_case=False, max_input_chars_per_word=7)
    write_tokenizer(cased, str(tmp_path / "new"))
    restored = read_tokenizer(str(tmp_path / "new"))
    assert (restored.lower_case, restored.max_input_chars_per_word) == (False, 7)
    assert restored(["Hello, world helloworld"]).to_list() == cased(["Hello, world helloworld"]).to_list() == [
        [9, 6, 7, 8, 1]]
    # save_tokenizer's earlier signature, and a model_dir of kzoo before the families: tokenizer.json
    (tmp_path / "vocab.txt").write_text("\n".join(vocabulary) + "\n")
    save_tokenizer(str(tmp_path / "vocab.txt"), True, str(tmp_path / "old"))
    assert json.loads((tmp_path / "old" / "kzoo_tokenizer.json").read_text()) == {"vocab_file": "vocab.txt",
                                                                                  "lower_case": True}
    (tmp_path / "old" / "kzoo_tokenizer.json").rename(tmp_path / "old" / "tokenizer.json")
    assert load_tokenizer(str(tmp_path / "old"))(["Hello, world"]).to_list() == [[5, 6, 7, 8]]
    # ... but transformers' tokenizer.json is not kzoo's record
    (tmp_path / "old" / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "WordPiece"}}')
    with pytest.raises(ValueError, match=r"kzoo_tokenizer.json not found"):
        load_tokenizer(str(tmp_path / "old"))


def test_bad_records_name_the_file_and_field(tmp_path):
    with pytest.raises(ValueError, match=r"kzoo_tokenizer.json not found"):
        load_tokenizer(str(tmp_path))
    record = tmp_path / "kzoo_tokenizer.json"
    for text, message in [
        ("{not json", r"kzoo_tokenizer.json is not JSON"),
        ('{"class": "GPT2Tokenizer"}', r"field 'class' is 'GPT2Tokenizer'; kzoo reads BertTokenizer"),
        ('{"class": "AlbertTokenizer"}', r"field 'model_file' must name a file in the folder, got None"),
        ('{"class": "AlbertTokenizer", "model_file": "spiece.model"}', r"names spiece.model, which .* lacks"),
        ('{"class": "RobertaTokenizer", "vocab_file": "vocab.json", "merges_file": "m.txt", "options": []}',
         r"field 'options' must be an object"),
    ]:
        record.write_text(text)
        with pytest.raises(ValueError, match=message):
            read_tokenizer(str(tmp_path))
    with pytest.raises(ValueError, match=r"cannot save a str"):
        write_tokenizer("vocab.txt", str(tmp_path))
