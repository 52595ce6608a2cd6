"""Fine-tune a pretrained BERT encoder as a CoNLL token tagger (NER, chunking) and predict.

`kzoo.cli.run_tagger` run from a checkout, without installing kzoo: the same program as
`kzoo-run-tagger` and `python -m kzoo.cli.run_tagger` (`--help` describes it).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

if __name__ == "__main__":
    from kzoo.cli.run_tagger import run  # importing kzoo quiets TensorFlow's start-up lines for a command

    run()
