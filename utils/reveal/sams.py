"""Synthetic activation-maximisation signals (sAMS) for DORA, in plain PyTorch.

For each neuron (channel) ``i`` of a layer an input is optimised from noise by gradient ascent on
the neuron's pooled activation. The image is parametrised at a low resolution and upsampled to
the model's input size (few parameters, smooth signals), and random robustness transforms
(jitter, scale, rotation; a registry) are applied at every step so the optimum does not rely on
exact pixel positions. All neurons are optimised together in one batch: signal ``i`` only
contributes neuron ``i``'s activation to the objective.
"""
import math

import torch
import torch.nn.functional as F

from utils.lrp.attribution import frozen_parameters
from utils.registry import Registry
from utils.reveal.activations import LayerTap, pool_activation

TRANSFORMS = Registry("SAMS transform")
register_transform = TRANSFORMS.register


def list_transforms():
    return TRANSFORMS.names()


@register_transform("jitter")
def _jitter(x, generator):
    # shift by up to 1/16 of the size; roll keeps all content so nothing is lost at the borders
    limit = max(1, x.shape[-1] // 16)
    dy, dx = (int(v) for v in torch.randint(-limit, limit + 1, (2,), generator=generator))
    return torch.roll(x, shifts=(dy, dx), dims=(-2, -1))


def _affine(x, matrix):
    grid = F.affine_grid(matrix.expand(len(x), 2, 3).to(x), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="reflection", align_corners=False)


@register_transform("scale")
def _scale(x, generator):
    factor = float(0.9 + 0.2 * torch.rand((), generator=generator))
    return _affine(x, torch.tensor([[[1 / factor, 0.0, 0.0], [0.0, 1 / factor, 0.0]]]))


@register_transform("rotate")
def _rotate(x, generator):
    angle = math.radians(float(-10 + 20 * torch.rand((), generator=generator)))
    c, s = math.cos(angle), math.sin(angle)
    return _affine(x, torch.tensor([[[c, -s, 0.0], [s, c, 0.0]]]))


def optimise_sams(model, layer, neurons, input_shape, steps=48, lr=0.05, resolution=None,
                  transforms=("jitter", "scale", "rotate"), aggregation="max", axis=1, seed=0,
                  batch=64, device="cpu"):
    """Synthetic signals (len(neurons), *input_shape) maximising each neuron's pooled activation.

    ``input_shape`` is (C, H, W) of a normalised model input; the signals live in the same
    (normalised) space. Signals of a 1-D model are optimised without image transforms.
    """
    generator = torch.Generator().manual_seed(seed)
    image = len(input_shape) == 3
    low = tuple(resolution or max(4, s // 2) for s in input_shape[1:])
    out = []
    model.eval()
    # only the input is optimised: parameter gradients would be wasted work
    with LayerTap(model, layer) as tap, frozen_parameters(model):
        for start in range(0, len(neurons), batch):
            chunk = torch.as_tensor(neurons[start:start + batch], dtype=torch.long)
            param = (0.1 * torch.randn((len(chunk), input_shape[0], *low), generator=generator)).to(device)
            param.requires_grad_(True)
            optimiser = torch.optim.Adam([param], lr=lr)
            for _ in range(steps):
                x = _to_input(param, input_shape)
                if image:
                    for name in transforms:
                        x = TRANSFORMS.get(name)(x, generator)
                tap.run(x)
                pooled = pool_activation(tap.output, aggregation, axis)
                objective = pooled[torch.arange(len(chunk)), chunk.to(pooled.device)].sum()
                optimiser.zero_grad()
                (-objective).backward()
                optimiser.step()
            out.append(_to_input(param.detach(), input_shape).cpu())
    return torch.cat(out) if out else torch.zeros((0, *input_shape))


def _to_input(param, input_shape):
    # tanh bounds the signal to about the range of normalised data (a few standard deviations)
    mode = "bilinear" if len(input_shape) == 3 else "linear"
    return 3 * torch.tanh(F.interpolate(param, size=tuple(input_shape[1:]), mode=mode, align_corners=False))
