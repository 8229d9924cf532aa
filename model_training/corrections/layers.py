"""Layer helpers of the corrections: freezing everything up to a layer, capturing its activation."""
import torch
from torch import nn

from utils.errors import UserError
from utils.layout import pool
from utils.lrp.differentiable import execution_order  # noqa: F401  (re-exported)


def get_layer(model, layer_name) -> nn.Module:
    modules = dict(model.named_modules())
    if layer_name not in modules:
        raise UserError(f"'layer_name': model has no layer '{layer_name}'")
    return modules[layer_name]


def freeze_up_to(model, layer_name, example):
    """Freeze every parameterised module executed up to and including ``layer_name``.

    Returns the frozen modules: the caller keeps them in eval mode while training, because a
    BatchNorm with frozen weights but moving running statistics would still change the features
    that CAVs and masks were computed on.
    """
    get_layer(model, layer_name)
    order = execution_order(model, example)
    inside = [i for i, name in enumerate(order) if name == layer_name or name.startswith(layer_name + ".")]
    if not inside:
        raise UserError(f"'layer_name': layer '{layer_name}' is never called in the forward pass")
    modules = dict(model.named_modules())
    frozen = []
    for name in order[: inside[-1] + 1]:
        module = modules[name]
        params = list(module.parameters(recurse=False))
        has_stats = any(buffer is not None for buffer in module.buffers(recurse=False))
        if params or has_stats:
            for param in params:
                param.requires_grad_(False)
            frozen.append(module)
    return frozen


class ActivationCatcher:
    """Forward hook keeping the last output of a layer (inside the autograd graph).

    With ``ensure_grad``, an output that does not require gradients (every layer before it frozen)
    is replaced by a leaf that does, so losses on ``d out / d activation`` still work.
    """

    def __init__(self, module, ensure_grad=False, prepend=False):
        """``prepend``: run before hooks already on the module (e.g. see the activation a P-ClArC
        projection receives, not the projected one)."""
        self.output, self.ensure_grad = None, ensure_grad
        self.handle = module.register_forward_hook(self._hook, prepend=prepend)

    def _hook(self, module, inputs, output):
        if self.ensure_grad and torch.is_grad_enabled() and not output.requires_grad:
            output = output.detach().requires_grad_(True)
        self.output = output
        return output

    def remove(self):
        self.handle.remove()


@torch.no_grad()
def pooled_activations(model, dataset, layer_name, mode, batch_size, device, desc=None, indices=None,
                       num_workers=0, axis=1):
    """(N, C) pooled activations of ``layer_name`` for every sample of ``dataset`` (no augmentation),
    or for the samples at ``indices`` only (in that order). ``axis``: where the layer's channels
    are (``utils.layout.channel_axis`` of the model's spec); the features are then preprocessing's."""
    from tqdm import tqdm

    catcher = ActivationCatcher(get_layer(model, layer_name))
    augment, dataset.augment = dataset.augment, False
    feats = []
    try:
        model.eval()
        subset = dataset if indices is None else torch.utils.data.Subset(dataset, indices)
        loader = torch.utils.data.DataLoader(subset, batch_size=batch_size, num_workers=num_workers)
        for batch in tqdm(loader, desc=desc, leave=False, disable=desc is None):
            model(batch[0].to(device))
            feats.append(pool(catcher.output, mode, axis).float().cpu())
    finally:
        dataset.augment = augment
        catcher.remove()
    if not feats:  # an empty share of a multi-process run
        return torch.zeros(0, 0)
    return torch.cat(feats)
