"""The nodes of the fast engine's graph: a tree that mirrors how a model computes its output.

Every node runs forward (``run``), storing in the ``trace`` what its rule needs, and explains
backward (``explain``), turning the relevance at its output into the relevance at its input.
``None`` stands for "no relevance flows here" (above the start layer, or on a path that a
concept condition excludes); it costs nothing and becomes zeros where a layer is recorded.

Leaves (one module and its rule) live in ``rules.py``; the containers are here: ``Sequence``
(children one after the other), ``Residual`` (branch + shortcut, summed) and ``DenseBlock`` (layers
reading the concatenation of all earlier outputs).
"""
import torch


class Unsupported(Exception):
    """The model contains something the fast engine has no closed-form rule for."""


class Node:
    """Base class. ``name`` is the module's qualified name (``None`` for anonymous steps)."""

    name = None
    records = False  # this occurrence's output is what crp records for ``name`` (the last call)
    names = frozenset()  # recorded names in this subtree, itself included

    def children(self):
        return ()

    def bind(self, nonneg_in):
        """Note whether the input is known to be non-negative; return the same for the output.

        The z+ rule can skip the negative half of its input when the input is a ReLU output.
        """
        return False

    def run(self, x, trace):
        y = self.forward(x, trace)
        if self.records:
            trace.visited(self, y)
        return y

    def explain(self, r, trace):
        if self.records and self.name == trace.start:
            r = trace.start_relevance
        elif r is None and trace.start not in self.names:
            return None  # nothing flows into this subtree
        if r is not None:
            r = trace.arrived(self, r)
        return self.backward(r, trace)

    def forward(self, x, trace):
        raise NotImplementedError

    def backward(self, r, trace):
        raise NotImplementedError


class Sequence(Node):
    """Children applied one after the other (``nn.Sequential``, a model's top-level forward)."""

    def __init__(self, name, steps):
        self.name, self.steps = name, list(steps)

    def children(self):
        return self.steps

    def bind(self, nonneg_in):
        for step in self.steps:
            nonneg_in = step.bind(nonneg_in)
        return nonneg_in

    def forward(self, x, trace):
        for step in self.steps:
            x = step.run(x, trace)
        return x

    def backward(self, r, trace):
        for step in reversed(self.steps):
            r = step.explain(r, trace)
        return r


class Residual(Node):
    """``post(branch(x) + shortcut(x))``: torchvision's BasicBlock and Bottleneck.

    With zennit's ResNet canonizer the sum is a ``Sum`` module with the ``Norm`` rule: relevance
    is split in proportion to the two summands (``sum_rule='norm'``). Without it the sum is a
    plain addition and both summands get the full gradient (``sum_rule='gradient'``).

    crp computes concept-conditional relevance with ``exclude_parallel=True``: once a condition
    layer lies on one path of the block, the other path receives no relevance.
    """

    def __init__(self, name, branch, shortcut, post, sum_rule):
        self.name, self.branch, self.shortcut, self.post = name, branch, shortcut, post
        self.sum_rule = sum_rule

    def children(self):
        return [c for c in (self.branch, self.shortcut, self.post) if c is not None]

    def bind(self, nonneg_in):
        branch = self.branch.bind(nonneg_in)
        shortcut = self.shortcut.bind(nonneg_in) if self.shortcut else nonneg_in
        return self.post.bind(branch and shortcut)

    def forward(self, x, trace):
        out = self.branch.run(x, trace)
        identity = self.shortcut.run(x, trace) if self.shortcut else x
        z = identity + out
        trace.save(self, (identity, out, z))
        return self.post.run(z, trace)

    def backward(self, r, trace):
        r = self.post.explain(r, trace)
        saved = trace.pop(self)
        r_identity = r_out = None
        if r is not None and self.sum_rule == "norm":
            identity, out, z = saved
            s = stabilize(z)
            s = divide(r, s)  # r / stabilize(z), in the stabilizer's buffer
            r_identity, r_out = identity * s, s * out
        elif r is not None:
            r_identity = r_out = r
        shortcut_names = self.shortcut.names if self.shortcut else frozenset()
        in_branch, in_shortcut = trace.cuts & self.branch.names, trace.cuts & shortcut_names
        if in_branch and not in_shortcut:
            r_identity = None
        elif in_shortcut and not in_branch:
            r_out = None
        r_x = self.branch.explain(r_out, trace)
        r_identity = self.shortcut.explain(r_identity, trace) if self.shortcut else r_identity
        if r_x is None or r_identity is None:
            return r_x if r_identity is None else r_identity
        return r_x + r_identity


class DenseBlock(Node):
    """torchvision's ``_DenseBlock``: ``features = [x]``, each layer appends ``layer(cat(features))``, the
    block returns ``cat(features)``.

    A concatenation only places its inputs side by side, so its relevance is split back into the
    channels each input contributed (what autograd does for zennit); a tensor read by several later
    layers sums the relevance they send back. The walk goes through the layers in reverse order, so a
    layer's output has received the relevance of every later reader before the layer explains it.

    crp's ``exclude_parallel`` for a condition on a layer *inside* the block (the other paths through
    the block then receive nothing) is not replicated: ``parallel_names`` lists those layers, and the
    backend leaves such calls to zennit.
    """

    def __init__(self, name, layers):
        self.name, self.layers = name, list(layers)

    def children(self):
        return self.layers

    @property
    def parallel_names(self):
        return frozenset().union(*(layer.names for layer in self.layers))

    def bind(self, nonneg_in):
        nonneg = nonneg_in  # a layer's input is non-negative if the block input and all earlier outputs are
        for layer in self.layers:
            nonneg = layer.bind(nonneg) and nonneg
        return nonneg

    def forward(self, x, trace):
        features, sizes = [x], [x.shape[1]]
        trace.save(self, sizes)  # filled as the layers run: a pass stopped at a start layer inside leaves it partial
        for layer in self.layers:
            features.append(layer.run(torch.cat(features, 1), trace))
            sizes.append(features[-1].shape[1])
        return torch.cat(features, 1)

    def backward(self, r, trace):
        sizes = trace.pop(self)
        parts = list(r.split(sizes, 1)) if r is not None else [None] * (len(self.layers) + 1)
        for i in reversed(range(min(len(self.layers), len(sizes)))):  # the layers whose input was computed
            r_in = self.layers[i].explain(parts[i + 1], trace)
            if r_in is None:
                continue
            for j, piece in enumerate(r_in.split(sizes[:i + 1], 1)):
                parts[j] = piece if parts[j] is None else parts[j] + piece
        return parts[0]


EPSILON = 1e-6  # zennit's stabilizer for the epsilon, z+, flat and norm rules


def stabilize(z, eps=EPSILON):
    """``z`` moved away from zero by ``eps`` in the direction of its sign (zero counts as positive).

    zennit's denominator, in three passes instead of five. They differ only at ``z = -0.0``
    (here ``-eps``, there ``+eps``), which a sum attains only when all its terms are (-)0, so
    the relevance it distributes, ``term * r / stabilize(z)``, is zero either way.
    """
    return z.abs().add_(eps).copysign_(z)


def divide(r, z):
    """``r / z``, written into ``z`` (a temporary) unless a graph is being recorded: autograd cannot
    differentiate ``out=`` (the heatmap of a training loss, see ``FastBackend.differentiable_heatmap``)."""
    if torch.is_grad_enabled() and (r.requires_grad or z.requires_grad):
        return r / z
    return torch.div(r, z, out=z)
