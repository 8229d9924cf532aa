"""ISIC 2019 skin-lesion classification, read from the official release.

Layout under the root (``data_paths[0]``)::

    ISIC_2019_Training_GroundTruth.csv      image, MEL, NV, BCC, AK, BKL, DF, VASC, SCC, UNK (one-hot)
    ISIC_2019_Training_Input/<image>.jpg    (a folder named Train/ is accepted too)

The split is a deterministic seeded 80/10/10 split stratified by class (``split_seed``), or
given by ``split_file`` (CSV ``image,split``). Artifact annotations are optional:
``artifact_annotations`` (JSON ``{artifact: [image ids]}``) and ``artifact_masks`` (folder of
``<artifact>/<image>.png``), both absolute or relative to the root.
"""
import numpy as np

from datasets.files import (DataRoot, ImageReader, Table, annotations_from_files, build_splits, dataset_root,
                            layout_hint, numeric_columns, read_csv, resolve, seeded_split, split_from_file)
from datasets.registry import register_dataset
from utils.errors import UserError

CLASS_NAMES = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC")
GROUND_TRUTH = "ISIC_2019_Training_GroundTruth.csv"
IMAGE_FOLDERS = ("ISIC_2019_Training_Input", "Train")


@register_dataset("isic", attacked_default={"artifact_type": "microscope", "attacked_classes": ["MEL"],
                                            "p_artifact": 0.2})
def build_isic(img_size=224, seed=0, data_paths=(), split_seed=0, split_file=None, artifact_annotations=None,
               artifact_masks=None, skip_corrupt=False, allow_outside_root=False):
    root = dataset_root(data_paths, "isic", "ISIC 2019")
    csv_path = root / GROUND_TRUTH
    frame = read_csv(csv_path, ["image", *CLASS_NAMES, "UNK"], "ISIC 2019", dtype={"image": str})
    folder = next((root / name for name in IMAGE_FOLDERS if (root / name).is_dir()), None)
    if folder is None:
        raise UserError(f"dataset 'isic': image folder not found: {root / IMAGE_FOLDERS[0]} (or {root / 'Train'}; "
                        f"{layout_hint('ISIC 2019')})")
    one_hot = numeric_columns(frame, csv_path, CLASS_NAMES)
    # rows labelled only UNK (none in the training release) have no class of the task
    keep = np.nan_to_num(one_hot).max(1) > 0
    ids = frame["image"].astype(str).to_numpy()[keep].tolist()
    labels = one_hot[keep].argmax(1)
    if split_file:
        split = split_from_file(resolve(root, split_file), "image", ids)
    else:
        split = seeded_split(len(ids), split_seed, strata=labels, groups=ids)
    annotations = annotations_from_files(root, artifact_annotations, artifact_masks, ids, ids, "isic")
    table = Table(ids, [folder / f"{i}.jpg" for i in ids], labels, split, annotations=annotations)
    return build_splits("isic", table, CLASS_NAMES, ImageReader(img_size), skip_corrupt=skip_corrupt,
                        mask_dir=resolve(root, artifact_masks),
                        data_root=DataRoot(root, [resolve(root, artifact_masks)], allow_outside_root))
