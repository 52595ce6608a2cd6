"""List the named pretrained models kzoo knows (`kzoo.presets`).

    kzoo-list-presets
    kzoo-list-presets --family=albert --cached

Each row gives the name `load_pretrained` takes, the family, the format (official TF1 checkpoint or
Hugging Face folder), casing, size, where the download location comes from, and whether it is already
in the local cache (`$KZOO_HOME`, default ~/.cache/kzoo). Nothing is downloaded.
"""

import os

from absl import flags, logging

from kzoo import presets
from kzoo.cli import console

flags.DEFINE_enum("family", None, list(presets.FAMILIES), "Only the presets of this family.")
flags.DEFINE_enum("format", None, list(presets.FORMATS), "Only official TF1 checkpoints or Hugging Face folders.")
flags.DEFINE_bool("cached", False, "Only the presets already downloaded into the cache.")
flags.DEFINE_bool("markdown", True, "A markdown table (--nomarkdown: plain columns).")
flags.DEFINE_string("cache_dir", None, "The cache to look in (default: $KZOO_HOME, else ~/.cache/kzoo).")


def is_cached(preset, cache_dir=None):
    """Whether `preset` has a finished download in the cache (or ships in a pip package)."""
    if not preset.urls:
        return True
    return os.path.exists(os.path.join(presets.cache_path(preset, cache_dir), presets.MANIFEST))


def main(argv):
    FLAGS = flags.FLAGS
    chosen = [p for p in presets.list_presets(family=FLAGS.family, format=FLAGS.format)
              if not FLAGS.cached or is_cached(p, FLAGS.cache_dir)]
    print(presets.format_table(chosen, markdown=FLAGS.markdown))
    print(f"\n{len(chosen)} presets; cache: {presets.cache_root(FLAGS.cache_dir)}")


def run():
    console.run(main, default_verbosity=logging.WARNING)


if __name__ == "__main__":
    run()
