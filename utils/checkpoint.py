"""Checkpoints: a dict saved atomically, loaded with ``weights_only=True``.

Every problem with a checkpoint a user gave (missing, truncated, foreign, lacking a key, weights of
another architecture) is a one-line :class:`UserError` naming the file and what was expected.
"""
from pathlib import Path

import torch

from utils.errors import UserError
from utils.io import atomic_path
from utils.secrets import redact


def save_checkpoint(path, model, model_name, n_classes, config=None, **extra):
    """Save ``model``'s weights with what is needed to rebuild it (secrets of ``config`` redacted)."""
    state = {
        "model_state_dict": {k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()},
        "model_name": model_name,
        "n_classes": int(n_classes),
        "config": redact(config or {}),
        **redact(extra),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_checkpoint(path, required=(), what="a file written by this framework"):
    """The checkpoint dict at ``path``; ``required``: keys it must hold besides ``model_state_dict``
    (``what`` says which kind of checkpoint has them, for the error)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path.resolve()}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file
        raise UserError(f"cannot read checkpoint {path}: {type(err).__name__}") from None
    if not isinstance(checkpoint, dict) or "model_state_dict" not in checkpoint:
        raise UserError(f"checkpoint {path} has no 'model_state_dict'; expected a file written by "
                        "this framework")
    for key in required:
        if key not in checkpoint:
            raise UserError(f"checkpoint {path} has no '{key}'; expected {what}")
    return checkpoint


def load_weights(model, state_dict, path):
    """``model.load_state_dict(state_dict)``; weights that do not fit name the file and the first key at fault."""
    try:
        _unwrap(model).load_state_dict(state_dict)
    except RuntimeError as err:
        missing, unexpected = _key_mismatch(_unwrap(model), state_dict)
        if missing:
            problem = f"lacks the weight '{missing[0]}'" + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
        elif unexpected:
            problem = f"holds the weight '{unexpected[0]}', which the model does not have"
        else:
            problem = f"holds weights of other shapes ({str(err).splitlines()[-1].strip()})"
        raise UserError(f"checkpoint {path} {problem}; expected the weights of the same model") from None


def _key_mismatch(model, state_dict):
    expected, given = list(model.state_dict()), set(state_dict)
    return [k for k in expected if k not in given], [k for k in state_dict if k not in set(expected)]


def _unwrap(model):
    return getattr(model, "module", model)
