"""Data: task readers, validation splits and tf.data pipelines."""

from kzoo.data.masking import MLMMasker
from kzoo.data.pipeline import classification_dataset, num_batches, token_lengths
from kzoo.data.readers import EXAMPLE_INTENTS, stratified_split
from kzoo.data.tasks import TASKS, Examples, TaskSpec, read_task
