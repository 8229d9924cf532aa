"""Load any model checkpoint, corrected or not, as the model it was when it was saved.

Checkpoints of the mitigation step carry ``correction = {method, layer_name, state}``; the method's
``attach`` rebuilds what the weights alone do not hold (the P-ClArC projection hook). A plain
training checkpoint loads as the plain model, so later steps call one function for both.
"""
from models import get_model
from utils.checkpoint import load_checkpoint, load_weights
from utils.device import trained_memory_format, use_memory_format


def load_corrected_model(path, device="cpu"):
    """The model stored at ``path`` (eval mode, in the memory layout it was trained in), with its correction
    re-attached if it has one."""
    from model_training.corrections.base import get_correction_method

    checkpoint = load_checkpoint(path)
    config = checkpoint.get("config") or {}
    model = get_model(checkpoint["model_name"], checkpoint["n_classes"],
                      img_size=checkpoint.get("img_size", config.get("img_size", 64)),
                      in_channels=checkpoint.get("in_channels") or _infer_in_channels(checkpoint["model_state_dict"]))
    load_weights(model, checkpoint["model_state_dict"], path)
    use_memory_format(model, trained_memory_format(checkpoint))
    correction = checkpoint.get("correction")
    if correction:
        model = get_correction_method(correction["method"]).attach(model, correction.get("state") or {},
                                                                   correction["layer_name"])
        model.correction_method = correction["method"]
    model.to(device).eval()
    return model


def _infer_in_channels(state_dict):
    # plain training checkpoints do not record it: the first convolution's weight tells
    for value in state_dict.values():
        if value.dim() >= 3:
            return int(value.shape[1])
    return 3
