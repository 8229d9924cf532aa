"""The retrieval and localization steps as library functions: the entry points under
``experiments/`` and the pipeline both call these with a config object.

:func:`prepare_step` resolves what every such step needs (artifact, layer, data, output folder);
:func:`run_sample_ranking`, :func:`run_localization` and :func:`run_localization_evaluation` do the
step and write its files.
"""
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from datasets.registry import get_dataset_from_config
from models import layer_for_config
from utils.bias.localize import evaluate_localization, localize
from utils.bias.retrieval import run_retrieval, write_csv
from utils.config.audit import AuditConfig
from utils.config.loader import save_resolved_config
from utils.errors import UserError
from utils.io import fsync_dir, write_json
from utils.locks import folder_lock
from utils.paths import step_dir


@dataclass
class StepContext:
    config: AuditConfig
    artifact: str
    layer: str
    splits: object
    out_dir: Path


def prepare_step(config, artifact, step) -> StepContext:
    """Resolve artifact (``artifact`` or the config's) and layer, build the data, create
    ``<step dir>/<artifact>`` with the resolved config in it."""
    artifact = artifact or config.artifact
    if not artifact:
        raise UserError("no artifact given: pass --artifact or set 'artifact' in the config")
    if not artifact.replace("_", "").replace("-", "").isalnum():
        raise UserError(f"--artifact '{artifact}': use letters, digits, '_' or '-' only")
    layer = layer_for_config(config)
    splits = get_dataset_from_config(config)
    out_dir = step_dir(config, step) / artifact
    out_dir.mkdir(parents=True, exist_ok=True)
    save_resolved_config(config, out_dir)
    return StepContext(config, artifact, layer, splits, out_dir)


def run_sample_ranking(ctx) -> dict:
    """Rank samples by a CAV fit on the train split; metrics on the held-out splits (``metrics.json``)."""
    return run_retrieval(ctx.config, ctx.splits, ctx.layer, ctx.artifact, ctx.out_dir)


def relocalize(ctx):
    """Localize ``ctx.artifact`` into ``ctx.out_dir``, replacing an earlier run.

    The earlier ``index.json`` is removed (durably) before the first mask is overwritten, and the new one
    is written last and atomically by :func:`utils.bias.localize.localize`: a run killed midway leaves no
    index, so no reader ever takes a mix of old and new masks for a result. The caller holds the folder's
    lock (:func:`utils.locks.folder_lock`).
    """
    index = ctx.out_dir / "index.json"
    if index.exists():
        os.unlink(index)
        fsync_dir(ctx.out_dir)
    return localize(ctx.config, ctx.splits, ctx.layer, ctx.artifact, ctx.out_dir)


def run_localization(ctx) -> dict:
    """Heatmaps and masks of the artifact's samples; returns the index (``index.json``)."""
    with folder_lock(ctx.out_dir):
        return relocalize(ctx)


def run_localization_evaluation(ctx, relocalize_first=False) -> dict:
    """IoU and artifact relevance of the localization against ground-truth masks (``evaluation.json``,
    per sample ``evaluation.csv``); localizes first when asked or when there is no result yet."""
    with folder_lock(ctx.out_dir):
        if relocalize_first or not (ctx.out_dir / "index.json").is_file():
            relocalize(ctx)
        rows, summary = evaluate_localization(ctx.config, ctx.splits, ctx.artifact, ctx.out_dir)
        write_csv(ctx.out_dir / "evaluation.csv", pd.DataFrame(rows))
        write_json(ctx.out_dir / "evaluation.json", summary)
    return summary
