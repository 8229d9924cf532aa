"""Results of an original (uncorrected) model, cached on disk per (checkpoint, settings): a grid of
corrections of one model, and every run of a sweep, evaluate it once. Used by the mitigation step
(validation numbers for the clean budget) and by the re-evaluation steps.
"""
import hashlib
import json
from pathlib import Path

from utils.io import read_json, write_json
from utils.paths import output_root


def data_key(config, splits=None):
    """What identifies a config's data for the caches of the original model's results."""
    from datasets.pasted_artifacts import PastedArtifactDataset  # the data layer, not needed at import

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
