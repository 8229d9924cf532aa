"""What the differentiable LRP (:mod:`utils.lrp.differentiable`) can explain, found in one traced forward.

That LRP sees a network only through its modules: it changes the gradient of ``nn.ReLU`` modules and
computes BatchNorm with constant statistics; everything else back-propagates its plain gradient. A
nonlinearity computed in a ``forward`` (``F.relu``, ``torch.tanh``, ``x * sigmoid(x)``) or a layer type
without a rule (``nn.GELU``, ``nn.LayerNorm``) would therefore be explained with gradients, silently.
:func:`trace` finds both, and where a linear layer's epsilon rule is not applied by a ReLU.

How (chosen because it is exact and names the culprit, where a numerical test of linearity could miss a
ReLU that no input of the test happens to switch, and ``torch.fx`` fails on data-dependent Python such
as torchvision's dense layers):

* leaf modules (no children) must be of a type in :data:`SUPPORTED`, checked by walking the model;
* one forward pass of one sample runs under a ``TorchFunctionMode``, with hooks telling which module's
  ``forward`` is running: every torch function called *outside* a leaf (by a container's ``forward``)
  must be structural or linear (:data:`LINEAR`: concatenation, sums, reshaping, average pooling, ...);
  a product or quotient of two activations is not; anything else is refused, naming the module whose
  ``forward`` called it. Operations inside leaves are the leaves' own.

The same pass follows the data from layer to layer (which layer's output each tensor carries) to find
the linear layers whose output reaches the next linear layer without a ReLU between them. The
differentiable LRP applies the epsilon rule of a conv/linear layer (with the BatchNorm reading its
output merged into it) through the ReLU after it; DenseNet's last convolution of a dense layer and
its transitions' convolutions feed a concatenation read by BatchNorms, so their epsilon is applied
at their outputs instead (``Flow.epsilon_outputs``). Residual sums pass the data on like
concatenations: the ReLU after the sum applies the epsilon of both summands' last layers, as before.
"""
from dataclasses import dataclass

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from models.pooling import MaxPool2d as ChannelsLastMaxPool2d
from utils.errors import UserError

AFFINE = (nn.Conv1d, nn.Conv2d, nn.Linear)
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
# layers that pass the data on unchanged for the epsilon bookkeeping (pooling: gradient or LRP-z rule)
PASS_ON = (nn.MaxPool1d, nn.MaxPool2d, ChannelsLastMaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
           nn.Flatten, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity,
           nn.Sequential)  # an empty Sequential (a leaf) is the identity
SUPPORTED = (*AFFINE, *BATCH_NORMS, nn.ReLU, *PASS_ON)  # exact types: a subclass may compute something else
_SUPPORTED_TEXT = "Conv1d, Conv2d, Linear, BatchNorm1d/2d, ReLU, max/average pooling, Flatten, Dropout, Identity"

# torch functions a container's forward may call: each is linear in the activations or structural
LINEAR = frozenset("""
    cat concat concatenate stack hstack vstack flatten unflatten reshape view view_as reshape_as permute transpose
    t swapaxes movedim expand expand_as repeat contiguous clone squeeze unsqueeze split chunk unbind narrow select
    __getitem__ add add_ __add__ __iadd__ __radd__ sub sub_ __sub__ __isub__ __rsub__ neg __neg__ sum mean
    avg_pool1d avg_pool2d adaptive_avg_pool1d adaptive_avg_pool2d dropout dropout1d dropout2d pad to type_as float
    double __get__
""".split()) | {"max_pool1d", "max_pool2d"}  # max pooling routes the gradient to the maximum, as its module does
# linear when at most one operand is an activation (the others: numbers, parameters, buffers); a divisor
# must not be one
SCALING = frozenset("""
    mul mul_ __mul__ __rmul__ __imul__ div div_ __truediv__ __itruediv__ true_divide matmul __matmul__ mm bmm
    einsum tensordot inner outer linear
""".split())
DIVISIONS = frozenset("div div_ __truediv__ __itruediv__ true_divide".split())
# no tensor computed from the activations (shapes, checks, constants)
METADATA = frozenset("""
    size dim numel __len__ _assert is_floating_point is_complex element_size stride get_device __format__ __repr__
    zeros ones zeros_like ones_like full full_like empty empty_like arange tensor as_tensor
""".split())
# named in the refusal as nonlinearities (anything else unknown is refused as "not known to be linear")
NONLINEAR = frozenset("""
    relu relu_ relu6 leaky_relu leaky_relu_ elu elu_ selu celu gelu silu mish hardswish hardsigmoid hardtanh
    softplus softsign tanh tanh_ sigmoid sigmoid_ softmax log_softmax threshold clamp clamp_ clip max min maximum
    minimum abs exp log sqrt rsqrt pow square layer_norm group_norm batch_norm instance_norm
""".split())


@dataclass(frozen=True)
class Flow:
    order: tuple  # leaf modules' names in the order a forward pass calls them
    epsilon_outputs: tuple  # modules whose output gets the epsilon rule explicitly (see the module docstring)


def trace(model, x):
    """Check that differentiable LRP can explain ``model`` (one forward of ``x[:1]`` in eval mode, no
    gradient) and return its :class:`Flow`; raise :class:`UserError` naming the first module it cannot."""
    names = {module: name for name, module in model.named_modules()}
    for name, module in model.named_modules():
        if not any(True for _ in module.children()) and type(module) not in SUPPORTED:
            raise UserError(f"{_where(name, module)}: differentiable LRP has no rule for {type(module).__name__} "
                            f"layers (it explains {_SUPPORTED_TEXT}); use a network of those layers, or a "
                            "correction that does not train through LRP heatmaps")
    recorder = _Recorder(names)
    modes = {module: module.training for module in model.modules()}
    handles = []
    for module in model.modules():
        handles.append(module.register_forward_pre_hook(recorder.enter))
        handles.append(module.register_forward_hook(recorder.leave))
    try:
        model.eval()
        x = x.detach()[:1]
        recorder.track(x, frozenset())
        with torch.no_grad(), recorder:
            model(x)
    finally:
        for module, mode in modes.items():  # one by one: frozen layers stay in eval mode
            module.training = mode
        for handle in handles:
            handle.remove()
    if recorder.refusal:
        raise UserError(recorder.refusal)
    epsilon = [m for m in dict.fromkeys(recorder.leaves) if m in recorder.needs_epsilon]
    return Flow(tuple(names[m] for m in dict.fromkeys(recorder.leaves)), tuple(names[m] for m in epsilon))


def _where(name, module):
    return f"{name or 'model'} ({type(module).__name__})"


class _Recorder(TorchFunctionMode):
    """Module hooks + torch-function mode of :func:`trace`. ``origin`` maps each tensor computed from the
    input (by ``id``; the tensor is kept alive meanwhile) to the linear layers whose epsilon rule is still
    to be applied to it: a ReLU applies it, the next linear layer (or a BatchNorm that is not merged)
    finds it still owed."""

    def __init__(self, names):
        super().__init__()
        self.names = names
        self.stack = []  # modules whose forward is running, innermost last
        self.leaves = []  # leaf modules in call order
        self.tensors, self.producer = {}, {}  # id -> (tensor, origin); id -> leaf module that returned it
        self.needs_epsilon = set()
        self.refusal = None

    def track(self, tensor, origin):
        self.tensors[id(tensor)] = (tensor, origin)

    def origin(self, values):
        found = frozenset()
        for value in _tensors(values):
            if id(value) in self.tensors:
                found |= self.tensors[id(value)][1]
        return found

    def derived(self, value):
        return isinstance(value, torch.Tensor) and id(value) in self.tensors

    # --- module hooks ------------------------------------------------------------------------------
    def enter(self, module, args):
        self.stack.append(module)

    def leave(self, module, args, output):
        self.stack.pop()
        if any(True for _ in module.children()):
            return
        self.leaves.append(module)
        arriving = self.origin(args)
        if isinstance(module, AFFINE):
            self.needs_epsilon |= arriving  # no ReLU between those layers and this one
            origin = frozenset([module])
        elif isinstance(module, BATCH_NORMS):
            if isinstance(self.producer.get(id(args[0])), AFFINE):
                origin = frozenset([module])  # merged into the layer whose output it reads: one block
            else:
                self.needs_epsilon |= arriving
                origin = frozenset([module])  # a layer of its own (DenseNet: after a concatenation)
        elif isinstance(module, nn.ReLU):
            origin = frozenset()
        else:
            origin = arriving
        for value in _tensors(output):
            self.track(value, origin)
            self.producer[id(value)] = module

    # --- functions called by containers' forwards --------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inside_leaf = self.stack and not any(True for _ in self.stack[-1].children())
        if not inside_leaf and self.refusal is None:
            self.refusal = self._refusal(func, args, kwargs)
        output = func(*args, **kwargs)
        if not inside_leaf and any(self.derived(v) for v in _tensors((args, kwargs))):
            origin = self.origin((args, kwargs))
            for value in _tensors(output):
                self.track(value, origin)
        return output

    def _refusal(self, func, args, kwargs):
        name = getattr(func, "__name__", repr(func))
        if name in METADATA or name in LINEAR:
            return None
        module = self.stack[-1] if self.stack else None
        where = _where(self.names.get(module, ""), module) if module is not None else "model"
        if name in SCALING:
            derived = sum(self.derived(v) for v in _tensors((args, kwargs)))
            divisor = name in DIVISIONS and len(args) > 1 and self.derived(args[1])
            if derived < 2 and not divisor:
                return None
            return (f"{where}: its forward multiplies or divides activations by activations ({name}), which "
                    "no LRP rule of differentiable LRP covers; use a network whose only products are weights "
                    "times activations, or a correction that does not train through LRP heatmaps")
        what = "a nonlinearity that is not a module" if name in NONLINEAR else \
            "an operation that differentiable LRP does not know to be linear"
        return (f"{where}: its forward calls {_qualified(func, name)}, {what}, so differentiable LRP would pass "
                "its plain gradient; compute it with a module that has a rule (e.g. nn.ReLU) or use a correction that "
                "does not train through LRP heatmaps")


def _qualified(func, name):
    """``torch.nn.functional.relu``, ``torch.tanh``, ``Tensor.relu``: how the user wrote the call."""
    module = getattr(func, "__module__", None)
    if not module:
        return f"Tensor.{name}"
    return f"{'torch.nn.functional' if module.startswith('torch._C') else module}.{name}"


def _tensors(values):
    """The tensors in ``values`` (nested tuples, lists, dicts)."""
    if isinstance(values, torch.Tensor):
        yield values
    elif isinstance(values, (tuple, list)):
        for value in values:
            yield from _tensors(value)
    elif isinstance(values, dict):
        for value in values.values():
            yield from _tensors(value)
