"""kzoo: a Keras 3 / TensorFlow model zoo for transfer learning with BERT-style encoders.

Importing kzoo imports its subpackages, so `kzoo.models.bert_classifier(...)`
works after a bare `import kzoo`, and every kzoo layer, metric and schedule is
registered for `keras.models.load_model`.
"""

from kzoo import checkpoints, configs, data, export, layers, models, tasks, text, training

__version__ = "0.1.0"
