"""What several corrections of one process compute alike: computed for the first, reused by the next.

The runs of a sweep, and the methods of one mitigation step, start from the same model and the same
data. Some of what a method prepares depends only on those and on a few settings, not on the strength:
ISNet's C1/C2 (the size of the original model's heatmaps) and the CAV's training features (the
original model's pooled activations). :func:`computed_once` keys such a result by what it depends on —
the weights of the model as ``prepare`` sees it, the data, the settings the caller names — so a
reuse is exact: the same inputs would compute the same numbers again. Callers get a copy.
"""
import copy
import hashlib
import json
from collections import OrderedDict

import torch

MAX_ENTRIES = 8  # a mitigation step holds a few originals at most (one per trained model it corrects)
_RESULTS = OrderedDict()


def model_digest(model) -> str:
    """SHA-256 of a model's state (parameter and buffer names and values)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        # the raw bytes, whatever the dtype (bfloat16 has no numpy twin)
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def data_identity(ctx) -> dict:
    """What decides the correction data of ``ctx``: the data settings and the content of data files."""
    from utils.evaluation.cache import data_key

    config = ctx.config
    return {**data_key(config, ctx.splits), "source_masks": config.source_masks, "files": ctx.splits.identity()}


def computed_once(what, ctx, settings, compute):
    """``compute()``, or a copy of its result for an earlier context with the same model weights, data and
    ``settings`` (a dict of plain values: everything else ``compute`` reads)."""
    key = json.dumps({"what": what, "model": model_digest(ctx.model), "data": data_identity(ctx), **settings},
                     sort_keys=True, default=str)
    if key in _RESULTS:
        _RESULTS.move_to_end(key)
    else:
        _RESULTS[key] = compute()
        while len(_RESULTS) > MAX_ENTRIES:
            _RESULTS.popitem(last=False)
    return copy.deepcopy(_RESULTS[key])


def forget():
    """Drop every kept result (tests that patch what a result is computed from start with this)."""
    _RESULTS.clear()
