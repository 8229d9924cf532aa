"""CheXpert chest radiographs, read from the official release (full or the "small" version).

Layout under the root (``data_paths[0]``, e.g. ``CheXpert-v1.0-small/``)::

    train.csv, valid.csv      Path, ..., the 14 observation columns (1, 0, -1 uncertain, blank)
    train/patientXXXXX/studyN/viewN_frontal.jpg    (``Path`` starts with the release folder name)

Options (``dataset_options``):

* ``target``: one observation for a binary task (default ``Cardiomegaly``: classes
  ``no_cardiomegaly``/``cardiomegaly``), or ``all`` for the 14 observations as a multi-label task.
* ``uncertain``: what -1 means: ``zeros``, ``ones``, or ``ignore`` (drop the image; in the
  multi-label task, any uncertain observation drops it). Blank cells are negatives.
* ``frontal_only`` (default true): only frontal views.
* ``pacemaker_labels``: CSV with an image key (``Path`` as in train.csv, or ``image``) and ``PM``
  (1 = pacemaker); exposed as the annotated artifact ``pacemaker``. ``artifact_annotations`` and
  ``artifact_masks`` work as for every image data set (key: the Path without release folder and
  suffix, e.g. ``train/patient00001/study1/view1_frontal``).

train.csv and valid.csv are pooled and split 80/10/10 by patient (seeded, ``split_seed``), so
no patient appears in two splits. Grayscale images are repeated to three channels.
"""
import re
from pathlib import PurePosixPath

import numpy as np

from datasets.files import (DataRoot, ImageReader, Table, annotations_from_files, build_splits, dataset_root,
                            numeric_columns, read_csv, resolve, seeded_split)
from datasets.registry import register_dataset
from utils.errors import UserError

OBSERVATIONS = ("No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion",
                "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion",
                "Pleural Other", "Fracture", "Support Devices")
UNCERTAIN_POLICIES = {"zeros": 0.0, "ones": 1.0, "ignore": np.nan}
CSV_FILES = ("train.csv", "valid.csv")
MEAN, STD = (0.503,) * 3, (0.29,) * 3  # radiographs: one grey level repeated in three channels
_PATIENT = re.compile(r"patient(\d+)")


def class_name(observation):
    return observation.lower().replace(" ", "_")


def sample_key(path):
    """``Path`` without the release folder and suffix: ``train/patient00001/study1/view1_frontal``."""
    parts = PurePosixPath(str(path).replace("\\", "/")).parts
    if parts and parts[0] not in ("train", "valid"):
        parts = parts[1:]  # the release folder, e.g. CheXpert-v1.0-small
    return PurePosixPath(*parts).with_suffix("").as_posix()


def _read_observations(root, frontal_only):
    """Keys, image files, patient ids and the observation matrix (NaN = blank) of both CSV files."""
    keys, files, patients, values = [], [], [], []
    for name in CSV_FILES:
        path = root / name
        if name == "valid.csv" and not path.is_file():
            continue  # optional: the validation release is small and sometimes kept apart
        frame = read_csv(path, ["Path", *OBSERVATIONS], "CheXpert", dtype={"Path": str})
        if frontal_only:
            frame = frame[frame["Path"].str.contains("frontal", case=False, na=False)]
        for row, image in enumerate(frame["Path"]):
            match = _PATIENT.search(str(image))
            if match is None:
                raise UserError(f"{path}: column 'Path' in data row {row + 1} ('{image}') names no "
                                "patientXXXXX folder")
            keys.append(sample_key(image))
            files.append(root / f"{sample_key(image)}{PurePosixPath(str(image)).suffix or '.jpg'}")
            patients.append(match.group(1))
        values.append(numeric_columns(frame, path, OBSERVATIONS))
    return keys, files, np.array(patients), np.concatenate(values) if values else np.zeros((0, 14))


def _pacemaker_annotations(path, keys):
    frame = read_csv(path, ["PM"], dtype=str)
    key_column = next((c for c in ("Path", "image") if c in frame.columns), None)
    if key_column is None:
        raise UserError(f"{path}: missing column 'Path' (or 'image') with the image keys")
    flags = numeric_columns(frame, path, ["PM"])[:, 0]
    with_pacemaker = {sample_key(k) for k, f in zip(frame[key_column], flags) if f == 1}
    return np.array([k in with_pacemaker for k in keys], dtype=bool)


@register_dataset("chexpert", attacked_default={"artifact_type": "white_color", "attacked_classes": ["cardiomegaly"],
                                                "p_artifact": 0.1})
def build_chexpert(img_size=224, seed=0, data_paths=(), target="Cardiomegaly", uncertain="zeros",
                   frontal_only=True, split_seed=0, pacemaker_labels=None, artifact_annotations=None,
                   artifact_masks=None, skip_corrupt=False, allow_outside_root=False):
    root = dataset_root(data_paths, "chexpert", "CheXpert")
    if uncertain not in UNCERTAIN_POLICIES:
        raise UserError(f"dataset 'chexpert': uncertain: '{uncertain}'; valid: {', '.join(UNCERTAIN_POLICIES)}")
    if target != "all" and target not in OBSERVATIONS:
        raise UserError(f"dataset 'chexpert': target: '{target}'; valid: all, {', '.join(OBSERVATIONS)}")
    keys, files, patients, values = _read_observations(root, frontal_only)
    values = np.where(values == -1, UNCERTAIN_POLICIES[uncertain], np.nan_to_num(values, nan=0.0))
    columns = list(range(len(OBSERVATIONS))) if target == "all" else [OBSERVATIONS.index(target)]
    keep = ~np.isnan(values[:, columns]).any(1)  # 'ignore' left NaN where a used label is uncertain
    if target == "all":
        labels, class_names = values[:, columns], [class_name(o) for o in OBSERVATIONS]
    else:
        labels, class_names = values[:, columns[0]], [f"no_{class_name(target)}", class_name(target)]
    labels = np.nan_to_num(labels).astype(np.float32 if target == "all" else np.int64)
    annotations = annotations_from_files(root, artifact_annotations, artifact_masks, keys, keys, "chexpert")
    if pacemaker_labels:
        annotations["pacemaker"] = annotations.get("pacemaker", np.zeros(len(keys), bool)) | \
            _pacemaker_annotations(resolve(root, pacemaker_labels), keys)
    table = Table(keys, files, labels, seeded_split(len(keys), split_seed, groups=patients), annotations=annotations)
    return build_splits("chexpert", table.subset(keep), class_names, ImageReader(img_size), mean=MEAN, std=STD,
                        multi_label=target == "all", skip_corrupt=skip_corrupt, mask_dir=resolve(root, artifact_masks),
                        data_root=DataRoot(root, [resolve(root, artifact_masks)], allow_outside_root))
