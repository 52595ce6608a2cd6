"""kzoo's command-line programs: absl-flag wiring over `kzoo.tasks`, one module per command.

Each module defines its flags when imported (so a process imports one of them), a
`main(argv)` and `run()`, the console command's entry point. The same program runs as

    kzoo-run-classifier --help                  # the console command the package installs
    python -m kzoo.cli.run_classifier --help    # the module
    python tools/run_classifier.py --help       # the script in a checkout, without installing

`kzoo.cli.flags` holds the flags the commands share and `kzoo.cli.console` the
start-up every command shares (quiet TensorFlow logging unless --verbosity is given).
This package is the top tier: it may import anything in kzoo, and nothing in kzoo
imports it. This file imports nothing, so that importing one command imports only it.
"""
