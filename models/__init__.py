"""Model registry: ``get_model(name, n_classes, ckpt_path=None, ...)``.

Importing this package registers every model family.
"""
from pathlib import Path

import torch
from torch import nn

from models.pooling import pool_in_channels_last
from models.registry import ModelSpec, get_model_spec, list_models, register_model
from models import tiny, vgg, resnet, densenet, vit, ecg  # noqa: F401  (registration side effects)
from utils.checkpoint import load_checkpoint, load_weights
from utils.device import trained_memory_format, use_memory_format
from utils.errors import UserError
from utils.missing_checkpoint import require_checkpoint

__all__ = ["get_model", "get_model_for_config", "get_model_spec", "layer_for_config", "list_models",
           "register_model", "ModelSpec"]


def get_model(name, n_classes, ckpt_path=None, img_size=64, in_channels=3, pretrained_weights=None):
    """Build a registered model; optionally load a checkpoint or a local weights file.

    ``ckpt_path`` is one of our checkpoints (refused if it belongs to another architecture or
    class count), loaded in the memory layout it was trained in; ``pretrained_weights`` is a plain local state dict (e.g. ImageNet weights the
    user downloaded), loaded non-strictly without the classification head. Nothing is downloaded.
    """
    spec = get_model_spec(name)
    model = spec.builder(n_classes=n_classes, img_size=img_size, in_channels=in_channels)
    _disable_inplace(model)
    pool_in_channels_last(model)  # the same numbers, faster on the CPU (models.pooling)
    if pretrained_weights:
        _load_backbone_weights(model, pretrained_weights)
    if ckpt_path:
        checkpoint = load_checkpoint(ckpt_path)
        if checkpoint.get("model_name") != name or checkpoint.get("n_classes") != n_classes:
            raise UserError(
                f"checkpoint {ckpt_path} is for model '{checkpoint.get('model_name')}' with "
                f"{checkpoint.get('n_classes')} classes, expected '{name}' with {n_classes} classes")
        load_weights(model, checkpoint["model_state_dict"], ckpt_path)
        use_memory_format(model, trained_memory_format(checkpoint))
    model.model_name = name
    model.eval()
    return model


def _disable_inplace(model):
    # In-place activations overwrite tensors that hooks and LRP still need.
    for module in model.modules():
        if hasattr(module, "inplace"):
            module.inplace = False


def _load_backbone_weights(model, path):
    path = Path(path)
    if not path.is_file():
        raise UserError(f"pretrained_weights: file not found: {path.resolve()}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file
        raise UserError(f"pretrained_weights: cannot read {path}: {type(err).__name__}") from None
    if not isinstance(state, dict):
        raise UserError(f"pretrained_weights: {path} holds no state dict (a mapping of layer names to tensors)")
    state = state.get("model_state_dict", state)
    adapt = getattr(model, "adapt_state_dict", None)  # a family whose published weights use older key names
    if adapt is not None:
        state = adapt(state)
    own = model.state_dict()
    compatible = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not compatible:
        raise UserError(f"pretrained_weights: no tensor in {path} matches the model's layers")
    model.load_state_dict(compatible, strict=False)


def get_model_for_config(config, n_classes, in_channels=3):
    """The model a step's config audits: ``model_name`` with the weights of ``ckpt_path``."""
    require_checkpoint(config)  # a missing checkpoint: the error names the command that trains it
    return get_model(config.model_name, n_classes, ckpt_path=config.ckpt_path, img_size=config.img_size,
                     in_channels=in_channels)


def layer_for_config(config, key="layer_name"):
    """The config's ``key`` (e.g. ``neuron_layer_name``), else its ``layer_name``, else the model's
    default layer; validated against the model."""
    spec = get_model_spec(config.model_name)
    layer = getattr(config, key, None) or config.layer_name or spec.default_layer
    if layer not in spec.layer_names:
        named = key if getattr(config, key, None) else "layer_name"
        raise UserError(f"'{named}': '{layer}' is not an inspectable layer of {config.model_name}; "
                        f"valid: {', '.join(spec.layer_names)}")
    return layer
