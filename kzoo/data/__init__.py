"""Data: task readers, validation splits and tf.data pipelines."""

from kzoo.data.masking import MLMMasker
from kzoo.data.pipeline import classification_dataset, num_batches, token_lengths, with_num_batches
from kzoo.data.pretraining import (
    create_instances,
    pretraining_dataset,
    pretraining_tfrecord_dataset,
    read_documents,
    split_sentences,
    squad_documents,
    write_documents,
    write_pretraining_tfrecords,
)
from kzoo.data.readers import EXAMPLE_INTENTS, stratified_split
from kzoo.data.tasks import TASKS, Examples, TaskSpec, read_task
