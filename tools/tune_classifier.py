"""Search a text classifier's hyperparameters with KerasTuner, then train and export the chosen one.

`kzoo.cli.tune_classifier` run from a checkout, without installing kzoo: the same program as
`kzoo-tune-classifier` and `python -m kzoo.cli.tune_classifier` (`--help` describes it).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

if __name__ == "__main__":
    from kzoo.cli.tune_classifier import run  # importing kzoo quiets TensorFlow's start-up lines for a command

    run()
