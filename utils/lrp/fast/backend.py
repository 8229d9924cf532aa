"""``FastBackend``: zennit's LRP in one recorded forward pass and one closed-form backward walk.

Same interface and semantics as ``ZennitBackend`` (zennit composite + zennit-crp's
``CondAttribution`` with ``exclude_parallel=True``), without autograd: no graph is built, no
hooks are registered, no parameter is touched.

Two deliberate differences, both where crp's bookkeeping rather than LRP decides:

* relevance recorded at a condition layer: crp reads it from ``.grad``, which its partial
  backward (``exclude_parallel=True``) fills twice, so it reports twice the relevance there
  (heatmap and all other layers are unaffected). Here it is the (masked) relevance itself.
* crp groups the samples of a batch by the set of layers their conditions name and runs each
  group separately (broadcasting data and conditions against each other when a group is
  smaller than the batch). Here every sample simply gets its own condition, in batch order.
  When all samples name the same layers, as in every caller of this framework, the two agree.
"""
import contextlib
import warnings

import numpy as np
import torch
from torch import nn

from utils.errors import UserError
from utils.lrp.attribution import Attribution, conditions_from, register_backend
from utils.lrp.fast.graph import build_graph, find_hook
from utils.lrp.fast.nodes import Unsupported
from utils.lrp.zennit_backend import ZennitBackend


@register_backend("fast")
class FastBackend:
    """LRP for the conv families of the registry (VGG, ResNet, their tiny versions, 1D CNNs).

    The graph is built once from the model's structure; parameters are read at every call, so
    the backend follows a model that is being trained. Computes eval-mode semantics (running
    BatchNorm statistics, no dropout) whatever ``model.training`` says;
    :meth:`differentiable_heatmap` can normalise with other statistics.
    """

    sees_forward_hooks = False  # it replays its own graph of the layers, not the model's forward pass

    def __init__(self, model, spec, composite=None):
        self.model, self.spec = model, spec
        self.composite_name = composite or spec.composite
        try:
            self.graph = build_graph(model, self.composite_name, spec.canonizer)
        except Unsupported as error:
            raise UserError(f"lrp_backend 'fast' does not support {type(model).__name__}: {error}; "
                            "use lrp_backend 'zennit'") from None
        # condition layers whose crp semantics (exclude_parallel) the graph does not replicate
        self.parallel_names = _parallel_names(self.graph)

    @staticmethod
    def supports(model, spec):
        return FastBackend.unsupported_reason(model, spec) is None

    @staticmethod
    def unsupported_reason(model, spec):
        """``None`` if supported, else a short description of the first obstacle."""
        try:
            build_graph(model, spec.composite, spec.canonizer)
        except Unsupported as error:
            return str(error)
        return None

    def attribute(self, x, targets=None, record_layers=(), conditions=None, start_layer=None, init_rel=None):
        hooked = find_hook(self.model)
        if hooked:  # attached after this backend was chosen: only autograd-based LRP honours it
            warnings.warn(f"fast LRP cannot replay {hooked}; this call uses zennit", stacklevel=2)
            return ZennitBackend(self.model, self.spec, self.composite_name).attribute(
                x, targets, record_layers, conditions, start_layer, init_rel)
        inside = sorted({k for c in conditions or () for k in c if k in self.parallel_names})
        if inside:
            warnings.warn(f"fast LRP does not replicate crp's exclude_parallel inside a dense block "
                          f"(conditions on {', '.join(inside)}); this call uses zennit", stacklevel=2)
            return ZennitBackend(self.model, self.spec, self.composite_name).attribute(
                x, targets, record_layers, conditions, start_layer, init_rel)
        conditions = conditions_from(targets, conditions, n=len(x))
        if start_layer is not None:
            conditions = [{k: v for k, v in c.items() if k != "y"} for c in conditions]
        x, conditions = _broadcast(x.detach(), conditions)
        condition_layers = list(dict.fromkeys(k for c in conditions for k in c if k != "y"))
        layers = self._recorded_layers(record_layers, condition_layers, start_layer)
        if start_layer is None and init_rel is None and any("y" not in c for c in conditions):
            raise ValueError("every sample needs a target ('y' in its condition) unless start_layer or "
                             "init_rel is given")
        order = {name: i for i, name in enumerate(self.graph.output_order)}
        # stop the forward pass at the start layer unless a later layer is to be recorded
        stop_early = start_layer is not None and all(order[n] <= order[start_layer] for n in layers)
        trace = _Trace(conditions, layers, start_layer, frozenset(condition_layers), stop_early)

        with torch.no_grad():
            try:
                logits = self.graph.run(x, trace)
            except _StopForward:
                logits = None
            if start_layer is not None:
                outputs = trace.start_activation
                trace.start_relevance = _initial_relevance(outputs, init_rel)
                heatmap = self.graph.explain(None, trace)
            else:
                outputs = logits
                heatmap = self.graph.explain(_initial_relevance(outputs, init_rel, conditions), trace)

        activations = {name: trace.activations[name] for name in layers}
        relevances = {name: trace.relevances.get(name, torch.zeros_like(activations[name])) for name in layers}
        heatmap = torch.zeros_like(x) if heatmap is None else heatmap
        return Attribution(heatmap, outputs, relevances, activations)

    def differentiable_heatmap(self, x, targets, statistics=None, init_rel=None):
        """The input heatmap of ``targets`` (one class per sample, or multi-hot rows: the sum of their
        classes' logits, see :func:`utils.lrp.attribution.conditions_from`) as a differentiable function of
        the parameters and of ``x``: the relevance the evaluation measures, for a training loss.

        ``init_rel``: a function of the logits (N, K) giving the relevance the backward walk starts
        from instead of the logits themselves (with ``targets=None``: not restricted to classes), e.g.
        logits weighted to explain a function of several of them (ISNet's ``selective`` log-odds).

        ``statistics``: ``{batch_norm: (mean, var)}`` to normalise with instead of the running
        statistics, e.g. the training batch's (:func:`batch_norm_statistics`, which keeps them
        differentiable): a loss on the heatmap of the eval-mode network, while the cross-entropy
        trains with batch statistics, could reshape that network behind the cross-entropy's back.
        Checked against finite differences (``tests/utils/lrp/test_fast_backend.py``), also through
        the batch statistics; zennit's hooks give no second derivative.
        """
        hooked = find_hook(self.model)
        if hooked:
            raise UserError(f"a differentiable heatmap cannot replay {hooked}")
        conditions = conditions_from(targets, None, n=len(x))
        trace = _Trace(conditions, [], None, frozenset(), False, statistics)
        with torch.enable_grad():
            logits = self.graph.run(x, trace)
            return self.graph.explain(_initial_relevance(logits, init_rel, conditions), trace)

    def _recorded_layers(self, record_layers, condition_layers, start_layer):
        """crp records the requested layers, the condition layers and the start layer."""
        known = set(self.graph.output_order)
        missing = [n for n in record_layers if n not in known]
        if missing:
            warnings.warn(f"Some layer names not found in model: {missing}.")
        for name in condition_layers + ([start_layer] if start_layer is not None else []):
            if name not in known:
                raise KeyError(f"layer '{name}' not found in model")
        layers = [n for n in record_layers if n in known] + condition_layers
        return list(dict.fromkeys(layers + ([start_layer] if start_layer is not None else [])))


def _parallel_names(node):
    """Names inside the graph's dense blocks (see ``nodes.DenseBlock``)."""
    names = set(getattr(node, "parallel_names", ()))
    for child in node.children():
        names |= _parallel_names(child)
    return frozenset(names)


@contextlib.contextmanager
def batch_norm_statistics(model):
    """Inside the context, the forward passes of ``model`` record into the yielded dict what each
    BatchNorm normalises with: the batch's mean and (biased) variance in training mode, its running
    statistics otherwise (the last forward wins).

    The batch statistics stay in the graph of that forward. A heatmap computed with them by
    :meth:`FastBackend.differentiable_heatmap` treats them as constants for each sample's relevance,
    as LRP does, but its derivative w.r.t. the parameters flows through them: training-mode
    BatchNorm is invariant to a shift or rescaling of its input channel, so a heatmap loss that held
    the statistics fixed would push the parameters along exactly those directions, where the
    cross-entropy never pushes back; the batch statistics then run away faster than the running
    statistics follow, and the eval-mode network collapses while the training-mode one looks fine.
    """
    record, handles = {}, []

    def hook(module, inputs, output):
        x = inputs[0]
        if module.training or module.running_mean is None:
            var, mean = torch.var_mean(x, [0, *range(2, x.dim())], unbiased=False)
            record[module] = (mean, var)
        else:
            record[module] = (module.running_mean, module.running_var)

    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            handles.append(module.register_forward_hook(hook))
    try:
        yield record
    finally:
        for handle in handles:
            handle.remove()


class _StopForward(Exception):
    """Raised when the start layer is reached and nothing after it is needed."""


class _Trace:
    """The state of one call: tensors stored by the rules, masks, recordings, start layer."""

    def __init__(self, conditions, recorded, start, cuts, stop_early, statistics=None):
        self.conditions, self.recorded, self.start = conditions, set(recorded), start
        self.statistics = statistics or {}  # BatchNorm -> (mean, var) replacing its running ones
        self.cuts, self.stop_early = cuts, stop_early  # cuts: condition layers (crp's exclude_parallel)
        self.masked = {k for c in conditions for k in c if k != "y"}
        self.saved, self.activations, self.relevances = {}, {}, {}
        self.start_activation = self.start_relevance = None

    def statistics_of(self, batch_norm):
        return self.statistics.get(batch_norm) or (batch_norm.running_mean, batch_norm.running_var)

    def save(self, node, value):
        self.saved[node] = value

    def pop(self, node):
        return self.saved.pop(node, None)  # freed as soon as the backward walk has used it

    def visited(self, node, y):
        if node.name in self.recorded:
            self.activations[node.name] = y
        if node.name == self.start:
            self.start_activation = y
            if self.stop_early:
                raise _StopForward

    def arrived(self, node, r):
        """Relevance ``r`` reached the output of ``node``: mask it, record it (crp's order)."""
        if node.name in self.masked:
            r = r * self._mask(node.name, r)
        if node.records and node.name in self.recorded:
            self.relevances[node.name] = r
        return r

    def _mask(self, name, r):
        mask = torch.ones(r.shape[:2], dtype=r.dtype)
        for i, condition in enumerate(self.conditions):
            if name in condition:
                mask[i] = 0
                mask[i, condition[name]] = 1
        return mask.view(*mask.shape, *(1,) * (r.dim() - 2)).to(r.device)


def _broadcast(x, conditions):
    """crp's broadcasting: one sample and many conditions, or many samples and one condition."""
    if len(x) == len(conditions):
        return x, conditions
    n_data = len(x)
    if len(conditions) > 1:
        x = torch.repeat_interleave(x, len(conditions), dim=0)
    if n_data > 1:
        conditions = conditions * n_data
    return x, conditions


def _initial_relevance(outputs, init_rel, conditions=None):
    """crp's ``relevance_init``: ``init_rel`` (callable, tensor or number) or the outputs
    themselves, restricted per sample to the classes in ``'y'`` when ``conditions`` are given."""
    if callable(init_rel):
        selection = init_rel(outputs.clone())
    elif isinstance(init_rel, torch.Tensor):
        selection = init_rel
    elif isinstance(init_rel, (int, np.integer)):
        selection = torch.full(outputs.shape, int(init_rel))
    else:
        selection = outputs
    selection = torch.as_tensor(selection).to(outputs)
    if conditions is None or all("y" not in c for c in conditions):
        return selection
    masked = torch.zeros_like(selection)
    for i, condition in enumerate(conditions):
        classes = condition.get("y", slice(None))
        masked[i, classes] = selection[i, classes]
    return masked
