"""Bring your own images: a folder with a labels file, optional splits, artifacts and masks.

Layout under the root (``data_paths[0]``; a relative root is relative to the current working
directory, the repository root where every command runs)::

    labels.csv                         image,label[,split]   (split: train / val / test)
    images/<image>                     any format Pillow reads; grayscale becomes 3 channels
    artifacts.json                     optional: {"<artifact>": ["<image>", ...]}
    masks/<artifact>/<image stem>.png  optional: artifact masks (non-zero = artifact)
    foreground/<image stem>.png        optional: masks of the object of interest

Without a ``split`` column the split is a seeded 80/10/10 split stratified by label
(``split_seed``). Classes are the sorted label values, or ``classes`` (a list) in that order.
Every file must lie inside the root (``allow_outside_root: true`` lifts this); every row needs an
image and a label, and lists its image once. 16-bit and 12-bit grayscale images are scaled by their
real range, or by ``bit_depth``.
"""
from pathlib import PurePosixPath

import numpy as np

from datasets.files import (SPLITS, DataRoot, ImageReader, Table, annotations_from_files, build_splits,
                            dataset_root, read_csv, seeded_split)
from datasets.registry import register_dataset
from utils.errors import UserError

README_SECTION = "Bring your own images"


def _line(csv_path, row):
    return f"{csv_path} line {row + 2}"  # line 1 is the header


def _cells(frame, column, csv_path):
    """The column's values, stripped; a blank cell names its line."""
    values = frame[column].str.strip().tolist()
    for row, value in enumerate(values):
        if not value:
            raise UserError(f"{_line(csv_path, row)}: column '{column}' is blank; expected a value in every row")
    return values


@register_dataset("image_folder")
def build_image_folder(img_size=224, seed=0, data_paths=(), classes=None, split_seed=0, skip_corrupt=False,
                       allow_outside_root=False, bit_depth=None):
    root = dataset_root(data_paths, "image_folder", README_SECTION)
    data_root = DataRoot(root, allow_outside_root=allow_outside_root)
    csv_path = root / "labels.csv"
    data_root.check(csv_path, "dataset 'image_folder'", "labels file")
    # blank cells stay '' (not NaN) so that they can be named
    frame = read_csv(csv_path, ["image", "label"], README_SECTION, dtype=str, keep_default_na=False)
    images, labels_text = _cells(frame, "image", csv_path), _cells(frame, "label", csv_path)
    class_names = list(classes) if classes else sorted(set(labels_text))
    for row, value in enumerate(labels_text):
        if value not in class_names:
            raise UserError(f"{_line(csv_path, row)}: column 'label' holds '{value}', which is not in 'classes' "
                            f"({', '.join(class_names)})")
    labels = np.array([class_names.index(v) for v in labels_text], dtype=np.int64)
    if "split" in frame.columns:
        split = np.array(_cells(frame, "split", csv_path), dtype=object)
        for row, value in enumerate(split):
            if value not in SPLITS:
                raise UserError(f"{_line(csv_path, row)}: column 'split' holds '{value}'; valid: {', '.join(SPLITS)}")
    else:
        split = seeded_split(len(images), split_seed, strata=labels, groups=images)
    stems = [PurePosixPath(i).with_suffix("").as_posix() for i in images]
    optional = {name: root / name for name in ("artifacts.json", "masks", "foreground")}
    for name, path in optional.items():
        if path.exists():
            data_root.check(path, "dataset 'image_folder'", "the optional " + ("file" if "." in name else "folder"))
    # option paths are relative to the root: resolved once, by annotations_from_files
    annotations = annotations_from_files(root, "artifacts.json" if optional["artifacts.json"].is_file() else None,
                                         "masks" if optional["masks"].is_dir() else None, images, stems, "image_folder")
    table = Table(images, [root / "images" / i for i in images], labels, split, keys=stems, annotations=annotations,
                  rows=[_line(csv_path, row) for row in range(len(images))])
    return build_splits("image_folder", table, class_names, ImageReader(img_size, bit_depth),
                        skip_corrupt=skip_corrupt, data_root=data_root,
                        mask_dir=optional["masks"] if optional["masks"].is_dir() else None,
                        foreground_dir=optional["foreground"] if optional["foreground"].is_dir() else None)
