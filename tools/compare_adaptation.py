"""Run the adaptation techniques side by side on one task and tabulate them.

`kzoo.cli.compare_adaptation` run from a checkout, without installing kzoo: the same program as
`kzoo-compare-adaptation` and `python -m kzoo.cli.compare_adaptation` (`--help` describes it).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

if __name__ == "__main__":
    from kzoo.cli.compare_adaptation import run  # importing kzoo quiets TensorFlow's start-up lines for a command

    run()
