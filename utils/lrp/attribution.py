"""One interface for every LRP computation of the framework.

``get_attributor(model)`` returns a backend for the model; ``attribute`` gives, in one forward and
one backward pass, the input relevance, the relevance and activation of every requested layer and
the model output. Semantics follow zennit-crp's ``CondAttribution``:

* ``targets`` (one class per sample) starts the backward pass at that logit, with its value as
  the initial relevance; multi-hot rows start it at every positive class (their sum is explained);
* ``conditions`` (one dict per sample, ``{layer: [channels]}``) masks the relevance flowing
  through a layer to the listed channels (concept-conditional relevance);
* ``start_layer`` + ``init_rel`` starts the backward pass at a hidden layer instead, with
  ``init_rel(activation)`` as the initial relevance (used for CAV-conditioned localization).

Backends are registered by name; which one a model uses is decided here, in one place.
"""
import contextlib
import dataclasses
import warnings
from dataclasses import dataclass, field

import torch

from utils.errors import UserError
from utils.registry import Registry

BACKENDS = Registry("lrp_backend")


@dataclass
class Attribution:
    heatmap: torch.Tensor  # relevance at the input, same shape as the input
    outputs: torch.Tensor  # logits (or the start layer's activation)
    relevances: dict = field(default_factory=dict)  # layer name -> relevance at its output
    activations: dict = field(default_factory=dict)  # layer name -> its output


register_backend = BACKENDS.register


def list_backends():
    return BACKENDS.names()


def get_attributor(model, backend="auto", composite=None):
    """The attribution backend for ``model`` (built by ``models.get_model``).

    ``backend='auto'`` picks what the model's spec asks for: conservative propagation for
    transformers, otherwise the fastest registered backend that supports the model.
    """
    from models import get_model_spec

    spec = get_model_spec(getattr(model, "model_name", None) or _unknown(model))
    if backend == "auto":
        backend = auto_backend_name(model, composite, warn=True)
    return BACKENDS.get(backend)(model, spec, composite=composite)


def auto_backend_name(model, composite=None, warn=False):
    """The backend ``backend='auto'`` picks for ``model``: the first of its family's backends
    (``ModelSpec.explanation``: conservative propagation for transformers, else fast, then zennit)
    that supports the model (``warn``: say why one was skipped)."""
    from models import get_model_spec

    spec = get_model_spec(getattr(model, "model_name", None) or _unknown(model))
    candidates = list(spec.explanation.backends)
    wanted = dataclasses.replace(spec, composite=composite) if composite else spec
    chosen = next(name for name in candidates if name in BACKENDS and BACKENDS[name].supports(model, wanted))
    if warn:
        _warn_fallback(candidates[:candidates.index(chosen)], chosen, model, wanted)
    return chosen


def sees_forward_hooks(backend_name):
    """Whether a backend propagates through the model's own forward pass (autograd), so a forward hook
    that edits activations (P-ClArC's projection) is part of what it explains."""
    return getattr(BACKENDS.find(backend_name), "sees_forward_hooks", False)


def _warn_fallback(skipped, chosen, model, spec):
    """One line per preferred backend that was skipped, saying why (e.g. a module type)."""
    for name in skipped:
        reason = getattr(BACKENDS.find(name), "unsupported_reason", None)
        if reason is not None:
            warnings.warn(f"LRP backend '{name}' cannot explain this model ({reason(model, spec)}); "
                          f"using '{chosen}'", stacklevel=3)


def _unknown(model):
    raise UserError(f"{type(model).__name__} was not built by models.get_model; cannot choose LRP rules")


@contextlib.contextmanager
def frozen_parameters(model):
    """Turn off parameter gradients for an attribution pass and restore the flags afterwards.

    Attribution must not leave a model that is being trained with frozen weights.
    """
    flags = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)
    try:
        yield
    finally:
        for param, flag in zip(model.parameters(), flags):
            param.requires_grad_(flag)


def conditions_from(targets=None, conditions=None, n=None):
    """Merge per-sample ``targets`` into per-sample condition dicts (zennit-crp style).

    ``targets``: one class per sample ``(N,)`` (integers), or multi-hot rows ``(N, K)`` (float or
    bool, as ``utils.labels`` gives them), whose positive classes all start the backward pass: LRP is
    linear in its initial relevance, so that explains the sum of their logits."""
    if conditions is None:
        conditions = [{} for _ in range(n)]
    conditions = [dict(c) for c in conditions]
    if targets is not None:
        targets = torch.as_tensor(targets)
        if targets.dim() == 2 and (targets.is_floating_point() or targets.dtype == torch.bool):
            classes = [row.nonzero().flatten().tolist() for row in targets]
        else:
            classes = [[int(target)] for target in targets.view(-1).tolist()]
        for cond, chosen in zip(conditions, classes):
            cond["y"] = chosen
    return conditions
