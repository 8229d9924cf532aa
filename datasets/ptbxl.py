"""PTB-XL 12-lead ECGs, read from the native PhysioNet release with ``wfdb``.

Layout under the root (``data_paths[0]``, e.g. ``ptb-xl/1.0.3``)::

    ptbxl_database.csv     ecg_id, scp_codes ("{'NORM': 100.0, ...}"), strat_fold, filename_lr, filename_hr, ...
    scp_statements.csv     (first column: the SCP code), diagnostic, diagnostic_class, diagnostic_subclass
    records100/ or records500/   WFDB records named by filename_lr / filename_hr

Labels are multi-hot over the diagnostic superclasses (``label_level: superclass``: CD, HYP, MI,
NORM, STTC) or subclasses (``label_level: subclass``, e.g. LVH) of every diagnostic code in
``scp_codes``; records without a diagnostic code are left out (as in the PTB-XL benchmark).
Splits follow ``strat_fold``: folds 1-8 train, 9 validation, 10 test (patients never cross
folds). ``sampling_rate``: 100 (default, 12 x 1000) or 500 (12 x 5000).
"""
import ast

import numpy as np

from datasets.files import (DataRoot, Table, annotations_from_files, build_splits, dataset_root, numeric_columns,
                            read_csv)
from datasets.registry import register_dataset
from datasets.signals import SIGNAL_MEAN, SIGNAL_STD, WfdbReader
from utils.errors import UserError

DATABASE, STATEMENTS = "ptbxl_database.csv", "scp_statements.csv"
FILE_COLUMNS = {100: "filename_lr", 500: "filename_hr"}
LABEL_COLUMNS = {"superclass": "diagnostic_class", "subclass": "diagnostic_subclass"}
FOLD_SPLITS = {**{f: "train" for f in range(1, 9)}, 9: "val", 10: "test"}
RECORD_SECONDS = 10


def _diagnostic_map(root, level):
    """SCP code -> its superclass or subclass, for the diagnostic statements only."""
    path = root / STATEMENTS
    frame = read_csv(path, ["diagnostic", LABEL_COLUMNS[level]], "PTB-XL", index_col=0)
    diagnostic = numeric_columns(frame, path, ["diagnostic"])[:, 0] == 1
    classes = frame[LABEL_COLUMNS[level]]
    return {str(code): str(cls) for code, cls, d in zip(frame.index, classes, diagnostic) if d and isinstance(cls, str)}


def _parse_codes(text, path, ecg_id):
    try:  # literal_eval: the column is a Python dict literal, and a data file must never run code
        codes = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        codes = None
    if not isinstance(codes, dict):
        raise UserError(f"{path}: column 'scp_codes' of ecg_id {ecg_id} is not a dict literal: {str(text)[:60]!r}")
    return codes


@register_dataset("ptbxl", modality="signal",
                  attacked_default={"artifact_type": "defective_lead", "attacked_classes": ["LVH"], "p_artifact": 0.5,
                                    "dataset_options": {"label_level": "subclass"}})
def build_ptbxl(img_size=None, seed=0, data_paths=(), sampling_rate=100, label_level="superclass",
                artifact_annotations=None, skip_corrupt=False, allow_outside_root=False):
    """``img_size`` is unused: records keep their length."""
    root = dataset_root(data_paths, "ptbxl", "PTB-XL")
    if sampling_rate not in FILE_COLUMNS:
        raise UserError(f"dataset 'ptbxl': sampling_rate: {sampling_rate}; valid: 100, 500")
    if label_level not in LABEL_COLUMNS:
        raise UserError(f"dataset 'ptbxl': label_level: '{label_level}'; valid: {', '.join(LABEL_COLUMNS)}")
    to_class = _diagnostic_map(root, label_level)
    class_names = sorted(set(to_class.values()))
    path = root / DATABASE
    file_column = FILE_COLUMNS[sampling_rate]
    frame = read_csv(path, ["ecg_id", "scp_codes", "strat_fold", file_column], "PTB-XL",
                     dtype={file_column: str})
    numbers = numeric_columns(frame, path, ["ecg_id", "strat_fold"])
    if np.isnan(numbers).any():
        row, column = np.argwhere(np.isnan(numbers))[0]
        raise UserError(f"{path}: column '{['ecg_id', 'strat_fold'][column]}' is blank in data row {row + 1}")
    folds = numbers.astype(int)
    ids, files, labels, split = [], [], [], []
    for (ecg_id, fold), codes, name in zip(folds, frame["scp_codes"], frame[file_column]):
        if fold not in FOLD_SPLITS:
            raise UserError(f"{path}: column 'strat_fold' of ecg_id {ecg_id} is {fold}; expected 1-10")
        present = {to_class[c] for c in _parse_codes(codes, path, ecg_id) if c in to_class}
        if not present:
            continue
        ids.append(str(ecg_id))
        files.append(root / name)
        labels.append([c in present for c in class_names])
        split.append(FOLD_SPLITS[fold])
    labels = np.array(labels, dtype=np.float32).reshape(len(ids), len(class_names))
    annotations = annotations_from_files(root, artifact_annotations, None, ids, ids, "ptbxl")
    table = Table(ids, files, labels, split, annotations=annotations)
    reader = WfdbReader(n_samples=RECORD_SECONDS * sampling_rate)
    return build_splits("ptbxl", table, class_names, reader, mean=SIGNAL_MEAN, std=SIGNAL_STD, multi_label=True,
                        skip_corrupt=skip_corrupt, data_root=DataRoot(root, allow_outside_root=allow_outside_root))
