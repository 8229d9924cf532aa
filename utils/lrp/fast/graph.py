"""How the fast engine walks a model: declarative descriptions, turned into a tree of nodes.

Three registries, all keyed by the exact module type (a subclass may compute something else):

* ``FAMILIES``: a model class and the order in which its ``forward`` calls its children
  (names of children, or a module instance for an anonymous step such as ``torch.flatten``);
  ``nn.Sequential`` is walked through its children;
* ``BLOCKS``: residual blocks: the branch, the shortcut and what follows the sum;
* ``DENSE_BLOCKS``: dense blocks (DenseNet): each layer reads the concatenation of the block input
  and all earlier layers' outputs, the block returns the concatenation of all;
* ``LEAVES``: a leaf module type and the function making its node.

A model that contains a module type in none of them is not supported (the caller falls back to
zennit). New architectures are added with :func:`register_family` / :func:`register_block`.
"""
import functools
from dataclasses import dataclass

from torch import nn

from models.densenet import ExplicitDenseNet
from models.pooling import MaxPool2d as ChannelsLastMaxPool2d
from models.tiny import TinyResNet, TinyVGG
from utils.lrp.canonizers import sibling_merge_pairs
from utils.lrp.fast import rules
from utils.lrp.fast.nodes import DenseBlock, Residual, Sequence, Unsupported

FAMILIES = {
    TinyVGG: ("features", "avgpool", "classifier"),
    TinyResNet: ("conv1", "bn1", "relu", "layer1", "layer2", "layer3", "avgpool", nn.Flatten(), "fc"),
    ExplicitDenseNet: ("features", "avgpool", nn.Flatten(), "classifier"),
}


try:  # the ECG models are newer than this engine: describe them when they are there
    from models.ecg import TinyCNN1d, XResNet1d
except ImportError:  # pragma: no cover
    pass
else:
    FAMILIES[TinyCNN1d] = ("features", "avgpool", "classifier")
    FAMILIES[XResNet1d] = ("stem", "layer1", "layer2", "layer3", "layer4", "avgpool", nn.Flatten(), "fc")


@dataclass(frozen=True)
class Block:
    branch: tuple  # children applied to the block input
    shortcut: str  # child applied to the block input for the sum (identity when it is None)
    post: tuple  # children applied to the sum


BLOCKS = {}
DENSE_BLOCKS = set()  # module types computing torchvision's _DenseBlock (their children are the layers)


@functools.cache
def _describe_torchvision():
    """torchvision's VGG, ResNet, DenseNet blocks. Described when a model uses torchvision modules (it
    is imported then anyway), so a process with other models never pays seconds for importing it."""
    from torchvision.models import VGG, ResNet
    from torchvision.models.densenet import _DenseBlock, _DenseLayer, _Transition
    from torchvision.models.resnet import BasicBlock, Bottleneck

    FAMILIES[VGG] = ("features", "avgpool", nn.Flatten(), "classifier")
    FAMILIES[ResNet] = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool",
                        nn.Flatten(), "fc")
    BLOCKS[BasicBlock] = Block(("conv1", "bn1", "relu", "conv2", "bn2"), "downsample", ("relu",))
    BLOCKS[Bottleneck] = Block(("conv1", "bn1", "relu", "conv2", "bn2", "relu", "conv3", "bn3"), "downsample",
                               ("relu",))
    # a dense layer applied to the concatenation its block gives it (dropout: the identity in eval mode)
    FAMILIES[_DenseLayer] = ("norm1", "relu1", "conv1", "norm2", "relu2", "conv2")
    FAMILIES[_Transition] = ("norm", "relu", "conv", "pool")
    DENSE_BLOCKS.add(_DenseBlock)

# Blocks opting into utils.lrp.composites' explicit-residual protocol compute act(branch + shortcut)
EXPLICIT_RESIDUAL = Block(("branch",), "shortcut", ("act",))

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
# zennit's ``Linear`` type: what its BatchNorm merge and its first-layer rule look for
LINEAR_TYPES = (*CONVS, nn.Linear, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.ReLU6, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid)
LEAVES = {
    **{t: lambda builder, name, m: builder.affine(rules.Conv, name, m) for t in CONVS},
    nn.Linear: lambda builder, name, m: builder.affine(rules.Linear, name, m),
    **{t: lambda builder, name, m: builder.batch_norm(name, m) for t in BATCH_NORMS},
    **{t: lambda builder, name, m: rules.Pass(name, m) for t in ACTIVATIONS},
    **{t: lambda builder, name, m: rules.Identity(name, m)
       for t in (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)},
    nn.Flatten: lambda builder, name, m: rules.Flatten(name, m),
    **{t: lambda builder, name, m: rules.MaxPool(name, m)
       for t in (nn.MaxPool1d, nn.MaxPool2d, ChannelsLastMaxPool2d, nn.MaxPool3d)},
    **{t: lambda builder, name, m: rules.AvgPool(name, m)
       for t in (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, *rules.ADAPTIVE_AVG)},
}

# What zennit's canonizers (utils.lrp.composites.CANONIZERS) do to a model: (which BatchNorms are merged
# into which linear layer, rule for the residual sum, what a BatchNorm that is not merged becomes:
# "gradient" (no rule) or "layer" (a depthwise convolution with the convolutions' rule))
CANONIZERS = {
    None: (None, "gradient", "gradient"),
    "vgg": ("sequential", "gradient", "gradient"),
    "merge_batchnorm": ("sequential", "gradient", "gradient"),
    "resnet": ("sequential", "norm", "gradient"),
    "xresnet1d": ("sequential", "norm", "gradient"),  # SequentialMergeBatchNorm + ExplicitResidualCanonizer
    "densenet": ("sibling", "gradient", "layer"),  # SiblingMergeBatchNorm + BatchNormAsConvolution
}
# composite name -> (does the first linear layer get the flat rule?, rule of the other convolutions)
COMPOSITES = {"epsilon_plus_flat": (True, "zplus"), "epsilon_plus": (False, "zplus"),
              "epsilon_alpha2_beta1_flat": (True, "alpha_beta"), "epsilon": (False, "epsilon")}


def register_family(model_class, steps):
    """Describe the top-level ``forward`` of ``model_class`` (see ``FAMILIES``)."""
    FAMILIES[model_class] = tuple(steps)


def register_block(block_class, branch, shortcut, post):
    """Describe a residual block ``post(branch(x) + shortcut(x))`` (see ``BLOCKS``)."""
    BLOCKS[block_class] = Block(tuple(branch), shortcut, tuple(post))


def build_graph(model, composite, canonizer):
    """The root node for ``model`` under zennit's ``composite`` + ``canonizer``; raises
    :class:`Unsupported` naming the first thing it cannot handle."""
    if composite not in COMPOSITES:
        raise Unsupported(f"composite '{composite}'")
    if canonizer not in CANONIZERS:
        raise Unsupported(f"canonizer '{canonizer}'")
    hooked = find_hook(model)
    if hooked:
        raise Unsupported(hooked)
    if any(type(module).__module__.startswith("torchvision.") for module in model.modules()):
        _describe_torchvision()
    return _Builder(model, composite, canonizer).build()


def find_hook(model):
    """Where ``model`` has hooks (e.g. a P-ClArC projection), or ``None``. The graph replays the
    modules' own computations, so it would silently skip what a hook adds."""
    from torch.nn.modules import module as nn_module

    kinds = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    if any(getattr(nn_module, f"_global{kind}", None) for kind in kinds):
        return "a global module hook"
    for name, module in model.named_modules():
        if any(getattr(module, kind, None) for kind in kinds):
            return f"a hook on {type(module).__name__} '{name}'"
    return None


class _Builder:
    def __init__(self, model, composite, canonizer):
        self.model = model
        merge, self.sum_rule, self.lone_batch_norm = CANONIZERS[canonizer]
        self.names = {module: name for name, module in model.named_modules()}
        # zennit's SequentialMergeBatchNorm pairs a BatchNorm with the leaf module registered just
        # before it (SiblingMergeBatchNorm: within one parent); we merge the same pairs, and check below
        # that they are also adjacent in the forward pass (otherwise zennit would merge across other
        # computations).
        self.pairs = {"sequential": _merge_pairs, "sibling": sibling_merge_pairs}[merge](model) if merge else {}
        self.merged_into = {}  # BatchNorm module -> the node of the layer it is merged into
        # SpecialFirstLayerMapComposite: the first conv/linear layer in registration order is flat
        self.first = None
        flat_first, self.conv_rule = COMPOSITES[composite]
        if flat_first:
            self.first = next((m for m in model.modules() if isinstance(m, LINEAR_TYPES)), None)
        self.leaf_sequence = []  # leaves in forward order, for the adjacency check

    def build(self):
        root = self.node(self.model)
        for linear, bn in self.pairs.items():
            if not any(a is linear and b is bn for a, b in zip(self.leaf_sequence, self.leaf_sequence[1:])):
                raise Unsupported(f"BatchNorm '{self.names[bn]}' is not applied right after "
                                  f"'{self.names[linear]}'")
        _mark_recorded(root)
        root.bind(False)
        return root

    def node(self, module):
        name, kind = self.names.get(module), type(module)
        if kind in FAMILIES:
            return Sequence(name, [self.step(module, step) for step in FAMILIES[kind]])
        if kind is nn.Sequential:
            return Sequence(name, [self.node(child) for child in module])
        if kind in DENSE_BLOCKS:
            return DenseBlock(name, [self.node(layer) for layer in module.children()])
        if kind in BLOCKS or getattr(kind, "explicit_residual", False):
            block = BLOCKS.get(kind, EXPLICIT_RESIDUAL)
            branch = Sequence(None, [self.step(module, step) for step in block.branch])
            shortcut = getattr(module, block.shortcut, None)
            shortcut = None if shortcut is None else self.node(shortcut)
            post = Sequence(None, [self.step(module, step) for step in block.post])
            return Residual(name, branch, shortcut, post, self.sum_rule)
        if kind in LEAVES:
            self.leaf_sequence.append(module)
            return LEAVES[kind](self, name, module)
        raise Unsupported(f"{kind.__name__} at '{name}'")

    def step(self, parent, step):
        if isinstance(step, nn.Module):  # an anonymous computation of the forward itself
            self.leaf_sequence.append(step)
            return LEAVES[type(step)](self, None, step)
        return self.node(getattr(parent, step))

    def batch_norm(self, name, module):
        merged = self.merged_into.get(module)
        if merged is None and self.lone_batch_norm == "layer":
            return rules.BatchNormLayer(name, module, self.conv_rule)
        return rules.BatchNorm(name, module, merged)

    def affine(self, node_class, name, module):
        if module.weight is None:
            raise Unsupported(f"{type(module).__name__} without weight at '{name}'")
        rule = "flat" if module is self.first else (self.conv_rule if node_class is rules.Conv else "epsilon")
        node = node_class(name, module, rule, batch_norm=self.pairs.get(module))
        if node.batch_norm is not None:
            self.merged_into[node.batch_norm] = node
        return node


def _merge_pairs(model):
    """``{linear: batch_norm}`` exactly as zennit's ``SequentialMergeBatchNorm.apply`` finds them:
    consecutive leaves (modules without children, depth-first in registration order), a linear
    layer then a BatchNorm."""
    def leaves(module):
        children = list(module.children())
        if not children:
            yield module
        for child in children:
            yield from leaves(child)

    found = list(leaves(model))
    return {a: b for a, b in zip(found, found[1:]) if isinstance(a, LINEAR_TYPES) and isinstance(b, BATCH_NORMS)}


def _mark_recorded(root):
    """crp records a module's output from its last call: flag that occurrence, and give every
    node the set of recorded names below it (used for start layers and condition cuts)."""
    last = {}

    def visit(node):
        for child in node.children():
            visit(child)
        if node.name is not None:  # post-order = order in which outputs are produced
            last.pop(node.name, None)
            last[node.name] = node

    visit(root)
    for node in last.values():
        node.records = True

    def collect(node):
        names = set()
        for child in node.children():
            names |= collect(child)
        if node.records:
            names.add(node.name)
        node.names = frozenset(names)
        return names

    collect(root)
    root.output_order = list(last)  # recorded names in the order their outputs are produced
