"""Fine-tune a pretrained BERT encoder for SQuAD v1.1 / v2.0 question answering.

`kzoo.cli.run_squad` run from a checkout, without installing kzoo: the same program as
`kzoo-run-squad` and `python -m kzoo.cli.run_squad` (`--help` describes it).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

if __name__ == "__main__":
    from kzoo.cli.run_squad import run  # importing kzoo quiets TensorFlow's start-up lines for a command

    run()
