"""Registry of artifact inserters (name -> function drawing colour layer and opacity)."""
import numpy as np

from utils.errors import UserError

ARTIFACTS = {}


def register_artifact(name, modality="image"):
    def decorate(draw):
        draw.modality = modality
        ARTIFACTS[name] = draw
        return draw

    return decorate


def list_artifacts(modality=None):
    return sorted(n for n, f in ARTIFACTS.items() if modality is None or f.modality == modality)


def get_artifact(name):
    if name not in ARTIFACTS:
        raise UserError(f"unknown artifact '{name}'; valid names: {', '.join(list_artifacts())}")
    return ARTIFACTS[name]


def insert_artifact(image, name, rng: np.random.Generator, foreground=None):
    """Insert artifact ``name`` into ``image`` (H x W x 3 float in [0, 1]).

    Returns the new image and the boolean mask of the pixels it changed.
    """
    colour, alpha = get_artifact(name)(image, rng, foreground)
    alpha = np.clip(alpha, 0.0, 1.0).astype(image.dtype)
    out = image * (1.0 - alpha[..., None]) + colour * alpha[..., None]
    return np.clip(out, 0.0, 1.0).astype(image.dtype), alpha > 0
