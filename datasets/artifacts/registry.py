"""Registry of artifact inserters (name -> function drawing colour layer and opacity).

One mechanism for every modality. An inserter returns ``(colour, alpha)``; the sample is blended as
``(1 - alpha) * x + alpha * colour`` and the artifact's mask is ``alpha > 0``. What differs between
modalities is only the array layout, kept as data in :data:`LAYOUTS`:

* ``image``: ``(H, W, 3)`` in [0, 1]; ``alpha`` is ``(H, W)``; the mask is ``(H, W)``.
* ``signal``: ``(C, T)`` (leads x time, e.g. mV); ``alpha`` is ``(T,)`` (all leads) or ``(C, T)``;
  the mask is always ``(C, T)`` so that a defect in one lead is located exactly.
"""
from dataclasses import dataclass

import numpy as np

from utils.errors import UserError
from utils.registry import Registry

ARTIFACTS = Registry("artifact")


@dataclass(frozen=True)
class Layout:
    channel_axis: int  # where a channel-less alpha is broadcast
    value_range: tuple | None  # outputs are clipped to it; None: physical units, never clipped
    mask_has_channels: bool  # whether the mask keeps the channel axis


LAYOUTS = {
    "image": Layout(channel_axis=-1, value_range=(0.0, 1.0), mask_has_channels=False),
    "signal": Layout(channel_axis=0, value_range=None, mask_has_channels=True),
}


def register_artifact(name, modality="image"):
    if modality not in LAYOUTS:
        raise ValueError(f"artifact {name!r}: unknown modality {modality!r}")

    def decorate(draw):
        draw.modality = modality
        return ARTIFACTS.register(name)(draw)

    return decorate


def list_artifacts(modality=None):
    return sorted(n for n, f in ARTIFACTS.items() if modality is None or f.modality == modality)


def get_artifact(name, modality=None):
    """The inserter ``name``; with ``modality``, refuse an inserter made for another modality."""
    if name not in ARTIFACTS:
        raise UserError(ARTIFACTS.unknown(name, valid=list_artifacts(modality)))
    draw = ARTIFACTS[name]
    if modality is not None and draw.modality != modality:
        raise UserError(f"artifact '{name}' is for {draw.modality} data, not {modality} data; valid names: "
                        f"{', '.join(list_artifacts(modality))}")
    return draw


def insert_artifact(data, name, rng: np.random.Generator, foreground=None):
    """Insert artifact ``name`` into ``data`` (layout of the artifact's modality, see :data:`LAYOUTS`).

    Returns the new array and the boolean mask of the entries it changed.
    """
    draw = get_artifact(name)
    layout = LAYOUTS[draw.modality]
    colour, alpha = draw(data, rng, foreground)
    alpha = np.clip(alpha, 0.0, 1.0).astype(data.dtype)
    weight = alpha if alpha.ndim == data.ndim else np.expand_dims(alpha, layout.channel_axis)
    out = data * (1.0 - weight) + colour * weight
    if layout.value_range is not None:
        out = np.clip(out, *layout.value_range)
    mask = np.broadcast_to(weight > 0, data.shape).copy() if layout.mask_has_channels else alpha > 0
    return out.astype(data.dtype), mask


def empty_mask(data, modality):
    """The all-false mask of a sample without the artifact, shaped like :func:`insert_artifact`'s."""
    layout = LAYOUTS[modality]
    if layout.mask_has_channels:
        return np.zeros(data.shape, dtype=bool)
    shape = list(data.shape)
    del shape[layout.channel_axis]
    return np.zeros(shape, dtype=bool)
