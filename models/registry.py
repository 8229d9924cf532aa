"""Model registry in the style of timm: ``@register_model`` adds a spec, ``get_model`` builds it.

A spec bundles what later steps need to know about an architecture besides its weights:
the ordered list of inspectable layers and how to compute LRP for it (composite + canonizers).
"""
import functools
from dataclasses import dataclass, field
from typing import Callable

from utils.registry import Registry


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable  # builder(n_classes, img_size, in_channels) -> nn.Module
    # inspectable layers, input to output; or a function giving them, called on first use (a family
    # whose library takes seconds to import is then imported only by a process that uses it)
    layers: tuple[str, ...] | Callable[[], tuple[str, ...]]
    composite: str = "epsilon_plus_flat"  # key in utils.lrp.composites
    canonizer: str | None = None  # key in utils.lrp.composites (canonizer registry)
    modality: str = "image"  # "image" (N,C,H,W) or "signal" (N,C,T)
    default: str | None = None  # the layer later steps use unless the config says otherwise (None: the last)
    tags: tuple[str, ...] = field(default_factory=tuple)

    @functools.cached_property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(self.layers() if callable(self.layers) else self.layers)

    @property
    def default_layer(self) -> str:
        return self.default or self.layer_names[-1]

    @property
    def explanation(self) -> "ExplanationFamily":
        return EXPLANATION_FAMILIES.get(self.composite, ExplanationFamily())


@dataclass(frozen=True)
class ExplanationFamily:
    """How models of a family are explained, read by every decision that depends on the family: which
    attribution backends ``backend='auto'`` tries (in order), where the channels of the inspectable
    layer outputs are (:mod:`utils.layout`), and whether heatmaps can be trained through (ISNet, RRR
    with LRP explanations; if not, why, for a one-line refusal)."""
    backends: tuple[str, ...] = ("fast", "zennit")
    channel_axis: int = 1  # (N, C, ...) layer outputs; -1: tokens (N, T, D)
    not_differentiable: str | None = None


# keyed by the spec's LRP composite; conv and signal nets use the default row
EXPLANATION_FAMILIES = {
    "vit_conservative": ExplanationFamily(backends=("conservative",), channel_axis=-1,
                                          not_differentiable="no differentiable LRP for transformer attention"),
}


MODELS = Registry("model")


def register_model(name, *, layer_names, composite="epsilon_plus_flat", canonizer=None,
                   modality="image", default_layer=None, tags=()):
    """Decorator: register a builder function under ``name`` (``layer_names``: a tuple, or a function
    returning it)."""

    def decorate(builder):
        layers = layer_names if callable(layer_names) else tuple(layer_names)
        MODELS.register(name, ModelSpec(name, builder, layers, composite, canonizer, modality, default_layer,
                                        tuple(tags)))
        return builder

    return decorate


def list_models():
    return MODELS.names()


def get_model_spec(name) -> ModelSpec:
    return MODELS.get(name)
