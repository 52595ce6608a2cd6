"""File-system helpers for model directories, exports and backups, on any `tf.io.gfile`
file system: local paths, `file://`, `gs://` (where TPU users keep everything), `ram://`
(TensorFlow's in-memory file system, used by the tests), and whatever else TensorFlow or
tensorflow-io registers.

Every write here is atomic for a reader: a process killed at any point leaves either the old
state or the new one where a reader looks, never a half-written file, and never blocks the next
write. How a write is committed depends on what the file system can rename atomically:

* One file (`atomic_path`, `write_text`, `write_json`, `copy`): the bytes go to a temporary
  file, which is then renamed onto the target. On local disk this is `os.replace` beside the
  target (the temporary is fsynced first, the folder after), atomic on POSIX. Elsewhere the
  file is written locally, copied to a temporary name beside the target and renamed with
  `tf.io.gfile.rename`: on object stores a rename is a server-side copy (then a delete) and the
  copy appears at once, complete, so one file is committed atomically there too.
* A folder (`write_directory`, the SavedModel version folders of `kzoo.export`): on local disk
  (paths without a scheme, and `file://`) it is written under a temporary name beside the target
  and renamed into place with `os.rename`, which is atomic. Every other scheme is treated as
  unable to rename a folder atomically: on `gs://` and `s3://` a folder is only a prefix of
  object names and "renaming" it copies one object after the other, and `ram://` renames the
  folder entry but leaves its files behind (checked on TensorFlow 2.21). There the folder is
  written locally, then copied in file by file, `saved_model.pb` (what TF Serving and
  `tf.saved_model.load` open first; TF Serving does not load a folder without it) second to
  last, and last a small marker file, `COMMIT_MARKER`, as TensorFlow commits checkpoints by
  writing its `checkpoint` state file last. A folder without the marker is uncommitted: kzoo's
  readers (`is_committed`, `committed_versions`) ignore it. Local folders need no marker (the
  rename is the commit) but get one as well, so that a copied export keeps it. (A marker is
  needed at all because a kill in the middle of the copy leaves a partial folder under its
  final name. TF Serving may try that version, fail to load it for lack of `saved_model.pb`,
  and retry it a few times; the partial folder is never completed, and the next export takes
  the next number.)
* A set of files committed by a state file (the training backup's `training_metadata.json`,
  the `checkpoint` file of an official checkpoint): each file is written as above, the state
  file naming them last. Readers trust only what the state file names.

Temporaries are named `.tmp-<pid>-<host>-<random>-<name>` (`temporary_name`): `<host>` is a
hash of the host name, boot id and pid namespace. A writer that dies leaves its temporary
behind; the next write into the same folder removes those of this host whose process no longer
runs (`remove_stale_temporaries`), and leaves the others alone, since they may be being
written. A version folder left half-copied on an object store by a killed writer is never
reused (`version_numbers` counts it) nor removed (remove it by hand).

This module imports only the standard library and TensorFlow, so every kzoo package can use it.

Example:
>>> write_json("ram://demo/labels.json", ["a", "b"])
'ram://demo/labels.json'
>>> read_json("ram://demo/labels.json")
['a', 'b']
"""

import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import uuid

import tensorflow as tf

TMP_PREFIX = ".tmp-"
COMMIT_MARKER = ".kzoo-committed"
SAVED_MODEL_FILE = "saved_model.pb"
MARKER_FORMAT = "kzoo-commit-1"

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_TEMPORARY = re.compile(r"^\.tmp-(\d+)-([0-9a-f]{8})-[0-9a-f]{8}-(.*)$", re.DOTALL)
_VERSION = re.compile(r"^[0-9]+$")
_MISSING = (FileNotFoundError, tf.errors.NotFoundError)


# ---------------------------------------------------------------------------
# Paths and schemes


def scheme(path):
    """The URL scheme of `path` in lower case (`"gs"`, `"ram"`, `"file"`), `""` for a plain path."""
    match = _SCHEME.match(os.fspath(path))
    return match.group(1).lower() if match else ""


def is_local(path):
    """Whether `path` is on a local (or mounted) file system: no scheme, or `file://`."""
    return scheme(path) in ("", "file")


def renames_directories(path):
    """Whether a folder at `path` can be renamed atomically (so committed by a rename).

    Only local paths and `file://` can: see the module docstring for why every other scheme
    commits folders with `COMMIT_MARKER` instead."""
    return is_local(path)


def local_path(path):
    """The plain OS path of a local `path` (`file:///a/b` -> `/a/b`)."""
    path = os.fspath(path)
    kind = scheme(path)
    if kind == "file":
        return path[len("file://"):]
    if kind:
        raise ValueError(f"{path}: not a local path")
    return path


def join(path, *parts):
    """`os.path.join` for local paths and URLs alike (`gs://b/run` + `logs` -> `gs://b/run/logs`)."""
    return os.path.join(os.fspath(path), *(os.fspath(p) for p in parts))


def _split(path):
    """(parent folder, name) of `path`; the folder of a bare local name is `.`."""
    path = os.fspath(path).rstrip("/") or os.fspath(path)
    folder, name = os.path.split(path)
    return folder or ".", name


# ---------------------------------------------------------------------------
# Plain operations (local: `os`, elsewhere: `tf.io.gfile`)


def exists(path):
    """Whether a file or folder is at exactly `path`."""
    path = os.fspath(path)
    if is_local(path):
        return os.path.exists(local_path(path))
    if not tf.io.gfile.exists(path):
        return False
    if scheme(path) == "ram":
        # ram:// answers by string prefix: "ram://r/1" "exists" when only "ram://r/10" does.
        folder, name = _split(path)
        return name in listdir(folder)
    return True


def isdir(path):
    """Whether `path` is a folder."""
    path = os.fspath(path)
    if is_local(path):
        return os.path.isdir(local_path(path))
    return exists(path) and tf.io.gfile.isdir(path)


def listdir(path):
    """Sorted names in the folder `path` (sub-folders without a trailing `/`); [] when there is no such folder."""
    path = os.fspath(path)
    if is_local(path):
        try:
            return sorted(os.listdir(local_path(path)))
        except (FileNotFoundError, NotADirectoryError):
            return []
    try:
        names = tf.io.gfile.listdir(path)
    except _MISSING:
        return []
    return sorted({name.rstrip("/") for name in names if name.rstrip("/")})


def getsize(path):
    """The size in bytes of the file `path`."""
    path = os.fspath(path)
    if is_local(path):
        return os.path.getsize(local_path(path))
    try:
        return tf.io.gfile.stat(path).length
    except tf.errors.NotFoundError as e:
        raise FileNotFoundError(f"{path}: no such file") from e


def makedirs(path):
    """Creates the folder `path` and its parents (nothing if it exists)."""
    path = os.fspath(path)
    if is_local(path):
        os.makedirs(local_path(path), exist_ok=True)
    else:
        tf.io.gfile.makedirs(path)


def remove(path):
    """Removes the file `path`; True if there was one."""
    path = os.fspath(path)
    try:
        if is_local(path):
            os.remove(local_path(path))
        else:
            tf.io.gfile.remove(path)
    except _MISSING:
        return False
    return True


def rmtree(path):
    """Removes the folder `path` and everything in it (nothing if it is not there)."""
    path = os.fspath(path)
    try:
        if is_local(path):
            shutil.rmtree(local_path(path))
        elif exists(path):
            tf.io.gfile.rmtree(path)
    except _MISSING:
        pass


def _remove_any(path):
    if isdir(path):
        rmtree(path)
    else:
        remove(path)


def rename_file(src, dst):
    """Renames the file `src` onto `dst`, replacing it: atomic on local disk; on object stores the
    copy appears complete at once."""
    src, dst = os.fspath(src), os.fspath(dst)
    if is_local(src) and is_local(dst):
        os.replace(local_path(src), local_path(dst))
    else:
        tf.io.gfile.rename(src, dst, overwrite=True)


def read_bytes(path):
    path = os.fspath(path)
    if is_local(path):
        with open(local_path(path), "rb") as f:
            return f.read()
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            return f.read()
    except tf.errors.NotFoundError as e:
        raise FileNotFoundError(f"{path}: no such file") from e


def read_text(path):
    """The UTF-8 text of the file `path` (`FileNotFoundError` if there is none)."""
    return read_bytes(path).decode("utf-8")


def read_json(path):
    return json.loads(read_text(path))


# ---------------------------------------------------------------------------
# Temporaries


@functools.lru_cache(maxsize=None)
def _host_token():
    """8 hex digits naming this host and pid namespace (so a pid means one process)."""
    parts = [socket.gethostname()]
    with contextlib.suppress(OSError):
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            parts.append(f.read().strip())
    with contextlib.suppress(OSError):
        parts.append(os.readlink("/proc/self/ns/pid"))
    return hashlib.sha1("\0".join(parts).encode("utf-8")).hexdigest()[:8]


def temporary_name(name):
    """`.tmp-<pid>-<host>-<random>-<name>`: a name for a temporary of `name` that keeps its ending
    (Keras checks `.weights.h5` / `.keras`) and says which process wrote it."""
    return f"{TMP_PREFIX}{os.getpid()}-{_host_token()}-{uuid.uuid4().hex[:8]}-{name}"


def is_temporary(name):
    """Whether a file or folder name is a temporary (kzoo's, or any other `.tmp-` one)."""
    return os.path.basename(os.fspath(name).rstrip("/")).startswith(TMP_PREFIX)


def _process_gone(pid):
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's live process
        return False
    try:  # killed but not yet reaped by its parent
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rpartition(")")[2].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return False


def stale_temporary(name):
    """Whether `name` is a temporary written by a process of this host that no longer runs."""
    match = _TEMPORARY.match(os.path.basename(os.fspath(name).rstrip("/")))
    return bool(match) and match.group(2) == _host_token() and _process_gone(int(match.group(1)))


def remove_stale_temporaries(folder):
    """Removes the temporaries in `folder` left by dead processes of this host (see
    `stale_temporary`); never raises. Returns the names removed."""
    removed = []
    try:
        for name in listdir(folder):
            if stale_temporary(name):
                with contextlib.suppress(OSError, tf.errors.OpError):
                    _remove_any(join(folder, name))
                    removed.append(name)
    except (OSError, tf.errors.OpError):
        pass
    return removed


def _fsync(path, directory=False):
    try:  # makes a rename durable too (a folder's fsync); not possible on every platform
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if directory:
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


def _stage_dir():
    """A fresh local folder for what is written before it is copied to a remote file system."""
    root = tempfile.gettempdir()
    remove_stale_temporaries(root)
    return tempfile.mkdtemp(prefix=temporary_name("stage-"), dir=root)


# ---------------------------------------------------------------------------
# Files


@contextlib.contextmanager
def atomic_path(path):
    """Yields a local temporary path to write the file `path` to; when the block succeeds the
    file is committed onto `path`, when it fails it is removed and `path` is left as it was.

    On local disk the temporary is beside `path` (`temporary_name`: same folder, so the rename
    never crosses file systems; same ending, as Keras checks `.weights.h5` / `.keras`), fsynced
    and renamed onto it with `os.replace`. Elsewhere (`gs://`, `ram://`, ...) it is in a local
    temporary folder; the file is then copied to a temporary name beside `path` and renamed onto
    it. Either way anything that writes local files (Keras, h5py, `open`) can write it, and a
    reader of `path` sees the old file or the new one, never a partial one, however the writer
    dies. After the commit, temporaries that dead processes left in that folder are removed.

    Example:
    >>> import tempfile
    >>> target = os.path.join(tempfile.mkdtemp(), "a.txt")
    >>> with atomic_path(target) as tmp:
    ...     _ = open(tmp, "w").write("done")
    >>> open(target).read(), os.listdir(os.path.dirname(target))
    ('done', ['a.txt'])
    """
    path = os.fspath(path)
    if is_local(path):
        target = local_path(path)
        folder, name = os.path.split(os.path.abspath(target))
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, temporary_name(name))
        try:
            yield tmp
            _fsync(tmp)
            os.replace(tmp, target)
        except BaseException:
            if os.path.isdir(tmp):
                shutil.rmtree(tmp, ignore_errors=True)
            elif os.path.lexists(tmp):
                os.remove(tmp)
            raise
        _fsync(folder, directory=True)
        remove_stale_temporaries(folder)
        return
    folder, name = _split(path)
    makedirs(folder)
    stage = _stage_dir()
    remote_tmp = join(folder, temporary_name(name))
    try:
        tmp = os.path.join(stage, temporary_name(name))
        yield tmp
        tf.io.gfile.copy(tmp, remote_tmp, overwrite=True)
        tf.io.gfile.rename(remote_tmp, path, overwrite=True)
    except BaseException:
        with contextlib.suppress(Exception):
            remove(remote_tmp)
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    remove_stale_temporaries(folder)


def write_bytes(path, data):
    """Writes `data` to `path` atomically (`atomic_path`); returns `path`."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return os.fspath(path)


def write_text(path, text):
    """Writes `text` (UTF-8) to `path` atomically; returns `path`."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path, value, **dumps_kwargs):
    """Writes `json.dumps(value, **dumps_kwargs)` and a newline to `path` atomically (default
    `indent=2`); returns `path`."""
    dumps_kwargs.setdefault("indent", 2)
    return write_text(path, json.dumps(value, **dumps_kwargs) + "\n")


def copy(src, dst):
    """Copies the file `src` to `dst` atomically (either may be remote); returns `dst`."""
    src = os.fspath(src)
    with atomic_path(dst) as tmp:
        if is_local(src):
            shutil.copyfile(local_path(src), tmp)
        else:
            tf.io.gfile.copy(src, tmp, overwrite=True)
    return os.fspath(dst)


# ---------------------------------------------------------------------------
# Folders


def _tree(folder):
    """(sub-folders, files) below a local folder, relative, sorted."""
    folders, files = [], []
    for root, dirnames, filenames in os.walk(folder):
        rel = os.path.relpath(root, folder)
        folders += [os.path.normpath(os.path.join(rel, d)) for d in dirnames]
        files += [os.path.normpath(os.path.join(rel, f)) for f in filenames]
    return sorted(folders), sorted(files)


def _marker(folder, files):
    return json.dumps({"format": MARKER_FORMAT,
                       "files": {f: os.path.getsize(os.path.join(folder, f)) for f in files}},
                      indent=1, sort_keys=True) + "\n"


def _copy_in(staging, path):
    """Copies the local folder `staging` to the new remote folder `path`: every file, then
    `saved_model.pb`, then the marker (the commit)."""
    folders, files = _tree(staging)
    files = [f for f in files if f != COMMIT_MARKER]
    files.sort(key=lambda f: f == SAVED_MODEL_FILE)  # stable: saved_model.pb last
    makedirs(path)
    for sub in folders:  # explicitly: empty ones too, and ram:// lists only folders it was asked to create
        makedirs(join(path, sub))
    for rel in files:
        tf.io.gfile.copy(os.path.join(staging, rel), join(path, rel), overwrite=True)
    write_text(join(path, COMMIT_MARKER), _marker(staging, files))


def _discard_partial(path):
    """Removes a folder this process failed to copy in (uncommitted: no marker yet)."""
    with contextlib.suppress(Exception):
        rmtree(path)


def write_directory(path, write):
    """Calls `write(tmp_dir)` to write a new folder, then commits it at `path`; returns `path`.

    `tmp_dir` does not exist yet (`write` creates it, as `tf.saved_model.save` does) and is
    always a local path. On local disk it is a temporary folder beside `path`, which is then
    renamed to `path`. Elsewhere it is a local temporary folder that is then copied in with
    `saved_model.pb` and `COMMIT_MARKER` last (see the module docstring). When `write` or the
    commit fails, nothing is left at `path` and the temporary is removed.

    Raises:
        FileExistsError: something is already at `path` (committed or not): it is never
            overwritten or mixed with.
    """
    path = os.fspath(path)
    if exists(path):
        raise FileExistsError(f"{path} already exists")
    folder, name = _split(path)
    makedirs(folder)
    if renames_directories(path):
        target = local_path(path)
        parent = os.path.dirname(os.path.abspath(target))
        staging = os.path.join(parent, temporary_name(name))
        try:
            write(staging)
            if not os.path.isdir(staging):
                raise ValueError(f"write({staging!r}) did not create the folder it was given")
            folders, files = _tree(staging)
            marker = _marker(staging, [rel for rel in files if rel != COMMIT_MARKER])
            with open(os.path.join(staging, COMMIT_MARKER), "w", encoding="utf-8") as f:
                f.write(marker)
            for rel in files + [COMMIT_MARKER]:
                _fsync(os.path.join(staging, rel))
            for rel in folders + ["."]:
                _fsync(os.path.join(staging, rel), directory=True)
            if os.path.exists(target):
                raise FileExistsError(f"{path} already exists")
            os.rename(staging, target)
        finally:
            if os.path.lexists(staging):
                shutil.rmtree(staging, ignore_errors=True)
        _fsync(parent, directory=True)
        remove_stale_temporaries(parent)
        return path
    stage = _stage_dir()
    try:
        staging = os.path.join(stage, name)
        write(staging)
        if not os.path.isdir(staging):
            raise ValueError(f"write({staging!r}) did not create the folder it was given")
        if exists(path):
            raise FileExistsError(f"{path} already exists")
        try:
            _copy_in(staging, path)
        except BaseException:
            _discard_partial(path)
            raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    remove_stale_temporaries(folder)
    return path


def is_committed(path):
    """Whether the folder `path` was committed: it holds `COMMIT_MARKER`, or it is on local disk
    (where folders appear only through a rename, so also those written before markers existed)."""
    path = os.fspath(path)
    if renames_directories(path):
        return isdir(path)
    return exists(join(path, COMMIT_MARKER))


def remove_directory(path):
    """Removes a committed folder: first uncommits it (local: renamed to a temporary name;
    elsewhere: its marker removed), then deletes the rest, so that a reader never trusts a
    half-deleted folder."""
    path = os.fspath(path)
    if renames_directories(path):
        target = local_path(path)
        if not os.path.lexists(target):
            return
        parent, name = os.path.split(os.path.abspath(target))
        doomed = os.path.join(parent, temporary_name(name))
        os.rename(target, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        return
    remove(join(path, COMMIT_MARKER))
    rmtree(path)


def version_numbers(root, committed_only=True):
    """Sorted integer version numbers of the folders under `root` (TF Serving's layout).

    `committed_only=True`: the committed versions (`is_committed`), which a reader may load.
    False: every number in use, also uncommitted folders (half-copied by a killed writer) and the
    temporary folders of versions being written here, so that a new version never takes one."""
    root = os.fspath(root)
    found = set()
    for name in listdir(root):
        if _VERSION.match(name):
            if not committed_only or is_committed(join(root, name)):
                found.add(int(name))
        elif not committed_only:
            match = _TEMPORARY.match(name)
            if match and _VERSION.match(match.group(3)):
                found.add(int(match.group(3)))
    return sorted(found)


def committed_versions(root):
    """The versions under `root` a reader may load, oldest first (see `version_numbers`)."""
    return version_numbers(root, committed_only=True)
