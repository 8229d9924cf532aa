"""HyperKvasir gastrointestinal endoscopy (labelled images), read from the official release.

Layout under the root (``data_paths[0]``)::

    labeled-images/image-labels.csv     Video file, Organ, Finding, Classification
    labeled-images/<lower|upper>-gi-tract/<classification>/<finding>/<Video file>.jpg

Tasks (``dataset_options.task``): ``disease`` (default; classes ``non_disease``/``disease``,
disease = classification ``pathological-findings``) or ``finding`` (one class per finding).
``findings`` (a list) keeps only those findings. Split: seeded 80/10/10 stratified by class
(``split_seed``). ``artifact_annotations``/``artifact_masks`` as for every image data set.
"""
import numpy as np

from datasets.files import (DataRoot, ImageReader, Table, annotations_from_files, build_splits, dataset_root,
                            read_csv, resolve, seeded_split)
from datasets.registry import register_dataset
from utils.errors import UserError

LABELS_CSV = "labeled-images/image-labels.csv"
COLUMNS = ("Video file", "Organ", "Finding", "Classification")
DISEASE = "pathological-findings"
TASKS = ("disease", "finding")
# the CSV writes the organ as "Lower GI"/"Upper GI"; the folders are lower-/upper-gi-tract
ORGAN_FOLDERS = {"lower gi": "lower-gi-tract", "upper gi": "upper-gi-tract",
                 "lower-gi-tract": "lower-gi-tract", "upper-gi-tract": "upper-gi-tract"}


def _organ_folder(value, csv_path, row):
    folder = ORGAN_FOLDERS.get(str(value).strip().lower())
    if folder is None:
        raise UserError(f"{csv_path}: column 'Organ' holds '{value}' in data row {row + 1}; "
                        "expected Lower GI or Upper GI")
    return folder


@register_dataset("hyper_kvasir", attacked_default={"artifact_type": "timestamp", "attacked_classes": ["disease"],
                                                    "p_artifact": 0.1})
def build_hyper_kvasir(img_size=224, seed=0, data_paths=(), task="disease", findings=None, split_seed=0,
                       artifact_annotations=None, artifact_masks=None, skip_corrupt=False, allow_outside_root=False):
    root = dataset_root(data_paths, "hyper_kvasir", "HyperKvasir")
    if task not in TASKS:
        raise UserError(f"dataset 'hyper_kvasir': task: '{task}'; valid: {', '.join(TASKS)}")
    csv_path = root / LABELS_CSV
    frame = read_csv(csv_path, COLUMNS, "HyperKvasir", dtype=str).reset_index(drop=True)
    if findings is not None:
        known = sorted(set(frame["Finding"]))
        unknown = [f for f in findings if f not in known]
        if unknown:
            raise UserError(f"dataset 'hyper_kvasir': unknown finding '{unknown[0]}'; valid: {', '.join(known)}")
        frame = frame[frame["Finding"].isin(findings)].reset_index(drop=True)
    names = [v if v.lower().endswith(".jpg") else f"{v}.jpg" for v in frame["Video file"].astype(str)]
    files = [root / "labeled-images" / _organ_folder(organ, csv_path, row) / cls / finding / name
             for row, (organ, cls, finding, name) in
             enumerate(zip(frame["Organ"], frame["Classification"], frame["Finding"], names))]
    ids = [name[:-4] for name in names]
    if task == "disease":
        class_names = ["non_disease", "disease"]
        labels = (frame["Classification"] == DISEASE).to_numpy().astype(np.int64)
    else:
        class_names = sorted(set(frame["Finding"]))
        labels = np.array([class_names.index(f) for f in frame["Finding"]], dtype=np.int64)
    split = seeded_split(len(ids), split_seed, strata=labels, groups=ids)
    annotations = annotations_from_files(root, artifact_annotations, artifact_masks, ids, ids, "hyper_kvasir")
    table = Table(ids, files, labels, split, annotations=annotations)
    return build_splits("hyper_kvasir", table, class_names, ImageReader(img_size), skip_corrupt=skip_corrupt,
                        mask_dir=resolve(root, artifact_masks),
                        data_root=DataRoot(root, [resolve(root, artifact_masks)], allow_outside_root))
