"""Print a masked language model's top-k predictions for every [MASK] in a sentence.

`kzoo.cli.fill_mask` run from a checkout, without installing kzoo: the same program as
`kzoo-fill-mask` and `python -m kzoo.cli.fill_mask` (`--help` describes it).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

if __name__ == "__main__":
    from kzoo.cli.fill_mask import run  # importing kzoo quiets TensorFlow's start-up lines for a command

    run()
