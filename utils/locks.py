"""One run per output folder: a lock file naming its owner, held for as long as the run writes there.

``with folder_lock(folder):`` creates ``<folder>/.lock`` and holds an exclusive ``flock`` on it. The
operating system releases the lock when its process ends, however it ends (``kill -9`` included),
so a lock left by a dead run is taken over at once and never needs to be removed by hand; there is
no guessing from process ids. A second run that finds the lock held stops at once with one line
naming the folder and the owner (pid, host, start time, command) written into the file.

The same process may take the lock of a folder it already holds (the pipeline holds its steps'
folders while calling their entry points): the inner ``with`` then does nothing. The lock file is
removed when the outermost holder releases it; a run that got the lock checks that the file it
locked is still the one at the path, so a concurrent removal never gives two runs the same folder.
"""
import contextlib
import datetime
import fcntl
import json
import os
import socket
import sys
from pathlib import Path

from utils.errors import UserError

LOCK_NAME = ".lock"


def _owner_record():
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "since": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300]}


def _read_owner(path):
    try:
        return json.loads(Path(path).read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _is_ours(owner):
    return owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname()


def _acquire(path):
    """An open descriptor of ``path`` holding its exclusive lock, or ``None`` when another holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder removed this file while we waited for it: lock the new one


@contextlib.contextmanager
def folder_lock(folder, enabled=True):
    """Hold ``<folder>/.lock`` for the ``with`` block (``enabled=False``: do nothing, e.g. on the
    ranks of a multi-process run other than rank 0, which holds it for all)."""
    if not enabled:
        yield
        return
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = _acquire(path)
    if fd is None:
        owner = _read_owner(path)
        if _is_ours(owner):
            yield  # this process holds it further up the call stack
            return
        raise UserError(f"{folder} is in use by another run (pid {owner.get('pid', '?')} on host "
                        f"{owner.get('host', '?')}, since {owner.get('since', '?')}: {owner.get('command', '?')}); "
                        "wait for it to finish, or choose another config_name or output_dir")
    try:
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(_owner_record()).encode())
        os.fsync(fd)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # while still locked: nobody can be between opening and locking it
        os.close(fd)
