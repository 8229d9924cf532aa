"""The preprocessing store: per-sample activations, relevances, heatmaps and outputs in HDF5.

One file per (config, split): ``<output_root>/preprocessing/<dataset>/<model>/<config>/<split>.h5``.

Layout (N samples, K classes, C_l channels of layer l)::

    attrs:  complete (bool), n_samples, model_name, dataset_name, split, layer_names (list),
            relevance_target ("label" | "prediction")
    sample_index   (N,)       int    position in the split
    sample_ids     (N,)       str
    labels         (N,) or (N, K)
    outputs        (N, K)     float32 logits
    targets        (N,)       int    the class whose relevance was computed
    heatmaps       (N, ...)   float32 input relevance summed over input channels (maybe downsampled)
    layers/<l>/cavs_max  (N, C_l)  spatial max of the activation
    layers/<l>/cavs_mean (N, C_l)  spatial mean of the activation
    layers/<l>/rel       (N, C_l)  per-channel relevance sum / sum |R| of the layer
    layers/<l>/rels_max  (N, C_l)  spatial max of the relevance clamped at 0
    layers/<l>/rels_mean (N, C_l)  spatial mean of the relevance clamped at 0

Rows are appended batch by batch (bounded memory). ``complete`` is set only after the last
batch, and readers refuse an incomplete file, so a killed run is never mistaken for a finished
one; :class:`StoreWriter` continues an incomplete file from its last whole batch.

Under ``torchrun`` each rank writes a shard of the same layout beside the store
(``.<split>.rank<r>of<W>.partial.h5``, renamed to ``.<split>.rank<r>of<W>.h5`` when finished, with
``shard_start``/``shard_stop`` attributes); :func:`merge_shards` then writes the store itself.
"""
from pathlib import Path

import h5py
import numpy as np

from utils.errors import UserError
from utils.io import atomic_path
from utils.paths import step_dir

FEATURE_KINDS = ("cavs_max", "cavs_mean", "rel", "rels_max", "rels_mean")
_STR = h5py.string_dtype()


def store_path(config, split) -> Path:
    return step_dir(config, "preprocessing", create=False) / f"{split}.h5"


class StoreWriter:
    """Append batches to a store; resumes an incomplete file where it stopped."""

    def __init__(self, path, n_samples, meta: dict, force=False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if force and self.path.exists():
            self.path.unlink()
        try:
            self.file = h5py.File(self.path, "a")
        except BlockingIOError:  # HDF5's own lock: another process reads or writes it
            raise UserError(f"{self.path} is open in another process; close it (or wait for that run) and try "
                            "again") from None
        if self.file.attrs.get("complete") and not force:
            self.n_done = int(self.file.attrs["n_samples"])
        else:
            self.file.attrs.update({**meta, "n_samples": n_samples, "complete": False})
            # rows of a batch that was being written when the run died are dropped here
            self.n_done = int(self.file.attrs.get("n_written", 0))
            for dataset in self._datasets():
                if dataset.shape[0] > self.n_done:
                    dataset.resize(self.n_done, axis=0)
        self.n_samples = n_samples

    @property
    def complete(self):
        return bool(self.file.attrs.get("complete"))

    def _datasets(self):
        found = []
        self.file.visititems(lambda name, obj: found.append(obj) if isinstance(obj, h5py.Dataset) else None)
        return found

    def append(self, arrays: dict):
        """Append one batch; ``arrays`` maps a dataset path (e.g. ``layers/l/rel``) to (B, ...) arrays."""
        batch = None
        for name, value in arrays.items():
            value = np.asarray(value)
            batch = len(value) if batch is None else batch
            if name not in self.file:
                dtype = _STR if value.dtype.kind in "US" else value.dtype
                self.file.create_dataset(name, shape=(self.n_done,) + value.shape[1:], dtype=dtype,
                                         maxshape=(None,) + value.shape[1:], chunks=(max(1, min(256, batch)),) + value.shape[1:])
            dataset = self.file[name]
            dataset.resize(self.n_done + batch, axis=0)
            dataset[self.n_done:] = value.astype(object) if dataset.dtype == _STR else value
        self.n_done += batch
        self.file.attrs["n_written"] = self.n_done
        self.file.flush()

    def finish(self):
        if self.n_done != self.n_samples:
            raise RuntimeError(f"{self.path}: {self.n_done} of {self.n_samples} rows written")
        self.file.attrs["complete"] = True
        self.file.flush()

    def close(self):
        self.file.close()


# --- shards of a multi-process run --------------------------------------------------------------
def shard_paths(path, rank, world_size):
    """``(in progress, finished)`` paths of ``rank``'s shard of the store at ``path``.

    The world size is part of the name: a run restarted with another number of processes has
    other shard boundaries and must not continue these files.
    """
    path = Path(path)
    stem = f".{path.stem}.rank{rank}of{world_size}"
    return path.with_name(f"{stem}.partial.h5"), path.with_name(f"{stem}.h5")


def remove_shards(path):
    """Delete every shard of the store at ``path`` (any world size, finished or not)."""
    path = Path(path)
    for shard in path.parent.glob(f".{path.stem}.rank*of*.h5"):
        shard.unlink(missing_ok=True)


def merge_shards(path, shards, n_samples, meta, block):
    """Write the store at ``path`` from finished ``shards`` (in sample order), atomically.

    The rows go through :class:`StoreWriter` in blocks of ``block`` (the batch size), so datasets,
    dtypes, chunking and attributes are those a single-process run writes.
    """
    with atomic_path(path) as tmp:
        writer = StoreWriter(tmp, n_samples, meta, force=True)  # force: the empty temporary file is no store
        try:
            for shard in shards:
                with h5py.File(shard, "r") as source:
                    _check_shard(source, shard, meta["fingerprint"], writer.n_done)
                    names = _dataset_names(source)
                    rows = int(source.attrs["n_samples"])
                    for start in range(0, rows, block):
                        writer.append({name: _read_rows(source[name], start, start + block) for name in names})
            writer.finish()
        finally:
            writer.close()


def _check_shard(source, shard, stamp, first_row):
    attrs = source.attrs
    if not attrs.get("complete") or attrs.get("fingerprint") != stamp or int(attrs["shard_start"]) != first_row:
        raise RuntimeError(f"{shard} is not the finished shard starting at row {first_row} of these settings")


def _dataset_names(handle):
    found = []
    handle.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) else None)
    return found


def _read_rows(dataset, start, stop):
    if dataset.dtype == _STR:  # back to str, which StoreWriter stores as it does for a fresh batch
        return dataset.asstr()[start:stop].astype(str)
    return dataset[start:stop]


class FeatureStore:
    """Read-only view of a complete store."""

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"no preprocessing results at {self.path}; run "
                            "`python -m experiments.preprocessing.run_preprocessing` with this config first")
        self.file = h5py.File(self.path, "r")
        if not self.file.attrs.get("complete"):
            raise UserError(f"{self.path} is incomplete (an interrupted run); run preprocessing again to finish it")

    @classmethod
    def for_config(cls, config, split):
        return cls(store_path(config, split))

    @property
    def layer_names(self):
        return list(self.file.attrs["layer_names"])

    @property
    def sample_ids(self):
        return [s.decode() if isinstance(s, bytes) else s for s in self.file["sample_ids"][:]]

    def array(self, name):
        return self.file[name][:]

    def features(self, layer, kind="cavs_max"):
        if kind not in FEATURE_KINDS:
            raise UserError(f"unknown feature kind '{kind}'; valid: {', '.join(FEATURE_KINDS)}")
        key = f"layers/{layer}/{kind}"
        if key not in self.file:
            raise UserError(f"layer '{layer}' is not in {self.path}; stored layers: {', '.join(self.layer_names)}")
        return self.file[key][:]

    def close(self):
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def store_identity(path) -> dict | None:
    """A finished store's identity: the fingerprint of the settings it was computed with (a store's
    content is a function of them); ``None`` for an unfinished or unreadable file."""
    try:
        with h5py.File(path, "r") as handle:
            if not handle.attrs.get("complete"):
                return None
            return {"fingerprint": str(handle.attrs.get("fingerprint")), "n_samples": int(handle.attrs["n_samples"])}
    except OSError:
        return None
