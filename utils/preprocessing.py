"""Preprocessing: per-sample activations, relevances, heatmaps and outputs of a whole split.

One forward and one LRP backward pass per batch (through :func:`utils.lrp.get_attributor`) record
every inspectable layer of the model; the pooled values are appended to the HDF5 store of
:mod:`utils.feature_store` batch by batch, so memory stays bounded and a killed run continues from
its last whole batch. Because batches always start at multiples of ``batch_size`` and the model is
in eval mode, a resumed run writes exactly the rows an uninterrupted run would.

Under ``torchrun`` each rank computes a contiguous run of whole batches into its own shard file
(resumable in the same way) and rank 0 merges the shards into the store a single process writes:
every sample is computed in the same batch as in one process, so the merged file is identical.
"""
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from models import get_model_spec
from utils.distributed import DistContext, get_context, training_device
from utils.errors import UserError
from utils.feature_store import StoreWriter, merge_shards, remove_shards, shard_paths, store_path
from utils.layout import POOLINGS, channel_axis, channels_second
from utils.locks import folder_lock
from utils.lrp.attribution import get_attributor
from utils.paths import step_dir
from utils.missing_checkpoint import require_checkpoint
from utils.registry import Registry

EPS = 1e-12


def layer_features(activation, relevance, axis=1) -> dict:
    """The five stored features of one layer (see ``utils.feature_store``), each (N, C) float32.

    ``rel`` is the per-channel relevance sum over the layer's total absolute relevance, so it is
    comparable between samples whatever the logit's magnitude.
    """
    act = channels_second(activation.float(), axis)
    rel = channels_second(relevance.float(), axis)
    # the positive part's max and mean from the sums already needed (max(r, 0) = (r + |r|) / 2),
    # without a clamped copy of the layer: these reductions are most of preprocessing's overhead
    per_channel = rel.sum(-1)
    magnitude = rel.abs().sum(-1)
    return {
        **{mode: reduce(act) for mode, reduce in POOLINGS.items()},  # the corrections' and TCAV's pooling too
        "rel": per_channel / (magnitude.sum(1, keepdim=True) + EPS),
        "rels_max": rel.amax(-1).clamp(min=0),
        "rels_mean": (per_channel + magnitude) / (2 * rel.shape[-1]),
    }


def input_heatmap(heatmap, size=None):
    """Input relevance summed over input channels; optionally summed into ``size`` bins per axis.

    Downsampling sums relevance over blocks (average pooling times the block area), so a stored
    heatmap keeps the total relevance of the full-resolution one. Works for (N, C, H, W) images
    and (N, C, T) signals.
    """
    summed = heatmap.float().sum(1, keepdim=True)
    if size is None:
        return summed[:, 0]
    spatial = summed.shape[2:]
    out = (size,) * len(spatial)
    pooled = F.adaptive_avg_pool2d(summed, out) if len(spatial) == 2 else F.adaptive_avg_pool1d(summed, out)
    return pooled[:, 0] * (float(np.prod(spatial)) / float(np.prod(out)))


# --- which class's relevance is explained ------------------------------------------------------
def _label_targets(labels, logits_fn):
    labels = torch.as_tensor(labels)
    if labels.dim() == 2:
        # multi-label: explain the positive label the model believes most (any label if none)
        logits = logits_fn()
        masked = torch.where(labels.bool(), logits, torch.full_like(logits, -torch.inf))
        return torch.where(labels.bool().any(1), masked.argmax(1), logits.argmax(1))
    return labels.long()


def _prediction_targets(labels, logits_fn):
    return logits_fn().argmax(1)


TARGET_RULES = Registry("heatmap target", {"label": _label_targets, "prediction": _prediction_targets})


# --- the store's identity ----------------------------------------------------------------------
def fingerprint(config, split, n_samples) -> str:
    """Hash of everything that determines a store's content; a resumed file must match it.

    Includes the checkpoint's bytes, so a retrained model never continues an old file.
    """
    keys = ("dataset_name", "data_paths", "img_size", "dataset_options", "artifacts", "artifact_type",
            "attacked_classes", "p_artifact", "seed", "model_name", "batch_size", "relevance_target",
            "heatmap_size", "lrp_backend")
    content = {k: getattr(config, k) for k in keys}
    content.update(split=split, n_samples=n_samples, ckpt=_file_digest(config.ckpt_path))
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _file_digest(path):
    if not path:
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _existing_state(path):
    """``(complete, fingerprint)`` of a store on disk, or ``None`` if there is none."""
    if not Path(path).exists():
        return None
    try:
        with h5py.File(path, "r") as handle:
            return bool(handle.attrs.get("complete")), handle.attrs.get("fingerprint")
    except BlockingIOError:
        # HDF5's own file lock: another process has the store open (never a crash): leave it alone
        raise UserError(f"{path} is open in another process; close it (or wait for that run) and try again") from None
    except OSError:  # a file truncated by a crash while its header was written
        return False, None


@dataclass
class SplitPlan:
    """What one split's store must hold: where, how many rows, of which settings."""

    split: str
    path: Path
    n_samples: int
    meta: dict
    force: bool  # discard what is on disk
    reusable: bool  # a finished store of these settings is there

    @property
    def stamp(self):
        return self.meta["fingerprint"]


def shard_range(n_samples, batch_size, context: DistContext):
    """``(start, stop)`` rows of this rank's shard: a contiguous run of whole batches, so every
    sample is computed in the same batch as in a single-process run."""
    batches = context.shard(range(-(-n_samples // batch_size)))
    return min(batches.start * batch_size, n_samples), min(batches.stop * batch_size, n_samples)


@dataclass
class SplitResult:
    split: str
    path: Path
    n_samples: int
    n_computed: int
    seconds: float
    accuracy: float | None = None


class Preprocessor:
    """Computes the store of one or more splits for a model and an attributor.

    ``on_batch(n_done)`` is called after every written batch (progress hooks, tests that simulate
    an interruption).
    """

    def __init__(self, config, model, device="cpu", on_batch=None, progress=True):
        self.config, self.model, self.device = config, model.to(device).eval(), torch.device(device)
        self.spec = get_model_spec(config.model_name)
        self.layers = list(self.spec.layer_names)
        self.axis = channel_axis(self.spec)
        self.attributor = get_attributor(model, backend=config.lrp_backend)
        self.target_rule = TARGET_RULES[config.relevance_target]
        self.on_batch, self.progress = on_batch, progress

    def plan(self, dataset, split, force=False) -> SplitPlan:
        """Check the store on disk against the settings; refuse a finished store of other settings."""
        path = store_path(self.config, split)
        n = len(dataset)
        stamp = fingerprint(self.config, split, n)
        state = _existing_state(path)
        if state is not None and state[1] != stamp:
            if state[0] and not force:
                raise UserError(f"{path} was computed with other settings (model, checkpoint, data or "
                                "preprocessing keys); pass --force_recompute to replace it")
            force = True  # an incomplete file of other settings must not be continued
        meta = {"model_name": self.config.model_name, "dataset_name": self.config.dataset_name, "split": split,
                "layer_names": self.layers, "relevance_target": self.config.relevance_target,
                "fingerprint": stamp, "channel_axis": self.axis}
        return SplitPlan(split, path, n, meta, force, reusable=state == (True, stamp) and not force)

    def run_split(self, dataset, split, force=False) -> SplitResult:
        plan = self.plan(dataset, split, force)
        start_time = time.time()
        writer = StoreWriter(plan.path, plan.n_samples, plan.meta, force=plan.force)
        first = writer.n_done
        try:
            if not writer.complete:
                self._fill(writer, dataset, split)
                writer.finish()
        finally:
            writer.close()
        return SplitResult(split, plan.path, plan.n_samples, plan.n_samples - first, time.time() - start_time,
                           _store_accuracy(plan.path))

    # --- one rank's shard under torchrun ---------------------------------------------------------
    def open_shard(self, plan, context) -> int:
        """Create or resume this rank's shard of ``plan``; returns the rows it already holds."""
        partial, finished = shard_paths(plan.path, context.rank, context.world_size)
        start, stop = shard_range(plan.n_samples, self.config.batch_size, context)
        if finished.exists():
            if not plan.force and _existing_state(finished) == (True, plan.stamp):
                return stop - start
            finished.unlink()
        state = _existing_state(partial)
        force = plan.force or (state is not None and state[1] != plan.stamp)
        writer = StoreWriter(partial, stop - start, self._shard_meta(plan, start, stop), force=force)
        writer.close()
        return writer.n_done

    def fill_shard(self, dataset, plan, context):
        """Compute the rest of this rank's shard (opened by :meth:`open_shard`) and mark it finished."""
        partial, finished = shard_paths(plan.path, context.rank, context.world_size)
        if finished.exists():
            return
        start, stop = shard_range(plan.n_samples, self.config.batch_size, context)
        writer = StoreWriter(partial, stop - start, self._shard_meta(plan, start, stop))
        try:
            if not writer.complete:
                self._fill(writer, dataset, plan.split, start, stop)
                writer.finish()
        finally:
            writer.close()
        os.replace(partial, finished)  # rank 0 merges finished shards only

    @staticmethod
    def _shard_meta(plan, start, stop):
        return {**plan.meta, "shard_start": start, "shard_stop": stop}

    def _fill(self, writer, dataset, split, start=0, stop=None):
        """Rows ``start + writer.n_done`` to ``stop`` (default: the end of the split)."""
        stop = len(dataset) if stop is None else stop
        augment, dataset.augment = dataset.augment, False  # the store describes the data as it is
        try:
            position = start + writer.n_done
            loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, range(position, stop)),
                                                 batch_size=self.config.batch_size, shuffle=False,
                                                 num_workers=self.config.num_workers,
                                                 pin_memory=self.device.type == "cuda")
            bar = tqdm(loader, desc=f"preprocessing {split}", disable=not self.progress,
                       initial=writer.n_done // self.config.batch_size,
                       total=-(-(stop - start) // self.config.batch_size))
            for x, y in bar:
                rows = self.batch_rows(x, y)
                count = len(x)
                rows["sample_index"] = np.arange(position, position + count)
                rows["sample_ids"] = np.asarray([dataset.sample_ids[i] for i in range(position, position + count)])
                writer.append(rows)
                position += count
                if self.on_batch is not None:
                    self.on_batch(position)
        finally:
            dataset.augment = augment

    def batch_rows(self, x, y) -> dict:
        """Everything stored for one batch, as numpy arrays keyed by their store path."""
        x = x.to(self.device)
        targets = self.target_rule(y, lambda: self._logits(x)).to(self.device)
        result = self.attributor.attribute(x, targets=targets, record_layers=self.layers)
        rows = {"labels": np.asarray(y), "outputs": _numpy(result.outputs),
                "targets": _numpy(targets).astype(np.int64),
                "heatmaps": _numpy(input_heatmap(result.heatmap, self.config.heatmap_size))}
        for layer in self.layers:
            features = layer_features(result.activations[layer], result.relevances[layer], self.axis)
            rows.update({f"layers/{layer}/{kind}": _numpy(value) for kind, value in features.items()})
        return rows

    @torch.no_grad()
    def _logits(self, x):
        return self.model(x).float()


def _numpy(tensor):
    return tensor.detach().float().cpu().numpy() if tensor.is_floating_point() else tensor.detach().cpu().numpy()


def _store_accuracy(path):
    with h5py.File(path, "r") as handle:
        labels, outputs = handle["labels"][:], handle["outputs"][:]
    if labels.ndim != 1:
        return None
    return float((outputs.argmax(1) == labels).mean()) if len(labels) else None


def preprocess(config, splits=None, force=False, on_batch=None, progress=True):
    """Preprocess ``splits`` (default: the config's ``splits``) of the config's data and model.

    Returns one :class:`SplitResult` per split. Finished stores of the same settings are reused.
    Under ``torchrun`` the ranks share the work (see :func:`preprocess_distributed`) and only
    rank 0 returns results (the other ranks return an empty list).
    """
    from datasets import get_dataset_from_config
    from models import get_model_for_config

    if not config.ckpt_path:
        raise UserError("'ckpt_path': preprocessing needs the checkpoint of the model under audit")
    require_checkpoint(config)
    context = get_context()
    data = get_dataset_from_config(config)
    in_channels = data.in_channels
    model = get_model_for_config(config, data.n_classes, in_channels=in_channels)
    runner = Preprocessor(config, model, training_device(context, config.device), on_batch=on_batch,
                          progress=progress and context.is_main)
    names = splits or config.splits
    # one run per store folder: a second run would continue (or replace) the files this one writes
    with folder_lock(step_dir(config, "preprocessing"), enabled=context.is_main):
        if context.enabled:
            return preprocess_distributed(runner, data, names, force, context)
        return [runner.run_split(data.get(split), split, force=force) for split in names]


# how often rank 0 looks for the other ranks' finished shards
SHARD_POLL_SECONDS = 0.5


def preprocess_distributed(runner, data, splits, force, context):
    """Every rank computes its shard of each split; rank 0 waits for all shards and merges them.

    Ranks meet only once, right after opening their shards (when they are at the same point):
    rank 0 then checks that it sees every shard and learns how many rows each already held. After
    that nobody waits in a collective, so a rank whose shards were finished by an earlier run
    is not stopped by the collective timeout while the others catch up; a rank that dies stops
    the run through ``torchrun``, which ends every other rank.
    """
    start_time = time.time()
    plans = [runner.plan(data.get(split), split, force) for split in splits]
    todo = [plan for plan in plans if not plan.reusable]
    held = context.gather({plan.split: runner.open_shard(plan, context) for plan in todo})
    if context.is_main:
        _check_shards_visible(todo, context.world_size)
    for plan in todo:
        runner.fill_shard(data.get(plan.split), plan, context)
    if not context.is_main:
        return []
    results = []
    for plan in plans:
        computed = 0
        if not plan.reusable:
            shards = [shard_paths(plan.path, rank, context.world_size)[1] for rank in range(context.world_size)]
            _wait_for(shards)
            merge_shards(plan.path, shards, plan.n_samples, plan.meta, runner.config.batch_size)
            remove_shards(plan.path)
            computed = plan.n_samples - sum(rows[plan.split] for rows in held)
        results.append(SplitResult(plan.split, plan.path, plan.n_samples, computed, time.time() - start_time,
                                   _store_accuracy(plan.path)))
    return results


def _check_shards_visible(plans, world_size):
    for plan in plans:
        for rank in range(world_size):
            partial, finished = shard_paths(plan.path, rank, world_size)
            if not (partial.exists() or finished.exists()):  # partial first: it may be renamed meanwhile
                raise UserError(f"rank 0 cannot see rank {rank}'s shard {finished.name} in {finished.parent}; with "
                                "several machines 'output_dir' must be a folder every machine shares")


def _wait_for(paths):
    missing = [path for path in paths if not path.exists()]
    if missing:
        print(f"waiting for {len(missing)} other rank(s) to finish their shards of {missing[0].parent}",
              file=sys.stderr)
    while missing:
        time.sleep(SHARD_POLL_SECONDS)
        missing = [path for path in missing if not path.exists()]
