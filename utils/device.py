"""Device selection from the config's ``device`` key."""
import torch

from utils.errors import UserError


def resolve_device(name="auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("'device': cuda requested but no CUDA device is available; use 'auto' or 'cpu'")
    return torch.device(name)
