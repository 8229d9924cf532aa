"""Reading one layer's activation with a forward hook (for sAMS and pooled-activation checks)."""
import torch

from utils.layout import POOLINGS, channels_second


class _Reached(Exception):
    """Stops the forward pass once the tapped layer has produced its output."""


class LayerTap:
    """Context manager: ``tap.run(x)`` runs the model up to ``layer`` and keeps its output.

    The forward pass is cut at the layer (nothing after it is needed), which saves most of the
    compute when the layer is early.
    """

    def __init__(self, model, layer):
        self.model, self.module = model, dict(model.named_modules())[layer]
        self.output, self.handle = None, None

    def __enter__(self):
        self.handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc):
        self.handle.remove()

    def _hook(self, module, inputs, output):
        self.output = output
        raise _Reached

    def run(self, x):
        try:
            self.model(x)
        except _Reached:
            pass
        return self.output


# DORA's names for the pooling every step shares (utils.layout)
AGGREGATIONS = {"max": POOLINGS["cavs_max"], "mean": POOLINGS["cavs_mean"]}


def pool_activation(activation, aggregation="max", axis=1):
    """(N, C) spatial (or token) max / mean of a layer output in any layout."""
    return AGGREGATIONS[aggregation](channels_second(activation, axis))


@torch.no_grad()
def pooled_activations(model, layer, inputs, aggregation="max", axis=1, batch=64, device="cpu"):
    """Pooled activations (N, C) of ``layer`` for a tensor of inputs, computed in batches."""
    rows = []
    with LayerTap(model, layer) as tap:
        for start in range(0, len(inputs), batch):
            rows.append(pool_activation(tap.run(inputs[start:start + batch].to(device)), aggregation, axis).cpu())
    return torch.cat(rows)
