"""The two models every re-evaluation step compares: the original and the corrected one.

Both are loaded from their checkpoints with :func:`load_corrected_model`, so the corrected model is
exactly what the mitigation step saved (P-ClArC's hook rebuilt from the checkpoint, not reused
from memory). Results of the original model are cached per (checkpoint, settings): a grid of
corrections of one model evaluates it once.
"""
import hashlib
import json
from pathlib import Path

from model_training.corrections.loading import load_corrected_model
from model_training.corrections.run import corrected_checkpoint_path
from utils.errors import UserError
from utils.io import read_json, write_json
from utils.paths import output_root


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
    """P-ClArC lives in a forward hook: only the autograd-based zennit backend sees it."""
    if getattr(model, "correction_hook", None) is not None and configured in ("auto", "fast"):
        return "zennit"
    return configured


def data_key(config, splits=None):
    """What identifies a config's data for the caches of the original model's results."""
    from datasets.pasted_artifacts import PastedArtifactDataset

    key = {k: getattr(config, k) for k in ("dataset_name", "img_size", "dataset_options", "artifacts", "artifact_type",
                                           "attacked_classes", "p_artifact", "artifact", "seed")}
    if splits is not None and isinstance(splits.test, PastedArtifactDataset):
        # an annotated artifact's subsets are pasted: results cached when it had none (only 'ch') are stale
        key["subsets"] = "pasted"
    return key


def cached_original(config, step, settings, compute):
    """``compute()`` for the original model, cached on disk by checkpoint identity and ``settings``."""
    ckpt = Path(config.ckpt_path)
    stat = ckpt.stat()
    key = json.dumps({"ckpt": str(ckpt.resolve()), "size": stat.st_size, "mtime": stat.st_mtime_ns,
                      "step": step, **settings}, sort_keys=True, default=str)
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    path = output_root(config) / "evaluation" / config.dataset_name / config.model_name / "_original" / f"{step}_{digest}.json"
    if path.is_file():
        return read_json(path)
    result = compute()
    write_json(path, result)
    return result
