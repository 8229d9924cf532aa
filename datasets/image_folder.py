"""Bring your own images: a folder with a labels file, optional splits, artifacts and masks.

Layout under the root (``data_paths[0]``)::

    labels.csv                         image,label[,split]   (split: train / val / test)
    images/<image>                     any format Pillow reads; grayscale becomes 3 channels
    artifacts.json                     optional: {"<artifact>": ["<image>", ...]}
    masks/<artifact>/<image stem>.png  optional: artifact masks (non-zero = artifact)
    foreground/<image stem>.png        optional: masks of the object of interest

Without a ``split`` column the split is a seeded 80/10/10 split stratified by label
(``split_seed``). Classes are the sorted label values, or ``classes`` (a list) in that order.
"""
from pathlib import PurePosixPath

import numpy as np

from datasets.files import (SPLITS, ImageReader, Table, annotations_from_files, build_splits, dataset_root,
                            read_csv, seeded_split)
from datasets.registry import register_dataset
from utils.errors import UserError


@register_dataset("image_folder")
def build_image_folder(img_size=224, seed=0, data_paths=(), classes=None, split_seed=0, skip_corrupt=False):
    root = dataset_root(data_paths, "image_folder", "Bring your own images")
    csv_path = root / "labels.csv"
    frame = read_csv(csv_path, ["image", "label"], "Bring your own images", dtype=str)
    images, labels_text = frame["image"].tolist(), frame["label"].str.strip().tolist()
    class_names = list(classes) if classes else sorted(set(labels_text))
    unknown = sorted(set(labels_text) - set(class_names))
    if unknown:
        raise UserError(f"{csv_path}: column 'label' holds '{unknown[0]}', which is not in 'classes' "
                        f"({', '.join(class_names)})")
    labels = np.array([class_names.index(v) for v in labels_text], dtype=np.int64)
    if "split" in frame.columns:
        split = frame["split"].str.strip().to_numpy(dtype=object)
        bad = sorted(set(split) - set(SPLITS), key=str)
        if bad:
            raise UserError(f"{csv_path}: column 'split' holds '{bad[0]}'; valid: {', '.join(SPLITS)}")
    else:
        split = seeded_split(len(images), split_seed, strata=labels, groups=images)
    stems = [PurePosixPath(i).with_suffix("").as_posix() for i in images]
    masks = root / "masks"
    annotations = annotations_from_files(root, "artifacts.json" if (root / "artifacts.json").is_file() else None,
                                         masks if masks.is_dir() else None, images, stems, "image_folder")
    table = Table(images, [root / "images" / i for i in images], labels, split, keys=stems, annotations=annotations)
    foreground = root / "foreground"
    return build_splits("image_folder", table, class_names, ImageReader(img_size), skip_corrupt=skip_corrupt,
                        mask_dir=masks if masks.is_dir() else None,
                        foreground_dir=foreground if foreground.is_dir() else None)
