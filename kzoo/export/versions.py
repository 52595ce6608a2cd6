"""TF Serving layout: integer version folders under a base path, written atomically on any
`tf.io.gfile` file system (local disk, `gs://`, ...; see `kzoo.io`)."""

import os

from kzoo import io as kzoo_io
from kzoo.io import committed_versions  # noqa: F401  (re-exported: the versions a reader may load)


def next_version(export_root):
    """1 + the largest version number in use under `export_root` (1 if none).

    Numbers in use include versions that are not committed: a folder half-copied to an object
    store by a killed export, and the temporary folder of a version being written here. So a
    new version never takes the number of a half-written one."""
    return max(kzoo_io.version_numbers(export_root, committed_only=False), default=0) + 1


def latest_version(export_root):
    """The path of the newest committed version under `export_root` (the one TF Serving's
    default policy serves), or None when there is none."""
    versions = committed_versions(export_root)
    return kzoo_io.join(export_root, str(versions[-1])) if versions else None


def write_version(export_root, write, version=None):
    """Calls `write(tmp_dir)` (a local folder, which `write` creates), then commits it as
    `export_root/<version>` (`kzoo.io.write_directory`).

    TF Serving polls the base path for integer folders. On local disk `tmp_dir` is a folder
    beside the version whose name is not an integer, renamed into place when complete, so a
    server never sees a partial version. On object stores (`gs://`), which cannot rename a
    folder atomically, `tmp_dir` is a local temporary folder that is then copied in with
    `saved_model.pb` (which TF Serving needs to load a version) and then kzoo's commit marker
    last; kzoo's readers (`committed_versions`, `latest_version`) trust only versions with the
    marker. An existing version, committed or not, is never overwritten.

    Returns:
        The path of the version folder.
    """
    export_root = os.fspath(export_root)
    kzoo_io.makedirs(export_root)
    kzoo_io.remove_stale_temporaries(export_root)
    version = next_version(export_root) if version is None else int(version)
    if version <= 0:
        raise ValueError(f"version must be a positive integer, got {version}")
    final = kzoo_io.join(export_root, str(version))
    if version in kzoo_io.version_numbers(export_root, committed_only=False) or kzoo_io.exists(final):
        raise ValueError(f"{final}: version {version} already exists; refusing to overwrite it")
    try:
        return kzoo_io.write_directory(final, write)
    except FileExistsError as e:
        raise ValueError(f"{final}: version {version} already exists; refusing to overwrite it") from e
