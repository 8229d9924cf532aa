"""Model registry in the style of timm: ``@register_model`` adds a spec, ``get_model`` builds it.

A spec bundles what later steps need to know about an architecture besides its weights:
the ordered list of inspectable layers and how to compute LRP for it (composite + canonizers).
"""
import functools
from dataclasses import dataclass, field
from typing import Callable

from utils.errors import UserError


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


_MODELS: dict[str, ModelSpec] = {}


def register_model(name, *, layer_names, composite="epsilon_plus_flat", canonizer=None,
                   modality="image", default_layer=None, tags=()):
    """Decorator: register a builder function under ``name`` (``layer_names``: a tuple, or a function
    returning it)."""

    def decorate(builder):
        if name in _MODELS:
            raise ValueError(f"model {name!r} registered twice")
        layers = layer_names if callable(layer_names) else tuple(layer_names)
        _MODELS[name] = ModelSpec(name, builder, layers, composite, canonizer, modality, default_layer, tuple(tags))
        return builder

    return decorate


def list_models():
    return sorted(_MODELS)


def get_model_spec(name) -> ModelSpec:
    if name not in _MODELS:
        raise UserError(f"unknown model '{name}'; valid names: {', '.join(list_models())}")
    return _MODELS[name]
