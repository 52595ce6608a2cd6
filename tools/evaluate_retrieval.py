"""Evaluate sentence embeddings on SQuAD paragraph retrieval.

`kzoo.cli.evaluate_retrieval` run from a checkout, without installing kzoo: the same program as
`kzoo-evaluate-retrieval` and `python -m kzoo.cli.evaluate_retrieval` (`--help` describes it).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

if __name__ == "__main__":
    from kzoo.cli.evaluate_retrieval import run  # importing kzoo quiets TensorFlow's start-up lines for a command

    run()
