"""kzoo: a Keras 3 / TensorFlow model zoo for transfer learning with BERT-style encoders.

Importing kzoo imports its subpackages, so `kzoo.models.bert_classifier(...)`
works after a bare `import kzoo`, and every kzoo layer, metric and schedule is
registered for `keras.models.load_model`.
"""

# A kzoo command (`kzoo-run-classifier`, `python -m kzoo.cli.run_classifier`) quiets TensorFlow's C++ start-up
# lines, which are written while TensorFlow is imported, before any command code runs (kzoo.cli.console imports
# only the standard library and absl).
from kzoo.cli import console as _console

if _console.started_as_command():
    _console.quiet_tensorflow_start_up()

from kzoo import checkpoints, configs, data, export, layers, models, presets, tasks, text, training

__version__ = "0.1.0"
