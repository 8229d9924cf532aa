"""The two models every re-evaluation step compares: the original and the corrected one.

Both are loaded from their checkpoints with :func:`load_corrected_model`, so the corrected model is
exactly what the mitigation step saved (P-ClArC's hook rebuilt from the checkpoint, not reused
from memory). Results of the original model are cached per (checkpoint, settings):
:mod:`utils.evaluation.cache`.
"""
from model_training.corrections.loading import load_corrected_model
from model_training.corrections.run import corrected_checkpoint_path
from utils.errors import UserError
from utils.lrp.attribution import auto_backend_name, sees_forward_hooks


def load_original(config, device):
    if not config.ckpt_path:
        return None  # ISNet trained from scratch has no original model
    return load_corrected_model(config.ckpt_path, device)


def load_corrected(config, device):
    path = corrected_checkpoint_path(config)
    if not path.is_file():
        raise UserError(f"no corrected model at {path}; run experiments.mitigation_experiments."
                        f"start_model_correction --config_file {config._source_file or '<config>'} first")
    return load_corrected_model(path, device)


def lrp_backend_for(model, configured):
    """P-ClArC lives in a forward hook: only a backend that propagates through the model's own forward
    pass sees it (zennit; the conservative ViT backend), not the fast graph."""
    if getattr(model, "correction_hook", None) is None:
        return configured
    chosen = auto_backend_name(model) if configured == "auto" else configured
    return chosen if sees_forward_hooks(chosen) else "zennit"
