"""Checkpoints: a dict saved atomically, loaded with ``weights_only=True``."""
from pathlib import Path

import torch

from utils.errors import UserError
from utils.io import atomic_path


def save_checkpoint(path, model, model_name, n_classes, config=None, **extra):
    """Save ``model``'s weights with what is needed to rebuild it."""
    state = {
        "model_state_dict": {k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()},
        "model_name": model_name,
        "n_classes": int(n_classes),
        "config": config or {},
        **extra,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_checkpoint(path):
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
    return checkpoint


def _unwrap(model):
    return getattr(model, "module", model)
