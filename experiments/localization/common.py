"""What the localization entry points share: localizing anew without ever mixing two runs' files."""
import os

from utils.bias.localize import localize
from utils.io import fsync_dir


def relocalize(ctx):
    """Localize ``ctx.artifact`` into ``ctx.out_dir`` (a :class:`StepContext`), replacing an earlier run.

    The earlier ``index.json`` is removed (durably) before the first mask is overwritten, and the new one
    is written last and atomically by :func:`utils.bias.localize.localize`: a run killed midway leaves no
    index, so no reader ever takes a mix of old and new masks for a result. The caller holds the folder's
    lock (:func:`utils.locks.folder_lock`).
    """
    index = ctx.out_dir / "index.json"
    if index.exists():
        os.unlink(index)
        fsync_dir(ctx.out_dir)
    return localize(ctx.config, ctx.splits, ctx.layer, ctx.artifact, ctx.out_dir)
