"""BERT pre-training data: google-research/bert's `create_pretraining_data.py` rules, as tf.data.

Raw text -> documents -> instances -> masked batches:

- `read_documents`: text files in the official format (one sentence a line, a blank line
  between documents); `split_sentences`, `squad_documents` and `write_documents` turn other
  text (e.g. SQuAD contexts) into that format.
- `create_instances`: the official `create_instances_from_document` in Python with a seeded
  `random.Random`, on token ids from one batched call of any kzoo tokenizer (WordPiece,
  SentencePiece, byte-level BPE), packed by the family's packer (`BertPacker.from_tokenizer`):
  `[CLS] A [SEP] B [SEP]` (RoBERTa / XLM-R: `<s> A </s></s> B </s>`) rows with
  next-sentence labels (1 = random next, as the official `is_random_next`) or, with
  `sop=True`, google-research/albert's sentence-order labels (1 = A and B swapped), or single
  segments `[CLS] A [SEP]` (`<s> A </s>`) without a pair objective (RoBERTa style).
- `pretraining_dataset`: batches masked on the fly by a `kzoo.data.MLMMasker` (dynamic
  masking: a fresh mask on every pass), as `(features, labels)` for a BERT pre-training model.
- `write_pretraining_tfrecords` / `pretraining_tfrecord_dataset`: masked instances written
  offline as the official tf.train.Examples (the features `run_pretraining.py` reads), and
  such files (ours or the official script's) read back into the same `(features, labels)`.

Rules kept from the official code, on purpose:
- the short target length (`short_seq_prob`) is drawn once per document and per dupe pass,
  not per instance, so with few documents the share of short instances varies a lot;
- a chunk of a single segment always gets a random next segment (label 1), so the share of
  random next is slightly above one half;
- the segments of the current chunk not used when B is a random next are "put back" (the
  next chunk starts right after A);
- `truncate_seq_pair` removes tokens one at a time from the longer segment (B on a tie), at
  its front or back with probability 1/2;
- documents are shuffled before and instances after, with the same seeded generator.

Differences: the random generator is consumed differently (no masking here; masking is done
by the TF masker), so the instances are not those of the official script for the same seed;
the random next document is drawn uniformly among the *other* documents (the official code
tries 10 times to avoid the current one and may fail); each input file starts a new document
(the official reader carries a document across files without a trailing blank line);
sentences whose wordpieces are empty are dropped, as official.
"""

import json
import os
import random
import re

import numpy as np
import tensorflow as tf

from kzoo import io as kzoo_io
from kzoo.layers.heads import IGNORE_LABEL
from kzoo.text.packing import BertPacker

INSTANCE_KEYS = ("input_word_ids", "input_mask", "input_type_ids", "next_sentence_labels")
# Feature names and kinds of google-research/bert's TFRecords (write_instance_to_example_files).
_TFRECORD_FEATURES = (
    ("input_ids", "int64_list", "seq"),
    ("input_mask", "int64_list", "seq"),
    ("segment_ids", "int64_list", "seq"),
    ("masked_lm_positions", "int64_list", "pred"),
    ("masked_lm_ids", "int64_list", "pred"),
    ("masked_lm_weights", "float_list", "pred"),
    ("next_sentence_labels", "int64_list", "one"),
)


# --- Documents ---------------------------------------------------------------------------------

def expand_paths(paths, what="input"):
    """Files of a path, a glob pattern, a comma-separated string of them or a list (sorted
    within each pattern; `tf.io.gfile`, so `gs://` patterns work). A pattern matching
    nothing raises a ValueError naming it (and `what` it was for)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [p for p in os.fspath(paths).split(",") if p.strip()]
    files = []
    for pattern in paths:
        pattern = os.fspath(pattern).strip()
        matched = sorted(p for p in tf.io.gfile.glob(pattern) if not tf.io.gfile.isdir(p))
        if not matched:
            raise ValueError(f"{what}: no file matches {pattern!r}")
        files.extend(matched)
    if not files:
        raise ValueError(f"{what}: no input paths given")
    return files


def read_documents(paths):
    """Documents of text files in the official pre-training format.

    One sentence a line, a blank (or whitespace-only) line between documents; lines are
    stripped, empty documents skipped, and every file starts a new document.

    Args:
        paths: a path, a glob pattern, or a list of paths/patterns.

    Returns:
        A list of documents, each a list of sentence strings.

    Raises:
        ValueError: no file matches a pattern, or a line is not valid UTF-8 (naming
            `path:line`).
    """
    documents = []
    for path in expand_paths(paths):
        current = []
        with open(path, "rb") as f:
            for number, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise ValueError(f"{path}:{number}: invalid UTF-8 ({e.reason} at byte {e.start} of the line)") \
                        from None
                if number == 1:
                    line = line.removeprefix("\ufeff")
                line = line.strip()
                if line:
                    current.append(line)
                elif current:
                    documents.append(current)
                    current = []
        if current:
            documents.append(current)
    return documents


# Lower-cased words (without their final period) after which a period ends no sentence.
_ABBREVIATIONS = frozenset(
    "mr mrs ms messrs dr prof sr jr st mt ft vs etc cf al approx ca fig figs eq no nos vol vols ch "
    "p pp ed eds rev hon gen col lt maj capt cmdr adm sgt cpl gov sen rep pres supt dept est inc "
    "ltd co corp bros jan feb mar apr jun jul aug sep sept oct nov dec".split()
)
_BOUNDARY = re.compile(r"([.!?]+)([\"'\u201d\u2019)\]]*)\s+")
_OPENING_QUOTES = "\"'\u201c\u2018"
_DOTTED = re.compile(r"(?:\w\.)+\w")  # U.S, e.g, i.e, a.m, Ph.D


def _is_abbreviation(word):
    """Whether a period after `word` (its last whitespace-separated token) ends no sentence."""
    word = word.lstrip("\"'([{\u201c\u2018")
    return (word.lower() in _ABBREVIATIONS or (len(word) == 1 and word.isupper())
            or _DOTTED.fullmatch(word) is not None)


def split_sentences(text):
    """Rule-based sentence splitting, for turning paragraphs into the official format.

    Splits after `.`, `!` or `?` (possibly repeated and followed by closing quotes or
    brackets) when whitespace and then an upper-case letter, a digit or an opening quote
    follow; never after a period ending a common abbreviation ("Mr.", "Dr.", "No.", "etc.",
    months, ...), a dotted one ("U.S.", "e.g.", "a.m.") or a single capital initial ("J.").
    Whitespace inside a sentence is collapsed to single spaces.

    >>> split_sentences("Mr. Smith went to the U.S. in 1990. He stayed! \\"Why?\\" 3 days.")
    ['Mr. Smith went to the U.S. in 1990.', 'He stayed!', '"Why?"', '3 days.']
    """
    sentences, start = [], 0
    for match in _BOUNDARY.finditer(text):
        following = text[match.end():match.end() + 1]
        if not following or not (following.isupper() or following.isdigit() or following in _OPENING_QUOTES):
            continue
        before = text[start:match.start()].split()
        if match.group(1) == "." and not match.group(2) and before and _is_abbreviation(before[-1]):
            continue
        sentences.append(text[start:match.end()])
        start = match.end()
    sentences.append(text[start:])
    return [s for s in (" ".join(s.split()) for s in sentences) if s]


def squad_documents(json_path):
    """One document per SQuAD article: the sentences (`split_sentences`) of all its paragraph
    contexts, in order. Reads the official SQuAD JSON (`data[].paragraphs[].context`)."""
    with open(json_path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise ValueError(f"{json_path}: not SQuAD JSON (expected an object with a 'data' list of articles)")
    documents = []
    for index, article in enumerate(data["data"]):
        try:
            contexts = [paragraph["context"] for paragraph in article["paragraphs"]]
        except (KeyError, TypeError):
            raise ValueError(f"{json_path}: article {index} lacks paragraphs[].context") from None
        sentences = [s for context in contexts for s in split_sentences(context)]
        if sentences:
            documents.append(sentences)
    return documents


def write_documents(documents, path):
    """Writes documents in the official format (one sentence a line, a blank line between
    documents, UTF-8), to a temporary file renamed into place. Whitespace inside a sentence
    (line breaks included) is collapsed to single spaces; empty sentences and documents are
    left out. Returns the number of documents written."""
    written = 0
    with kzoo_io.atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for document in documents:
            if isinstance(document, str):
                raise ValueError("each document is a list of sentence strings, got a str")
            lines = [line for line in (" ".join(str(s).split()) for s in document) if line]
            if not lines:
                continue
            if written:
                f.write("\n")
            f.write("\n".join(lines) + "\n")
            written += 1
    return written


# --- Instances ---------------------------------------------------------------------------------

def _tokenize_documents(documents, tokenizer, chunk=8192):
    """Token id lists of every sentence (batched tokenizer calls); sentences without
    wordpieces and then empty documents are dropped, as official."""
    sentences, owner = [], []
    for index, document in enumerate(documents):
        if isinstance(document, str):
            raise ValueError(f"document {index} is a str; each document is a list of sentence strings")
        for sentence in document:
            sentences.append(sentence)
            owner.append(index)
    tokenized = [[] for _ in documents]
    for begin in range(0, len(sentences), chunk):
        ids = tokenizer(tf.constant(sentences[begin:begin + chunk], tf.string))
        flat, splits = ids.flat_values.numpy(), ids.row_splits.numpy()
        for row in range(len(splits) - 1):
            if splits[row + 1] > splits[row]:
                tokenized[owner[begin + row]].append(flat[splits[row]:splits[row + 1]].tolist())
    return [document for document in tokenized if document]


def _truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng):
    """The official `truncate_seq_pair`: one token at a time from the longer segment (B on a
    tie), at its front or back at random."""
    while len(tokens_a) + len(tokens_b) > max_num_tokens:
        longer = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


def _document_instances(documents, index, max_num_tokens, short_seq_prob, nsp, rng, sop=False):
    """(tokens_a, tokens_b or None, label) of one document, as the official
    `create_instances_from_document` (google-research/albert's with `sop`: the label says
    whether A and B were swapped)."""
    document = documents[index]
    target = max_num_tokens
    if rng.random() < short_seq_prob:
        target = rng.randint(2, max_num_tokens)
    instances, chunk, length, i = [], [], 0, 0
    while i < len(document):
        chunk.append(document[i])
        length += len(document[i])
        if i == len(document) - 1 or length >= target:
            if not nsp:
                tokens_a = [t for segment in chunk for t in segment]
                _truncate_seq_pair(tokens_a, [], max_num_tokens, rng)
                instances.append((tokens_a, None, False))
            else:
                a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
                tokens_a = [t for segment in chunk[:a_end] for t in segment]
                if len(chunk) == 1 or (not sop and rng.random() < 0.5):
                    is_random_next = True
                    other = rng.randint(0, len(documents) - 2)  # uniform over the other documents
                    other += other >= index
                    random_document = documents[other]
                    tokens_b = []
                    for segment in random_document[rng.randint(0, len(random_document) - 1):]:
                        tokens_b.extend(segment)
                        if len(tokens_b) >= target - len(tokens_a):
                            break
                    i -= len(chunk) - a_end  # put the unused segments back
                elif sop and rng.random() < 0.5:  # ALBERT: the two halves swapped
                    is_random_next = True
                    tokens_b = [t for segment in chunk[a_end:] for t in segment]
                    tokens_a, tokens_b = tokens_b, tokens_a
                else:
                    is_random_next = False
                    tokens_b = [t for segment in chunk[a_end:] for t in segment]
                _truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)
                instances.append((tokens_a, tokens_b, is_random_next))
            chunk, length = [], 0
        i += 1
    return instances


def _special_counts(packer):
    """(special tokens around one segment, around a pair) that `packer` adds: packs empty rows."""
    packer = type(packer)(seq_length=64, cls_id=packer.cls_id, sep_id=packer.sep_id, pad_id=packer.pad_id)
    empty = tf.ragged.constant([[]], dtype=tf.int32)
    single = int(tf.reduce_sum(packer(empty)["input_mask"]))
    pair = int(tf.reduce_sum(packer((empty, empty))["input_mask"]))
    return single, pair


def _ragged(rows):
    """int32 RaggedTensor [len(rows), (tokens)] of lists of ids."""
    lengths = np.array([len(r) for r in rows], np.int64)
    flat = np.fromiter((t for r in rows for t in r), np.int32, count=int(lengths.sum()))
    return tf.RaggedTensor.from_row_lengths(flat, lengths)


def create_instances(documents, tokenizer, max_seq_length=128, short_seq_prob=0.1, nsp=True, dupe_factor=1,
                     seed=12345, sop=False, packer=None):
    """Pre-training instances with the official `create_instances_from_document` rules.

    Every sentence is tokenized once (batched); then, with a `random.Random(seed)`, the
    documents are shuffled and, `dupe_factor` times, each document is cut into chunks of
    whole sentences of about a target length (the pair budget `max_seq_length - 3` for BERT's
    packing, `- 4` for RoBERTa's, or with probability `short_seq_prob`, drawn per document,
    `randint(2, budget)`). With `nsp`, a chunk of >= 2 sentences is split at a random sentence
    boundary into A and B; with probability 1/2 (always for a single-sentence chunk) B is
    replaced by sentences from a random other document, starting at a random sentence, and the
    unused sentences of the chunk are put back. With `sop` (google-research/albert's
    sentence-order prediction) a chunk of >= 2 sentences keeps its own B and, with probability
    1/2, A and B are swapped (label 1); a single-sentence chunk still gets a random next
    segment (label 1), as ALBERT's script does. The pair is truncated to the budget as the
    official `truncate_seq_pair`. Without `nsp` (RoBERTa style) each chunk is one segment
    truncated to the single-segment budget (`max_seq_length - 2`). Instances are shuffled at
    the end. See the module docstring for the details kept from, and the differences with,
    the official script.

    Args:
        documents: list of documents, each a list of sentence strings (`read_documents`).
        tokenizer: any kzoo tokenizer (`BertTokenizer`, `AlbertTokenizer`,
            `XLMRobertaTokenizer`, `RobertaTokenizer`; unknown pieces are kept).
        max_seq_length: L, the packed length.
        short_seq_prob: probability of a short target length (per document and pass).
        nsp: make sentence pairs with labels (needs >= 2 documents).
        dupe_factor: passes over the documents, each with new random draws.
        seed: seed of the `random.Random`.
        sop: with `nsp`, the pair label is ALBERT's sentence order instead of next sentence.
        packer: how rows are packed; default the family's (`BertPacker.from_tokenizer`:
            `RobertaPacker` for RoBERTa and XLM-R).

    Returns:
        A dict of numpy int32 arrays: `input_word_ids`, `input_mask`, `input_type_ids`, each
        [N, L] (`[CLS] A [SEP] B [SEP]` or `[CLS] A [SEP]`, then [PAD]; type 1 on B and its
        [SEP]; RoBERTa / XLM-R: `<s> A </s></s> B </s>`, `<pad>`, type 0 everywhere), and with
        `nsp` `next_sentence_labels` [N] (1: B is a random next, or with `sop` swapped).
    """
    if sop and not nsp:
        raise ValueError("sop (sentence-order prediction) makes sentence pairs: it needs nsp=True")
    packer = packer if packer is not None else BertPacker.from_tokenizer(tokenizer, max_seq_length)
    if packer.seq_length != max_seq_length:
        raise ValueError(f"packer.seq_length {packer.seq_length} != max_seq_length {max_seq_length}")
    single_specials, pair_specials = _special_counts(packer)
    max_num_tokens = max_seq_length - (pair_specials if nsp else single_specials)
    if max_num_tokens < 2:
        raise ValueError(f"max_seq_length {max_seq_length} is too small: it must be >= "
                         f"{(pair_specials if nsp else single_specials) + 2}")
    if not 0.0 <= short_seq_prob <= 1.0:
        raise ValueError(f"short_seq_prob must be in [0, 1], got {short_seq_prob}")
    if dupe_factor < 1:
        raise ValueError(f"dupe_factor must be >= 1, got {dupe_factor}")
    tokenized = _tokenize_documents(documents, tokenizer)
    if nsp and len(tokenized) < 2:
        raise ValueError(f"next-sentence prediction needs at least 2 non-empty documents (a random next segment "
                         f"comes from another document), got {len(tokenized)}; pass nsp=False for single segments")
    rng = random.Random(seed)
    rng.shuffle(tokenized)
    pairs = []
    for _ in range(dupe_factor):
        for index in range(len(tokenized)):
            pairs.extend(_document_instances(tokenized, index, max_num_tokens, short_seq_prob, nsp, rng, sop=sop))
    rng.shuffle(pairs)

    labels = np.array([label for _, _, label in pairs], np.int32)
    if pairs:
        first = _ragged([a for a, _, _ in pairs])
        segments = (first, _ragged([b for _, b, _ in pairs])) if nsp else first
        packed = {k: v.numpy().astype(np.int32) for k, v in packer(segments).items()}
    else:
        packed = {k: np.zeros([0, max_seq_length], np.int32) for k in INSTANCE_KEYS[:3]}
    instances = {k: packed[k] for k in INSTANCE_KEYS[:3]}
    if nsp:
        instances["next_sentence_labels"] = labels
    return instances


# --- Masked batches ----------------------------------------------------------------------------

def _model_inputs(masked, nsp):
    """Masker output -> (features, labels) of a BERT pre-training model."""
    features = {
        "input_word_ids": masked["masked_input_word_ids"],
        "input_mask": masked["input_mask"],
        "input_type_ids": masked["input_type_ids"],
        "masked_lm_positions": masked["masked_lm_positions"],
    }
    labels = {"mlm_logits": masked["masked_lm_ids"]}
    if nsp:
        labels["nsp_logits"] = masked["next_sentence_labels"]
    return features, labels


def pretraining_dataset(instances, masker, batch_size, nsp=True, shuffle=True, seed=None, drop_remainder=False,
                        repeat=False, shuffle_buffer_size=None):
    """Batches of masked instances for pre-training, masked afresh on every pass.

    from_tensor_slices -> shuffle -> (repeat) -> batch -> map(masker) -> prefetch. The masker
    runs sequentially, so a seeded masker (and `seed`) reproduce the same batches.

    Args:
        instances: the dict of `create_instances`.
        masker: a `kzoo.data.MLMMasker` (its `max_predictions_per_seq` is P).
        batch_size: examples per batch.
        nsp: include the next-sentence labels (the instances must have them).
        shuffle: reshuffle every pass (seeded by `seed`), over `shuffle_buffer_size`
            instances (default: all).
        drop_remainder: only full batches (a static batch dimension, for XLA/TPU).
        repeat: repeat forever.

    Returns:
        A dataset of `(features, labels)`: features `input_word_ids` (masked) [b, L],
        `input_mask` [b, L], `input_type_ids` [b, L], `masked_lm_positions` [b, P]; labels
        `mlm_logits` (the original ids at the positions, -100 after the last) [b, P] and with
        `nsp` `nsp_logits` [b]; all int32, with static L and P.
    """
    keys = list(INSTANCE_KEYS if nsp else INSTANCE_KEYS[:3])
    missing = [k for k in keys if k not in instances]
    if missing:
        hint = " (instances made with nsp=False have no next_sentence_labels)" if missing == keys[3:] else ""
        raise ValueError(f"instances lack {missing}{hint}")
    tensors = {k: np.asarray(instances[k], np.int32) for k in keys}
    dataset = tf.data.Dataset.from_tensor_slices(tensors)
    if shuffle:
        dataset = dataset.shuffle(shuffle_buffer_size or max(len(tensors["input_mask"]), 1), seed=seed,
                                  reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    dataset = dataset.map(lambda batch: _model_inputs(masker(batch), nsp))
    return dataset.prefetch(tf.data.AUTOTUNE)


# --- TFRecords ---------------------------------------------------------------------------------

def _int64_feature(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def write_pretraining_tfrecords(instances, masker, output_path, dupe_factor=1, batch_size=256):
    """Masks instances with `masker` and writes them as google-research/bert's TFRecords.

    Each of the `dupe_factor` passes masks every instance afresh (in order, batches of
    `batch_size`, so a masker with the same seed applied by
    `pretraining_dataset(..., batch_size=batch_size, shuffle=False)` gives the same masks).
    Every record is a tf.train.Example with the int64 features `input_ids` (masked),
    `input_mask`, `segment_ids` (each L), `masked_lm_positions`, `masked_lm_ids` (each P,
    0-padded), `next_sentence_labels` (1; 0 for instances without NSP labels) and the float
    feature `masked_lm_weights` (P: 1.0 real, 0.0 padding), as `run_pretraining.py` reads.
    The file is written to a temporary path and renamed into place.

    Returns:
        A dict: `path`, `instances` (records written), `masked_tokens` (real predictions),
        `masked_per_instance`, `random_next`, `max_seq_length`, `max_predictions_per_seq`.
    """
    if dupe_factor < 1:
        raise ValueError(f"dupe_factor must be >= 1, got {dupe_factor}")
    nsp = "next_sentence_labels" in instances
    dataset = pretraining_dataset(instances, masker, batch_size, nsp=nsp, shuffle=False)
    seq_length = dataset.element_spec[0]["input_word_ids"].shape[-1]
    predictions = dataset.element_spec[0]["masked_lm_positions"].shape[-1]
    written = masked_tokens = random_next = 0
    with kzoo_io.atomic_path(output_path) as tmp, tf.io.TFRecordWriter(tmp) as writer:
        for _ in range(dupe_factor):
            for features, labels in dataset.as_numpy_iterator():
                targets = labels["mlm_logits"]
                weights = (targets != IGNORE_LABEL).astype(np.float32)
                target_ids = np.where(targets != IGNORE_LABEL, targets, 0)
                nsp_labels = labels["nsp_logits"] if nsp else np.zeros([len(targets)], np.int32)
                for r in range(len(targets)):
                    feature = {
                        "input_ids": _int64_feature(features["input_word_ids"][r]),
                        "input_mask": _int64_feature(features["input_mask"][r]),
                        "segment_ids": _int64_feature(features["input_type_ids"][r]),
                        "masked_lm_positions": _int64_feature(features["masked_lm_positions"][r]),
                        "masked_lm_ids": _int64_feature(target_ids[r]),
                        "masked_lm_weights": tf.train.Feature(float_list=tf.train.FloatList(value=weights[r])),
                        "next_sentence_labels": _int64_feature([nsp_labels[r]]),
                    }
                    example = tf.train.Example(features=tf.train.Features(feature=feature))
                    writer.write(example.SerializeToString())
                written += len(targets)
                masked_tokens += int(weights.sum())
                random_next += int(nsp_labels.sum())
    return {
        "path": output_path,
        "instances": written,
        "masked_tokens": masked_tokens,
        "masked_per_instance": masked_tokens / written if written else 0.0,
        "random_next": random_next,
        "max_seq_length": seq_length,
        "max_predictions_per_seq": predictions,
    }


def _check_first_record(path, max_seq_length, max_predictions_per_seq, nsp):
    """A clear error when the first record of `path` does not have the expected features."""
    records = iter(tf.data.TFRecordDataset(path).take(1))
    record = next(records, None)
    if record is None:
        return
    try:
        example = tf.train.Example.FromString(record.numpy())
    except Exception as e:  # noqa: BLE001 - any protobuf decode error
        raise ValueError(f"{path}: the first record is not a tf.train.Example ({e})") from None
    found = example.features.feature
    lengths = {"seq": max_seq_length, "pred": max_predictions_per_seq, "one": 1}
    for name, kind, size in _TFRECORD_FEATURES:
        if name == "next_sentence_labels" and not nsp:
            continue
        if name not in found:
            raise ValueError(f"{path}: the first record lacks the feature {name!r} (it has {sorted(found)})")
        if found[name].WhichOneof("kind") != kind:
            raise ValueError(f"{path}: feature {name!r} is a {found[name].WhichOneof('kind')}, expected {kind}")
        n = len(getattr(found[name], kind).value)
        if n != lengths[size]:
            what = {"seq": "max_seq_length", "pred": "max_predictions_per_seq", "one": "one value"}[size]
            raise ValueError(f"{path}: feature {name!r} has {n} values in the first record, expected "
                             f"{lengths[size]} ({what}); was the file written with other lengths?")


def pretraining_tfrecord_dataset(file_pattern, max_seq_length, max_predictions_per_seq, batch_size, nsp=True,
                                 shuffle=True, seed=None, drop_remainder=False, repeat=False,
                                 shuffle_buffer_size=10000):
    """Reads official-format pre-training TFRecords (`write_pretraining_tfrecords`' or
    google-research/bert's `create_pretraining_data.py`'s) into the `(features, labels)` of
    `pretraining_dataset`: the masking is the one stored in the files.

    `masked_lm_ids` become -100 and `masked_lm_positions` 0 where `masked_lm_weights` is 0;
    everything is int32. The first record of every file is checked up front (a ValueError
    naming the file and feature when a feature is missing or of another length); later bad
    records fail at parse time with TensorFlow's error naming the feature.

    Args:
        file_pattern: a path or glob pattern, or a list of them.
        max_seq_length, max_predictions_per_seq: L and P the files were written with.
        batch_size: examples per batch.
        nsp: read `next_sentence_labels` as the `nsp_logits` label.
        shuffle: shuffle the files and, over `shuffle_buffer_size` records, the records
            (every pass, seeded by `seed`).
        drop_remainder: only full batches (static batch dimension).
        repeat: repeat forever.
    """
    files = expand_paths(file_pattern, "TFRecord files")
    for path in files:
        _check_first_record(path, max_seq_length, max_predictions_per_seq, nsp)
    spec = {
        "input_ids": tf.io.FixedLenFeature([max_seq_length], tf.int64),
        "input_mask": tf.io.FixedLenFeature([max_seq_length], tf.int64),
        "segment_ids": tf.io.FixedLenFeature([max_seq_length], tf.int64),
        "masked_lm_positions": tf.io.FixedLenFeature([max_predictions_per_seq], tf.int64),
        "masked_lm_ids": tf.io.FixedLenFeature([max_predictions_per_seq], tf.int64),
        "masked_lm_weights": tf.io.FixedLenFeature([max_predictions_per_seq], tf.float32),
    }
    if nsp:
        spec["next_sentence_labels"] = tf.io.FixedLenFeature([1], tf.int64)

    def parse(serialized):
        example = tf.io.parse_example(serialized, spec)
        real = example["masked_lm_weights"] > 0
        features = {
            "input_word_ids": tf.cast(example["input_ids"], tf.int32),
            "input_mask": tf.cast(example["input_mask"], tf.int32),
            "input_type_ids": tf.cast(example["segment_ids"], tf.int32),
            "masked_lm_positions": tf.where(real, tf.cast(example["masked_lm_positions"], tf.int32), 0),
        }
        labels = {"mlm_logits": tf.where(real, tf.cast(example["masked_lm_ids"], tf.int32), IGNORE_LABEL)}
        if nsp:
            labels["nsp_logits"] = tf.cast(example["next_sentence_labels"][:, 0], tf.int32)
        return features, labels

    dataset = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), 8),
                                 num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if shuffle:
        dataset = dataset.shuffle(shuffle_buffer_size, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    return dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
