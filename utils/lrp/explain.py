"""LRP-Flex: heatmaps of any supported ``nn.Module`` in one call, differentiable when asked.

>>> from utils.lrp import explain
>>> result = explain(model, x)                       # the predicted class, epsilon-LRP
>>> result.heatmap.shape == x.shape                  # (N, C, H, W) input relevance
>>> explain(model, x, target=2, rule="z_plus").heatmap

Two rules:

* ``epsilon``: the differentiable epsilon-LRP of :mod:`utils.lrp.differentiable` (the one ISNet and RRR
  train through) on every network :func:`~utils.lrp.differentiable.check_explainable` accepts: modules
  with a rule (Conv1d/2d, Linear, BatchNorm, ReLU, pooling, Flatten, Dropout), registered or not. A
  network it cannot explain (a ``F.gelu`` in a ``forward``, an ``nn.LayerNorm``) is refused in one line
  naming the module. ``input_rule``: ``gradient`` (the epsilon rule at the input too) or ``zb`` (the
  z^B rule with per-channel bounds ``low``/``high``). The default ``eps`` is that of the project's
  ``epsilon`` composite (zennit's 1e-6), so on a registered model the heatmap is the one
  ``get_attributor(model, composite="epsilon")`` gives.
* ``z_plus``: the LRP composite the audit computes, z+ on the convolutions, epsilon on the linear
  layers, the flat rule at the input layer, BatchNorm merged (``epsilon_plus_flat``), from the fast
  engine's closed form, which autograd differentiates. It explains the registered families with that
  composite (their own canonizer) and ``nn.Sequential`` networks of layers the engine knows; any other
  unregistered ``nn.Module`` is refused in one line: its ``forward`` may compute anything, and the engine
  replays modules, not code. A model with a forward hook (a P-ClArC correction) is explained by zennit,
  which sees the hook, but not differentiably (zennit's hooks give no second derivative).

Both explain the network in eval mode (running BatchNorm statistics, no dropout), whatever
``model.training`` says; the modules' training flags are restored afterwards. Training-mode statistics
are what ISNet's loss uses while training: that is :class:`~utils.lrp.differentiable.DifferentiableLRP`
with ``forward(x, training=True)``, not this function.

The module and the function share the name ``explain``: ``from utils.lrp import explain`` is the
function, ``from utils.lrp.explain import Explanation`` reads this module.
"""
import contextlib
from typing import NamedTuple

import torch
from torch import nn

from utils.errors import UserError
from utils.lrp.differentiable import DifferentiableLRP
from utils.lrp.fast.backend import FastBackend
from utils.lrp.fast.graph import find_hook
from utils.lrp.zennit_backend import ZennitBackend

RULES = ("epsilon", "z_plus")
INPUT_RULES = ("gradient", "zb")
Z_PLUS = "epsilon_plus_flat"  # the registry's default composite: what the audit's heatmaps are
Z_PLUS_COMPOSITES = ("epsilon_plus_flat", "epsilon_plus")  # composites with z+ on the convolutions


class Explanation(NamedTuple):
    """What :func:`explain` returns (unpacks as ``heatmap, logits, target``)."""
    heatmap: torch.Tensor  # (N, C, ...) relevance at the input, the shape of x
    logits: torch.Tensor  # (N, K) the model's outputs for x (eval mode)
    target: torch.Tensor  # (N,) the class each heatmap explains


def explain(model, x, target=None, rule="epsilon", input_rule=None, eps=1e-6, low=None, high=None,
            create_graph=False) -> Explanation:
    """LRP heatmaps of ``model`` for the batch ``x`` (N, C, ...).

    ``target``: ``None`` explains each sample's predicted class; an int the same class for all; a (N,)
    tensor or sequence one class per sample. The heatmap of class ``k`` starts from the logit ``f_k``
    (its sum is ``f_k`` less what biases absorb). ``rule``/``input_rule``/``eps``: see the module
    docstring (``input_rule`` and ``eps`` belong to ``epsilon``; ``z_plus`` takes its own composite's
    rules). ``low``/``high``: the z^B bounds, a number, a (C,) sequence or a tensor broadcastable to
    ``x`` (for normalised images: ``normalize(0)`` and ``normalize(1)`` per channel).
    ``create_graph``: the heatmap stays a differentiable function of the parameters (and of ``x``
    when it requires a gradient), for a loss on it; otherwise everything returned is detached.
    """
    if rule not in RULES:
        raise UserError(f"explain: unknown rule '{rule}'; valid: {', '.join(RULES)}")
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or not x.is_floating_point():
        raise UserError("explain: x must be a floating-point batch (N, C, ...), e.g. x[None] for one sample")
    with _eval_mode(model), torch.enable_grad():  # LRP is a backward pass, also inside a caller's no_grad
        if rule == "epsilon":
            return _epsilon(model, x, target, input_rule or "gradient", eps, low, high, create_graph)
        if input_rule is not None:
            raise UserError(f"explain: input_rule '{input_rule}' belongs to rule 'epsilon'; rule 'z_plus' uses "
                            f"its composite's flat rule at the input ({Z_PLUS})")
        return _z_plus(model, x, target, create_graph)


# --- epsilon -------------------------------------------------------------------------------------
def _epsilon(model, x, target, input_rule, eps, low, high, create_graph):
    if input_rule not in INPUT_RULES:
        raise UserError(f"explain: unknown input_rule '{input_rule}'; valid: {', '.join(INPUT_RULES)}")
    if input_rule == "zb":
        if low is None or high is None:
            raise UserError("explain: input_rule 'zb' needs the input bounds low and high")
        low, high = _bounds(low, x), _bounds(high, x)
    lrp = DifferentiableLRP(model, eps=eps, input_rule=input_rule, low=low, high=high)
    logits = lrp.forward(x)  # the first forward runs check_explainable: a refusal names the module
    classes = targets_for(target, logits)
    heatmap = lrp.relevance(logits.gather(1, classes[:, None])[:, 0], create_graph=create_graph)["input"]
    if not create_graph:
        heatmap, logits = heatmap.detach(), logits.detach()
    return Explanation(heatmap, logits, classes)


def _bounds(value, x):
    """A z^B bound as a tensor broadcastable to ``x``: a (C,) sequence becomes (1, C, 1, ...)."""
    value = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    if value.dim() == 1 and value.numel() == x.shape[1] and x.dim() > 2:
        value = value.view(1, -1, *([1] * (x.dim() - 2)))
    try:
        torch.broadcast_shapes(value.shape, x.shape)
    except RuntimeError:
        raise UserError(f"explain: z^B bound of shape {tuple(value.shape)} does not fit inputs of shape "
                        f"{tuple(x.shape)}; give a number, one value per channel, or a broadcastable tensor") from None
    return value


# --- z+ ------------------------------------------------------------------------------------------
def _z_plus(model, x, target, create_graph):
    spec = _z_plus_spec(model)
    hooked = find_hook(model)
    if hooked and create_graph:
        raise UserError(f"explain: rule 'z_plus' cannot give a differentiable heatmap of a model with {hooked} "
                        "(zennit's hooks have no second derivative); use rule 'epsilon'")
    reason = None if hooked else FastBackend.unsupported_reason(model, spec)
    if reason is not None:
        raise UserError(f"explain: rule 'z_plus' cannot explain {_name(model)} ({reason}); use rule 'epsilon'")
    # the model's own logits: the composite's canonized network (BatchNorm merged) rounds differently
    with torch.set_grad_enabled(create_graph):
        logits = model(x)
    classes = targets_for(target, logits)
    if hooked:  # the fast engine replays modules and would skip the hook: zennit sees it
        heatmap = ZennitBackend(model, spec).attribute(x.detach(), targets=classes).heatmap
    else:
        heatmap = FastBackend(model, spec).differentiable_heatmap(x, classes)
    return Explanation(heatmap if create_graph else heatmap.detach(), logits, classes)


def _z_plus_spec(model):
    """The registered spec of ``model`` (built by ``models.get_model``), or for an unregistered
    ``nn.Sequential`` one with the default composite and BatchNorm merged into the layer before it."""
    from models import get_model_spec
    from models.registry import ModelSpec

    name = getattr(model, "model_name", None)
    if name is not None:
        spec = get_model_spec(name)
        if spec.composite not in Z_PLUS_COMPOSITES:
            raise UserError(f"explain: rule 'z_plus' needs a composite with z+ on the convolutions; "
                            f"{name} is explained with '{spec.composite}'")
        return spec
    if type(model) is not nn.Sequential:
        raise UserError(f"explain: rule 'z_plus' explains registered models (models.get_model) and nn.Sequential "
                        f"networks; {type(model).__name__} is neither (its forward could compute anything); "
                        "use rule 'epsilon'")
    return ModelSpec(type(model).__name__, None, (), composite=Z_PLUS, canonizer="merge_batchnorm")


# --- shared --------------------------------------------------------------------------------------
def targets_for(target, logits):
    """The (N,) classes to explain: the predicted ones for ``None``, else ``target`` (an int for all
    samples, or one per sample), checked against the number of classes."""
    n, k = logits.shape[0], logits.shape[1]
    if target is None:
        return logits.detach().argmax(1)
    classes = torch.as_tensor(target, device=logits.device)
    if classes.is_floating_point() or classes.dtype == torch.bool:
        raise UserError(f"explain: target must be class indices (integers), got {classes.dtype}")
    classes = classes.long().expand(n) if classes.dim() == 0 else classes.long()
    if classes.shape != (n,):
        raise UserError(f"explain: target must be one class or one per sample ({n}), got shape {tuple(classes.shape)}")
    if classes.numel() and (classes.min() < 0 or classes.max() >= k):
        bad = int(classes[(classes < 0) | (classes >= k)][0])
        raise UserError(f"explain: target class {bad} out of range; the model has {k} classes (0..{k - 1})")
    return classes


@contextlib.contextmanager
def _eval_mode(model):
    """The model in eval mode inside the block; every module's own flag restored after (a frozen
    layer of a model in training stays in eval mode)."""
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for module, mode in modes.items():
            module.training = mode


def _name(model):
    return getattr(model, "model_name", None) or type(model).__name__
