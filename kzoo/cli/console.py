"""The start-up every kzoo command shares: quiet TensorFlow logging unless --verbosity is given.

By default a command's console shows kzoo's own log lines (absl INFO and up from kzoo's
modules), Keras's progress bars, every warning and error, and what the command prints.
TensorFlow's informational lines are left out: its C++ start-up lines (oneDNN, CUDA, CPU
features) and the INFO records that TensorFlow and other libraries log from Python (SavedModel
signature renaming, checkpoint sharding, "Assets written to", fingerprints...).

Any explicit absl `--verbosity` / `-v` (on the command line or in a --flagfile) brings
everything back: `--verbosity=0` every INFO line, `--verbosity=1` DEBUG too, `--verbosity=-1`
warnings and errors only. A TF_CPP_MIN_LOG_LEVEL set by the user is left as it is.

This module imports only the standard library and absl, so that a script can load it before
TensorFlow is imported (`quiet_tensorflow_start_up`); `import kzoo` imports TensorFlow.
"""

import contextlib
import logging as std_logging
import os
import re
import sys
import tempfile

from absl import app, flags, logging

KZOO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_VERBOSITY_ARG = re.compile(r"--?(v|verbosity)(=|$)")
_FLAGFILE_ARG = re.compile(r"--?flagfile(?:=(.*))?$")
# A C++ (absl) INFO line: I<mmdd> <hh:mm:ss.us> <thread> <file>:<line>] <message>; before absl is
# initialised the date is 0000 and the seconds count from 1970
_NATIVE_INFO = re.compile(rb"I\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] ")
_NATIVE_PREAMBLE = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


def verbosity_requested(argv, _depth=0):
    """Whether `argv` (or a --flagfile it names) gives absl's --verbosity or -v."""
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if _VERBOSITY_ARG.match(arg):
            return True
        flagfile = _FLAGFILE_ARG.match(arg)
        if flagfile and _depth < 4:
            path = flagfile.group(1) if flagfile.group(1) is not None else next(iter(argv[i + 1:i + 2]), "")
            try:
                with open(path, encoding="utf-8") as f:
                    lines = [line.strip() for line in f]
            except (OSError, UnicodeDecodeError):
                continue  # absl reports it when it parses the flags
            if verbosity_requested(lines, _depth + 1):
                return True
    return False


def started_as_command():
    """Whether this process was started as a kzoo command: a `kzoo-*` console command,
    `python -m kzoo.cli.<command>` or a checkout's `tools/<command>.py`. For kzoo/__init__.py, which runs before TensorFlow is imported:
    `if console.started_as_command(): console.quiet_tensorflow_start_up()`."""
    script = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if os.path.basename(script).startswith("kzoo-"):
        return True
    if os.path.dirname(script) == os.path.join(os.path.dirname(KZOO_DIR), "tools"):  # a checkout's tools/*.py
        return True
    argv = getattr(sys, "orig_argv", [])
    return any(a == "-m" and b.startswith("kzoo.cli.") for a, b in zip(argv, argv[1:]))


def quiet_tensorflow_start_up(argv=None):
    """Imports TensorFlow without its C++ INFO start-up lines, unless `argv` (default: the command
    line's) asks for verbosity or the user set TF_CPP_MIN_LOG_LEVEL=0. To be called before TensorFlow is
    imported (before `import kzoo`); does nothing once it is.

    TF_CPP_MIN_LOG_LEVEL=1 (set unless the user set it) drops later C++ INFO lines, but a few
    start-up lines bypass it (oneDNN, CUDA drivers): those are dropped from what the import writes
    to file descriptor 2, and everything else it writes (warnings, errors) is passed on.
    """
    if "tensorflow" in sys.modules or verbosity_requested(sys.argv[1:] if argv is None else argv):
        return
    if os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1").strip() in ("", "0"):
        return
    with _native_info_dropped():
        import tensorflow  # noqa: F401


@contextlib.contextmanager
def _native_info_dropped():
    """Runs the body with file descriptor 2 in a temporary file (a pipe could fill while the
    import holds the GIL), then writes back what it got but C++ INFO lines."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = b"".join(line for line in captured
                            if not (line.startswith(_NATIVE_PREAMBLE) or _NATIVE_INFO.match(line)))
            while kept:
                kept = kept[os.write(2, kept):]


def is_kzoo_record(record):
    """Whether a log record comes from kzoo's own code (absl's records name the calling file)."""
    if record.name == "kzoo" or record.name.startswith("kzoo."):
        return True
    return os.path.abspath(record.pathname).startswith(KZOO_DIR + os.sep)


class KzooInfoFilter(std_logging.Filter):
    """Passes warnings and errors, and below WARNING only kzoo's own records."""

    def filter(self, record):
        return record.levelno >= std_logging.WARNING or is_kzoo_record(record)


def quiet_python_logging():
    """Puts `KzooInfoFilter` on the handlers that write log records to the console: the root
    logger's (absl's, once app.run has started) and the one TensorFlow gives its own logger
    when it is imported before any handler exists."""
    for handler in std_logging.getLogger().handlers + std_logging.getLogger("tensorflow").handlers:
        if not any(isinstance(f, KzooInfoFilter) for f in handler.filters):
            handler.addFilter(KzooInfoFilter())


def configure_logging(default_verbosity=logging.INFO):
    """After flag parsing: without an explicit --verbosity, log at `default_verbosity` and quiet
    other libraries' INFO records; returns whether it did."""
    if flags.FLAGS["verbosity"].present:
        return False
    logging.set_verbosity(default_verbosity)
    quiet_python_logging()
    return True


def run(main, default_verbosity=logging.INFO):
    """A command's entry point: `absl.app.run(main)`, with `configure_logging` after the flags are
    parsed and a usage error for positional arguments. --help describes the flags and the docstring
    of `main`'s module, also when the process was started by a console command or a tools/ script
    (absl looks for them under sys.argv[0])."""
    module = main.__module__
    if module != "__main__":
        for flag in flags.FLAGS.get_key_flags_for_module(module):
            flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
        sys.modules["__main__"].__doc__ = sys.modules[module].__doc__

    def configured_main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        configure_logging(default_verbosity)
        return main(argv)

    app.run(configured_main)
