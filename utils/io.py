"""Atomic file writing: a reader never sees a half-written output, and a crash never leaves one.

JSON outputs are strict JSON (RFC 8259): a missing or undefined number (NaN, ±inf) is written as
``null``, so ``jq``, browsers and strict parsers read every file. Readers that compute with such
numbers turn ``null`` back into NaN with :func:`nan_for_null`.
"""
import contextlib
import json
import math
import os
import tempfile
from pathlib import Path

import yaml

from utils.secrets import redact

_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: mkstemp creates 0600 files, outputs get the usual permissions instead


def _fsync_file(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder):
    """Make the entries of ``folder`` (a rename, a removal) durable."""
    # the rename itself is only durable once the folder's entry is on disk; not every
    # filesystem lets a folder be opened for this, and then there is nothing more to do
    with contextlib.suppress(OSError):
        _fsync_file(folder)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path in the target's folder; rename it onto ``path`` on success.

    The temporary file is flushed to disk (``fsync``) before the rename, so after a power loss
    ``path`` holds either the old or the new content, never a truncated file. On an exception the
    temporary file is removed and an existing ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    fsync_dir(path.parent)


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def write_json(path, obj) -> None:
    write_text(path, dumps_json(obj) + "\n")


def dumps_json(obj, indent=2) -> str:
    """Strict JSON text of ``obj``: non-finite numbers become ``null``; numpy values and paths are converted;
    secrets are redacted (:mod:`utils.secrets`)."""
    return json.dumps(strict_json(redact(obj)), indent=indent, sort_keys=False, allow_nan=False)


def write_yaml(path, obj) -> None:
    write_text(path, yaml.safe_dump(redact(obj), sort_keys=False))


def read_json(path):
    with open(path) as handle:
        return json.load(handle)


def strict_json(obj):
    """``obj`` with every value JSON can hold: NaN and ±inf -> ``None``, numpy scalars/arrays -> Python
    values, paths -> strings; anything else unknown is a bug and fails loudly."""
    if isinstance(obj, dict):
        return {_key(k): strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, bool, int)):
        return obj
    if hasattr(obj, "tolist"):  # numpy scalars and arrays, torch tensors
        return strict_json(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def _key(key):
    if isinstance(key, (str, int, float, bool)) or key is None:
        return key
    if hasattr(key, "item"):  # numpy integer keys
        return key.item()
    raise TypeError(f"cannot write a {type(key).__name__} key to JSON")


def nan_for_null(obj):
    """``obj`` with every ``null`` (``None``) replaced by NaN: for measurements read back from strict
    JSON by code that computes with them (NaN marks a missing number there). Use it only on data
    made of numbers and strings, where ``null`` can mean nothing but a missing number."""
    if isinstance(obj, dict):
        return {k: nan_for_null(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [nan_for_null(v) for v in obj]
    return float("nan") if obj is None else obj
