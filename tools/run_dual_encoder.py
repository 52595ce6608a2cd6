"""Fine-tune a sentence encoder on text pairs with in-batch negatives and export it.

`kzoo.cli.run_dual_encoder` run from a checkout, without installing kzoo: the same program as
`kzoo-run-dual-encoder` and `python -m kzoo.cli.run_dual_encoder` (`--help` describes it).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

if __name__ == "__main__":
    from kzoo.cli.run_dual_encoder import run  # importing kzoo quiets TensorFlow's start-up lines for a command

    run()
