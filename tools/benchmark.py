"""Benchmark kzoo against keras-hub at MiniLM size on this machine.

`kzoo.cli.benchmark` run from a checkout, without installing kzoo: the same program as
`kzoo-benchmark` and `python -m kzoo.cli.benchmark` (`--help` describes it).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

if __name__ == "__main__":
    from kzoo.cli.benchmark import run  # importing kzoo quiets TensorFlow's start-up lines for a command

    run()
