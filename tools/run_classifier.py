"""Fine-tune a pretrained BERT encoder as a text classifier and export it.

`kzoo.cli.run_classifier` run from a checkout, without installing kzoo: the same program as
`kzoo-run-classifier` and `python -m kzoo.cli.run_classifier` (`--help` describes it).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

if __name__ == "__main__":
    from kzoo.cli.run_classifier import run  # importing kzoo quiets TensorFlow's start-up lines for a command

    run()
