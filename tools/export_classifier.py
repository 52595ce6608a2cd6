"""Export fine-tuned classifiers as one raw-text SavedModel for TF Serving.

`kzoo.cli.export_classifier` run from a checkout, without installing kzoo: the same program as
`kzoo-export-classifier` and `python -m kzoo.cli.export_classifier` (`--help` describes it).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

if __name__ == "__main__":
    from kzoo.cli.export_classifier import run  # importing kzoo quiets TensorFlow's start-up lines for a command

    run()
