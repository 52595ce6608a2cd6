"""List the named pretrained models kzoo knows.

`kzoo.cli.list_presets` run from a checkout, without installing kzoo: the same program as
`kzoo-list-presets` and `python -m kzoo.cli.list_presets` (`--help` describes it).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

if __name__ == "__main__":
    from kzoo.cli.list_presets import run  # importing kzoo quiets TensorFlow's start-up lines for a command

    run()
