"""What identifies an input file, for the caches that must notice when it changes.

A cached result records the identity of every file it was computed from (the checkpoint a
correction started from, the localization masks it used, the store a step read) and is reused only
while each file still has that identity. Files up to :data:`FULL_HASH_BYTES` are identified by their
size and the SHA-256 of their whole content (a copy of the same file is the same input; a retrained
model is not, even at the same path and size). Larger files by size, modification time and the hash
of their first and last MiB, which is cheap and, for checkpoints (zip archives whose central directory
at the end holds the CRC of every tensor), still changes whenever a weight changes. A kind of file
that knows better identifies itself (``IDENTITIES``, by suffix: a preprocessing store by its settings
fingerprint and its completeness).
"""
import hashlib
from pathlib import Path

FULL_HASH_BYTES = 64 * 2**20
EDGE_BYTES = 2**20


def _digest(path, size):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        if size <= FULL_HASH_BYTES:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        else:
            digest.update(handle.read(EDGE_BYTES))
            handle.seek(size - EDGE_BYTES)
            digest.update(handle.read(EDGE_BYTES))
    return digest.hexdigest()


def plain_file_identity(path) -> dict:
    stat = Path(path).stat()
    identity = {"size": stat.st_size, "sha256": _digest(path, stat.st_size)}
    if stat.st_size > FULL_HASH_BYTES:
        identity["mtime_ns"] = stat.st_mtime_ns  # only the edges are hashed: a change in between needs the time
    return identity


def _store_identity(path):
    from utils.feature_store import store_identity

    return store_identity(path)


IDENTITIES = {".h5": _store_identity}


def file_identity(path) -> dict | None:
    """The identity of the file at ``path`` (a JSON-able dict), or ``None`` when there is no such file."""
    if path is None or not Path(path).is_file():
        return None
    return IDENTITIES.get(Path(path).suffix, plain_file_identity)(path)


def identities(paths) -> dict:
    """``{path: identity}`` of several files (``None`` for a missing one)."""
    return {str(p): file_identity(p) for p in paths}


def changed(recorded: dict) -> list:
    """The paths of ``recorded`` (``{path: identity}``) whose file is missing or has another identity now."""
    return [path for path, identity in recorded.items() if identity is None or file_identity(path) != identity]
