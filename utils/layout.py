"""Where a layer output's channels are, and the one rule by which every step reads them.

Conv nets give (N, C, H, W), signal nets (N, C, T): channels second. Transformer blocks give
tokens (N, T, D): channels last. Preprocessing, CAV fitting, P-ClArC / RR-ClArC, TCAV and
localization all pool, project and broadcast through these helpers, so a CAV fitted in one step
has the same C entries as the features of every other step. Which layout a model has is data of
its family (``ModelSpec.explanation``), not a branch at each call site.

Only torch and the registry class are imported here: preprocessing, the corrections and the evaluation all import it.
"""
import torch

from utils.registry import Registry


def channel_axis(spec) -> int:
    """Axis of the channels (neurons) in the inspectable layer outputs of models like ``spec``."""
    return spec.explanation.channel_axis


def channels_second(tensor, axis=1) -> torch.Tensor:
    """A layer output as (N, C, L), whatever its layout (L = 1 for a dense layer)."""
    if tensor.dim() == 2:  # a dense layer: one position per channel
        return tensor.unsqueeze(-1)
    if axis != 1:
        tensor = tensor.movedim(axis, 1)
    return tensor.flatten(2)


# the pooled activations a CAV is fit on (config key ``cav_mode``), on the (N, C, L) view
POOLINGS = Registry("cav_mode", {"cavs_max": lambda flat: flat.amax(-1), "cavs_mean": lambda flat: flat.mean(-1)})


def pool(activation, mode, axis=1) -> torch.Tensor:
    """(N, C) max or mean over space / time / tokens of a layer output: ``cavs_max`` or ``cavs_mean``."""
    return POOLINGS[mode](channels_second(activation, axis))


def along_channels(direction, like, axis=1) -> torch.Tensor:
    """A per-channel vector ``direction`` (C,) shaped to broadcast against ``like`` (a layer output):
    the same value at every position (pixel, time step or token) of a channel."""
    shape = [1] * like.dim()
    shape[axis] = -1
    return torch.as_tensor(direction).to(like).view(shape)
