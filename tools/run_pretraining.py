"""Pretrain, or continue pretraining, a BERT encoder on raw text (MLM + NSP, or ELECTRA).

`kzoo.cli.run_pretraining` run from a checkout, without installing kzoo: the same program as
`kzoo-run-pretraining` and `python -m kzoo.cli.run_pretraining` (`--help` describes it).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

if __name__ == "__main__":
    from kzoo.cli.run_pretraining import run  # importing kzoo quiets TensorFlow's start-up lines for a command

    run()
