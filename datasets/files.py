"""Shared machinery of the data sets read from disk (ISIC, CheXpert, HyperKvasir, PTB-XL, image folders).

A loader parses its official layout into a :class:`Table` (one row per sample: id, file, label,
split, annotated artifacts) and hands it to :func:`build_splits`, which checks the files, skips
unreadable ones if asked (``skip_corrupt``) and returns one :class:`FileSplit` per split.

Errors a user can fix are one-line :class:`UserError` messages naming the file (and column, or
sample) at fault, and pointing to the README's download section when the data is missing.
"""
import hashlib
import json
import os
import warnings
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from datasets.base import BaseDataset
from utils.errors import UserError

SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _first_line(error):
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


# --- locating and reading the files of a release ------------------------------------------------
def layout_hint(readme_section):
    return f"download and layout: README.md, 'Real data sets' > '{readme_section}'"


def dataset_root(data_paths, dataset, readme_section) -> Path:
    """The data set's root folder: the first entry of ``data_paths``, which must exist. A relative root
    is relative to the current working directory (:func:`utils.paths.data_paths` resolves it once)."""
    where = layout_hint(readme_section)
    if not data_paths:
        raise UserError(f"dataset '{dataset}' needs its root folder: set 'data_paths' in the config or "
                        f"'data_paths.{dataset}' in config_files/local_config.yaml ({where})")
    root = Path(data_paths[0]).expanduser().absolute()
    if not root.is_dir():
        raise UserError(f"dataset '{dataset}': data root not found: {root} ({where})")
    return root


def resolve(root, path) -> Path | None:
    """An option's path: absolute, or relative to the data root; ``None`` stays ``None``. Give it the
    option's value as written, never a path already joined with the root."""
    if path is None:
        return None
    path = Path(path).expanduser()
    return path if path.is_absolute() else root / path


def read_csv(path, columns, readme_section=None, **kwargs) -> pd.DataFrame:
    """Read a CSV file that must exist and hold ``columns``; errors name the file and column.

    ``readme_section``: a release's own file, so a missing one points to the expected layout.
    """
    path = Path(path)
    if not path.is_file():
        hint = f" ({layout_hint(readme_section)})" if readme_section else ""
        raise UserError(f"file not found: {path}{hint}")
    try:
        frame = pd.read_csv(path, **kwargs)
    except Exception as error:  # pandas raises many types for malformed files
        raise UserError(f"{path}: cannot read as CSV: {_first_line(error)}") from None
    for column in columns:
        if column not in frame.columns:
            found = ", ".join(map(str, frame.columns)) or "none"
            raise UserError(f"{path}: missing column '{column}' (columns found: {found})")
    return frame


# Pillow modes of single-channel images with more than 8 bits (16-bit PNG/TIFF, 32-bit integer, float)
HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_COMMON_DEPTHS = (8, 10, 12, 14, 16)


def full_scale(peak, mode, bit_depth=None) -> float:
    """The value that maps to 1.0 in a high-bit-depth grayscale image.

    ``bit_depth`` given: ``2**bit_depth - 1``. Otherwise the image's real range: the smallest common
    detector depth (8, 10, 12, 14 or 16 bits) that holds its largest value, so a 12-bit X-ray stored in
    a 16-bit PNG (values 0-4095) spans [0, 1] instead of a dark tenth of it; a float image already in
    [0, 1] stays as it is. Being per image, this may scale two images of one data set differently when
    their maxima fall in different depths: ``bit_depth`` fixes one scale for all.
    """
    if bit_depth is not None:
        return float(2 ** int(bit_depth) - 1)
    if mode == "F" and peak <= 1.0:
        return 1.0
    return float(next((2**b - 1 for b in _COMMON_DEPTHS if peak <= 2**b - 1), peak))


def read_image(path, size, bit_depth=None) -> torch.Tensor:
    """RGB image ``(3, size, size)`` in [0, 1]; grayscale images are repeated to three channels.

    8-bit images are divided by 255; 16-bit, 12-bit and other high-depth grayscale images (PNG, TIFF)
    by their full scale (:func:`full_scale`), never clipped to 8 bits.
    """
    with Image.open(path) as image:
        if image.mode in HIGH_DEPTH_MODES:
            gray = image.convert("F")
            scale = full_scale(float(np.asarray(gray).max(initial=0.0)), image.mode, bit_depth)
            gray = np.asarray(gray.resize((size, size), Image.BILINEAR), dtype=np.float32) / scale
            return torch.from_numpy(np.clip(gray, 0.0, 1.0)).expand(3, size, size).contiguous()
        image.draft("RGB", (size, size))  # JPEG: decode at a reduced scale, much faster for big files
        image = image.convert("RGB").resize((size, size), Image.BILINEAR)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def read_mask(path, size) -> torch.Tensor:
    """Boolean mask ``(size, size)`` from a PNG (non-zero = inside), resized without interpolation."""
    try:
        with Image.open(path) as image:
            image = image.convert("L").resize((size, size), Image.NEAREST)
    except Exception as error:
        raise UserError(f"cannot read mask {path}: {_first_line(error)}") from None
    return torch.from_numpy(np.asarray(image) > 0)


class ImageReader:
    """Reads image files at one size (the reader of every image data set); ``bit_depth``: the depth of
    high-bit-depth grayscale images (default: each image's real range, see :func:`full_scale`)."""

    modality = "image"

    def __init__(self, size, bit_depth=None):
        if bit_depth is not None and not (isinstance(bit_depth, int) and 1 <= bit_depth <= 32):
            raise UserError(f"dataset_options 'bit_depth': a whole number of bits from 1 to 32, got {bit_depth!r}")
        self.size, self.bit_depth = size, bit_depth

    def __call__(self, path):
        return read_image(path, self.size, self.bit_depth)

    @staticmethod
    def exists(path):
        return Path(path).is_file()


# --- the table of samples and its splits ----------------------------------------------------------
@dataclass
class Table:
    """What a file-based data set knows about its samples, before splitting.

    ``keys`` name the mask files of a sample (``<masks>/<artifact>/<key>.png``,
    ``<foreground>/<key>.png``); ``annotations`` maps an artifact to a boolean array; ``rows`` says
    where each sample was listed, for error messages (e.g. ``labels.csv line 5``; default: its id).
    """

    ids: list
    files: list
    labels: np.ndarray
    split: np.ndarray
    keys: list = None
    annotations: dict = field(default_factory=dict)
    rows: list = None

    def __post_init__(self):
        self.keys = list(self.ids) if self.keys is None else list(self.keys)
        self.rows = [f"sample '{i}'" for i in self.ids] if self.rows is None else list(self.rows)
        self.split, self.labels = np.asarray(self.split, dtype=object), np.asarray(self.labels)

    def __len__(self):
        return len(self.ids)

    def subset(self, keep):
        """The rows where boolean array ``keep`` is true."""
        keep = np.asarray(keep, dtype=bool)
        pick = np.flatnonzero(keep)
        return replace(self, ids=[self.ids[i] for i in pick], files=[self.files[i] for i in pick],
                       labels=self.labels[keep], split=self.split[keep], keys=[self.keys[i] for i in pick],
                       annotations={a: np.asarray(v, dtype=bool)[keep] for a, v in self.annotations.items()},
                       rows=[self.rows[i] for i in pick])


def seeded_split(n, seed=0, strata=None, groups=None, fractions=SPLIT_FRACTIONS):
    """Deterministic train/val/test assignment of ``n`` samples (80/10/10 by default).

    ``groups`` (e.g. patient or image ids) keeps every group in one split; ``strata`` (e.g. labels)
    splits each stratum separately so rare classes reach every split. With ``groups`` the
    assignment depends only on ``seed`` and the sorted group keys, not on file order or the
    training seed, so a test set stays fixed.
    """
    units = np.asarray(groups if groups is not None else np.arange(n))
    unique, first = np.unique(units, return_index=True)
    # a group's stratum is that of its first sample
    unit_strata = np.asarray(strata)[first] if strata is not None else np.zeros(len(unique))
    unit_split = np.empty(len(unique), dtype=object)
    for stratum in np.unique(unit_strata):
        members = np.flatnonzero(unit_strata == stratum)
        rng = np.random.default_rng([seed, zlib.crc32(str(stratum).encode())])
        members = members[rng.permutation(len(members))]
        # val and test rounded half up, train takes the rest: every split is non-empty from 5 units on
        n_val, n_test = (int(f * len(members) + 0.5) for f in fractions[1:])
        n_train = len(members) - n_val - n_test
        unit_split[members[:n_train]] = "train"
        unit_split[members[n_train:n_train + n_val]] = "val"
        unit_split[members[n_train + n_val:]] = "test"
    return unit_split[np.searchsorted(unique, units)]


def split_from_file(path, key_column, ids):
    """Split names per sample from a CSV with ``key_column`` and ``split`` (train/val/test)."""
    frame = read_csv(path, [key_column, "split"], dtype=str)
    bad = sorted(set(frame["split"]) - set(SPLITS))
    if bad:
        raise UserError(f"{path}: column 'split' holds '{bad[0]}'; valid: {', '.join(SPLITS)}")
    mapping = dict(zip(frame[key_column], frame["split"]))
    missing = [i for i in ids if i not in mapping]
    if missing:
        raise UserError(f"{path}: no split for {len(missing)} sample(s), e.g. '{missing[0]}'")
    return np.array([mapping[i] for i in ids], dtype=object)


def annotations_from_files(root, json_path, mask_dir, ids, keys, dataset):
    """Artifact annotations: ``{artifact: [ids]}`` JSON and/or ``<mask_dir>/<artifact>/<key>.png``.

    A mask file also marks its sample as containing the artifact, so masks alone suffice.
    """
    annotations = {}
    json_path, mask_dir = resolve(root, json_path), resolve(root, mask_dir)
    if json_path is not None:
        try:
            listed = json.loads(Path(json_path).read_text())
        except FileNotFoundError:
            raise UserError(f"dataset '{dataset}': artifact annotations not found: {json_path}") from None
        except (OSError, ValueError) as error:
            raise UserError(f"{json_path}: cannot read artifact annotations: {_first_line(error)}") from None
        if not isinstance(listed, dict) or not all(isinstance(v, list) for v in listed.values()):
            raise UserError(f"{json_path}: expected a JSON object {{artifact: [sample names]}}")
        for artifact, names in listed.items():
            names = {str(n) for n in names}
            annotations[artifact] = np.array([i in names or k in names for i, k in zip(ids, keys)], dtype=bool)
    if mask_dir is not None:
        if not mask_dir.is_dir():
            raise UserError(f"dataset '{dataset}': artifact mask folder not found: {mask_dir}")
        for folder in sorted(p for p in mask_dir.iterdir() if p.is_dir()):
            stems = {p.relative_to(folder).with_suffix("").as_posix() for p in folder.rglob("*.png")}
            has_mask = np.array([k in stems for k in keys], dtype=bool)
            annotations[folder.name] = annotations.get(folder.name, np.zeros(len(ids), bool)) | has_mask
    return annotations


class DataRoot:
    """Where a data set's files may be: inside its root folder, after ``..``, absolute paths and
    symbolic links are resolved, or inside a folder an option of the config names explicitly
    (``allowed``). A file elsewhere is refused with one line naming where it was listed, unless
    ``allow_outside_root`` (the opt-in for people who keep their images on another disk)."""

    def __init__(self, root, allowed=(), allow_outside_root=False):
        if not isinstance(allow_outside_root, bool):
            raise UserError(f"dataset_options 'allow_outside_root': true or false, got {allow_outside_root!r}")
        self.root, self.allow = Path(root), allow_outside_root
        self.real = [Path(folder).resolve() for folder in (root, *allowed) if folder is not None]

    def check(self, path, where, what="file"):
        """Raise unless ``path`` (listed at ``where``, e.g. ``labels.csv line 5``) stays inside the root."""
        if self.allow:
            return
        real = Path(path).resolve()
        if not any(real.is_relative_to(folder) for folder in self.real):
            raise UserError(f"{where}: {what} {path} resolves to {real}, outside the data root {self.root} "
                            "(dataset_options allow_outside_root: true reads files elsewhere)")


def _stat(path):
    try:
        stat = os.stat(path)
        return [stat.st_size, stat.st_mtime_ns]
    except OSError:
        return None


class FileSplit(BaseDataset):
    """One split of a data set on disk: samples are files read by ``reader``.

    Any failure to read a sample becomes a one-line :class:`UserError` naming the sample and the
    file, so a run never stops half-way through a split without saying what broke. Mask files are
    checked against ``data_root`` (:class:`DataRoot`) when read.
    """

    def __init__(self, dataset, split, table: Table, class_names, reader, mean, std, multi_label=False,
                 augment=False, mask_dir=None, foreground_dir=None, data_root=None):
        super().__init__(split, class_names, table.ids, table.labels, mean, std, augment, multi_label)
        self.dataset, self.files, self.keys, self.reader = dataset, list(table.files), table.keys, reader
        self.modality = reader.modality
        self.annotations = dict(table.annotations)
        self.mask_dir, self.foreground_dir, self.data_root = mask_dir, foreground_dir, data_root

    def identity(self):
        """Ids, labels, annotations and the size and modification time of every file (samples and masks):
        a changed, added or replaced file changes it."""
        masks = {artifact: [_stat(self.mask_dir / artifact / f"{key}.png") if self.mask_dir else None
                            for key, has in zip(self.keys, flags) if has]
                 for artifact, flags in self.annotations.items()}
        foreground = [_stat(self.foreground_dir / f"{key}.png") for key in self.keys] if self.foreground_dir else None
        content = {"ids": self.sample_ids, "labels": np.asarray(self.labels).tolist(),
                   "files": [_stat(f) for f in self.files], "masks": masks, "foreground": foreground,
                   "annotations": {a: np.flatnonzero(v).tolist() for a, v in self.annotations.items()}}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]

    def _mask_file(self, folder, idx, what):
        path = folder / f"{self.keys[idx]}.png"
        if self.data_root is not None:
            self.data_root.check(path, f"dataset '{self.dataset}', {self.split} sample '{self.sample_ids[idx]}'", what)
        return path

    def load_raw(self, idx):
        try:
            return self.reader(self.files[idx])
        except UserError:
            raise
        except Exception as error:
            raise UserError(f"dataset '{self.dataset}', {self.split} sample {idx} ('{self.sample_ids[idx]}'): "
                            f"cannot read {self.files[idx]}: {_first_line(error)} (dataset_options "
                            "skip_corrupt: true skips unreadable files)") from None

    @property
    def artifact_names(self):
        return list(self.annotations)

    def artifact_labels(self, artifact):
        if artifact not in self.annotations:
            return np.zeros(len(self), dtype=bool)
        return self.annotations[artifact].copy()

    def get_mask(self, idx, artifact):
        """The annotated mask; all-false without the artifact; ``None`` where no mask file exists."""
        if artifact not in self.annotations or self.modality != "image":
            return None
        size = self.reader.size
        if not self.annotations[artifact][idx]:
            return torch.zeros(size, size, dtype=torch.bool)
        path = self._mask_file(self.mask_dir / artifact, idx, "mask") if self.mask_dir else None
        return read_mask(path, size) if path is not None and path.is_file() else None

    def get_foreground_mask(self, idx):
        if self.foreground_dir is None:
            return None
        path = self._mask_file(self.foreground_dir, idx, "foreground mask")
        return read_mask(path, self.reader.size) if path.is_file() else None


def _drop_unusable(dataset, table, reader, skip_corrupt):
    """Missing files stop the build (or are skipped); with ``skip_corrupt`` every file is also read."""
    missing = np.array([not reader.exists(f) for f in table.files], dtype=bool)
    if missing.any() and not skip_corrupt:
        first = table.files[int(np.flatnonzero(missing)[0])]
        raise UserError(f"dataset '{dataset}': {int(missing.sum())} of {len(table)} files are missing, "
                        f"e.g. {first} (dataset_options skip_corrupt: true skips them)")
    broken, first_error = missing.copy(), None
    if skip_corrupt:
        for i in np.flatnonzero(~missing):
            try:
                reader(table.files[i])
            except Exception as error:  # any failure to decode means the file cannot be used
                broken[i] = True
                first_error = first_error or f"{table.files[i]}: {_first_line(error)}"
        if broken.any():
            example = first_error or f"{table.files[int(np.flatnonzero(broken)[0])]}: missing"
            warnings.warn(f"dataset '{dataset}': skipped {int(broken.sum())} of {len(table)} unreadable or "
                          f"missing files (e.g. {example})", stacklevel=3)
    return table.subset(~broken)


def check_unique_ids(dataset, table: Table):
    """One sample id per row: an id listed twice (in one split or in two, which leaks test samples into
    training) names both rows."""
    first = {}
    for sample_id, row, split in zip(table.ids, table.rows, table.split):
        if sample_id in first:
            row_a, split_a = first[sample_id]
            where = f"in split '{split}' twice" if split == split_a else f"in splits '{split_a}' and '{split}'"
            raise UserError(f"dataset '{dataset}': sample '{sample_id}' is listed {where} ({row_a} and {row}); "
                            "each sample must appear once")
        first[sample_id] = (row, split)


def build_splits(dataset, table: Table, class_names, reader, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                 multi_label=False, skip_corrupt=False, mask_dir=None, foreground_dir=None, data_root=None):
    """One :class:`FileSplit` per split of ``table`` (ids unique, files inside ``data_root`` (a
    :class:`DataRoot`) and present; training split augmented)."""
    if len(table) == 0:
        raise UserError(f"dataset '{dataset}': no samples left (check the files and dataset_options)")
    check_unique_ids(dataset, table)
    if data_root is not None:
        for path, row in zip(table.files, table.rows):
            data_root.check(path, row, "file")
    table = _drop_unusable(dataset, table, reader, skip_corrupt)
    splits = {}
    for split in SPLITS:
        part = table.subset(table.split == split)
        if len(part) == 0:
            raise UserError(f"dataset '{dataset}': split '{split}' is empty ({len(table)} samples in all)")
        splits[split] = FileSplit(dataset, split, part, class_names, reader, mean, std, multi_label,
                                  augment=split == "train", mask_dir=mask_dir, foreground_dir=foreground_dir,
                                  data_root=data_root)
    return splits


def numeric_columns(frame, path, columns) -> np.ndarray:
    """``columns`` of ``frame`` as floats (blank cells are NaN); a non-number names file and column."""
    values = frame[list(columns)].apply(pd.to_numeric, errors="coerce")
    for column in columns:
        bad = values[column].isna() & frame[column].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise UserError(f"{path}: column '{column}' holds '{frame[column].iloc[row]}' in data row {row + 1}; "
                            "expected a number")
    return values.to_numpy(dtype=float)
