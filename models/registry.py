"""Model registry in the style of timm: ``@register_model`` adds a spec, ``get_model`` builds it.

A spec bundles what later steps need to know about an architecture besides its weights:
the ordered list of inspectable layers and how to compute LRP for it (composite + canonizers).
"""
from dataclasses import dataclass, field
from typing import Callable

from utils.errors import UserError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable  # builder(n_classes, img_size, in_channels) -> nn.Module
    layer_names: tuple[str, ...]  # inspectable layers, input to output
    composite: str = "epsilon_plus_flat"  # key in utils.lrp.composites
    canonizer: str | None = None  # key in utils.lrp.composites (canonizer registry)
    modality: str = "image"  # "image" (N,C,H,W) or "signal" (N,C,T)
    default_layer: str | None = None  # the layer later steps use unless the config says otherwise
    tags: tuple[str, ...] = field(default_factory=tuple)


_MODELS: dict[str, ModelSpec] = {}


def register_model(name, *, layer_names, composite="epsilon_plus_flat", canonizer=None,
                   modality="image", default_layer=None, tags=()):
    """Decorator: register a builder function under ``name``."""

    def decorate(builder):
        if name in _MODELS:
            raise ValueError(f"model {name!r} registered twice")
        _MODELS[name] = ModelSpec(name, builder, tuple(layer_names), composite, canonizer, modality,
                                  default_layer or layer_names[-1], tuple(tags))
        return builder

    return decorate


def list_models():
    return sorted(_MODELS)


def get_model_spec(name) -> ModelSpec:
    if name not in _MODELS:
        raise UserError(f"unknown model '{name}'; valid names: {', '.join(list_models())}")
    return _MODELS[name]
