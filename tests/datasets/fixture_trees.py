"""Tiny copies of the official data set layouts, written into a temporary folder by the tests.

Each writer mirrors its release's file names, CSV columns and folder structure with a handful of
16-pixel images (or 12 x 1000 WFDB records), so the loaders are tested on exactly what a user
unpacks, and nothing is downloaded. Every writer returns the data root.
"""
import json

import numpy as np
from PIL import Image

ISIC_COLUMNS = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")
CHEXPERT_OBSERVATIONS = ("No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion",
                         "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion",
                         "Pleural Other", "Fracture", "Support Devices")
LEADS = ("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6")


def write_image(path, seed, size=16, grayscale=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size) if grayscale else (size, size, 3))
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


def write_mask(path, size=16, box=(2, 2, 8, 8)):
    """A PNG mask with a filled rectangle (top, left, bottom, right) of non-zero pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = np.zeros((size, size), np.uint8)
    top, left, bottom, right = box
    mask[top:bottom, left:right] = 255
    Image.fromarray(mask).save(path)
    return path


def truncate(path):
    """Cut a file in half: a truncated download."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _write_csv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join(header)] + [",".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")


def isic_tree(root, n_per_class=10, folder="ISIC_2019_Training_Input"):
    """ISIC 2019: ground-truth CSV and images; MEL and NV only (index < n: MEL), one UNK row."""
    rows = []
    for i in range(2 * n_per_class):
        image = f"ISIC_{i:07d}"
        one_hot = [0.0] * len(ISIC_COLUMNS)
        one_hot[0 if i < n_per_class else 1] = 1.0
        rows.append([image, *one_hot])
        write_image(root / folder / f"{image}.jpg", i)
    unk = [0.0] * len(ISIC_COLUMNS)
    unk[-1] = 1.0
    rows.append(["ISIC_9999999", *unk])  # a row of no task class: left out
    write_image(root / folder / "ISIC_9999999.jpg", 99)
    _write_csv(root / "ISIC_2019_Training_GroundTruth.csv", ["image", *ISIC_COLUMNS], rows)
    return root


def chexpert_tree(root, n_train_patients=10, n_valid_patients=2):
    """CheXpert-v1.0-small: train.csv/valid.csv with the release prefix in Path, grayscale JPEGs.

    Patient p has one frontal view per study, two studies when p is even, and one lateral view;
    Cardiomegaly cycles through 1, 0, -1 (uncertain) and blank.
    """
    release = root.name
    header = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT_OBSERVATIONS]
    cycle = ["1.0", "0.0", "-1.0", ""]
    counter = 0
    for csv_name, folder, patients in (("train.csv", "train", range(1, n_train_patients + 1)),
                                       ("valid.csv", "valid", range(64541, 64541 + n_valid_patients))):
        rows = []
        for p in patients:
            views = [(s, "view1_frontal") for s in range(1, 3 if p % 2 == 0 else 2)] + [(1, "view2_lateral")]
            for study, view in views:
                relative = f"{folder}/patient{p:05d}/study{study}/{view}.jpg"
                write_image(root / relative, counter, grayscale=True)
                values = [""] * len(CHEXPERT_OBSERVATIONS)
                values[CHEXPERT_OBSERVATIONS.index("Cardiomegaly")] = cycle[counter % 4]
                values[CHEXPERT_OBSERVATIONS.index("Edema")] = "1.0" if counter % 3 == 0 else "0.0"
                rows.append([f"{release}/{relative}", "Female", 60, "Frontal" if "frontal" in view else "Lateral",
                             "AP", *values])
                counter += 1
        _write_csv(root / csv_name, header, rows)
    return root


def hyper_kvasir_tree(root, counts=None):
    """HyperKvasir labelled images: image-labels.csv and the organ/classification/finding folders."""
    counts = counts or {("Lower GI", "pathological-findings", "polyps"): 6,
                        ("Upper GI", "pathological-findings", "esophagitis-a"): 4,
                        ("Lower GI", "anatomical-landmarks", "cecum"): 6,
                        ("Upper GI", "anatomical-landmarks", "z-line"): 4}
    rows, counter = [], 0
    for (organ, classification, finding), n in counts.items():
        organ_folder = "lower-gi-tract" if organ == "Lower GI" else "upper-gi-tract"
        for _ in range(n):
            name = f"{counter:08d}-aaaa-bbbb-cccc-{finding}"
            write_image(root / "labeled-images" / organ_folder / classification / finding / f"{name}.jpg", counter)
            rows.append([name, organ, finding, classification])
            counter += 1
    _write_csv(root / "labeled-images" / "image-labels.csv", ["Video file", "Organ", "Finding", "Classification"],
               rows)
    return root


def image_folder_tree(root, n_per_class=6, with_split=True):
    """Bring-your-own layout: labels.csv (+split), images/, artifacts.json, masks/, foreground/."""
    rows = []
    for i in range(2 * n_per_class):
        name = f"img_{i:02d}.png"
        label = "benign" if i < n_per_class else "malignant"
        split = ["train", "train", "train", "train", "val", "test"][i % n_per_class]
        rows.append([name, label, split] if with_split else [name, label])
        write_image(root / "images" / name, i)
        write_mask(root / "foreground" / f"img_{i:02d}.png", box=(4, 4, 12, 12))
    header = ["image", "label", "split"] if with_split else ["image", "label"]
    _write_csv(root / "labels.csv", header, rows)
    (root / "artifacts.json").write_text(json.dumps({"ruler": ["img_00.png", "img_07.png"]}))
    write_mask(root / "masks" / "ruler" / "img_00.png", box=(0, 0, 4, 16))
    # img_03 has a mask but is not listed: the mask alone marks it
    write_mask(root / "masks" / "ruler" / "img_03.png", box=(12, 0, 16, 16))
    return root


PTBXL_STATEMENTS = [  # code, diagnostic, form, rhythm, diagnostic_class, diagnostic_subclass
    ("NORM", 1.0, "", "", "NORM", "NORM"),
    ("LVH", 1.0, "", "", "HYP", "LVH"),
    ("IMI", 1.0, "", "", "MI", "IMI"),
    ("NDT", 1.0, 1.0, "", "STTC", "STTC"),
    ("SR", "", "", 1.0, "", ""),
]
PTBXL_CODES = ["{'NORM': 100.0, 'SR': 0.0}", "{'LVH': 50.0, 'NDT': 100.0}", "{'IMI': 80.0}", "{'SR': 0.0}"]


def ptbxl_tree(root, n_records=14):
    """PTB-XL: database and statements CSVs, WFDB records under records100/ (100 Hz, 10 s).

    Record i has scp codes ``PTBXL_CODES[i % 4]`` (index 3: rhythm only, left out) and
    ``strat_fold`` 1 + i % 10, so folds 9 and 10 (validation and test) are both present.
    """
    import wfdb

    _write_csv(root / "scp_statements.csv", ["", "diagnostic", "form", "rhythm", "diagnostic_class",
                                              "diagnostic_subclass"], PTBXL_STATEMENTS)
    rows = []
    for i in range(n_records):
        ecg_id = i + 1
        name_lr = f"records100/00000/{ecg_id:05d}_lr"
        signal = np.random.default_rng(i).normal(0, 0.2, (1000, len(LEADS)))
        (root / name_lr).parent.mkdir(parents=True, exist_ok=True)
        wfdb.wrsamp(f"{ecg_id:05d}_lr", fs=100, units=["mV"] * len(LEADS), sig_name=list(LEADS), p_signal=signal,
                    fmt=["16"] * len(LEADS), write_dir=str((root / name_lr).parent))
        codes = PTBXL_CODES[i % len(PTBXL_CODES)]
        rows.append([ecg_id, 1000 + i, f'"{codes}"', 1 + i % 10, name_lr, f"records500/00000/{ecg_id:05d}_hr"])
    _write_csv(root / "ptbxl_database.csv", ["ecg_id", "patient_id", "scp_codes", "strat_fold", "filename_lr",
                                             "filename_hr"], rows)
    return root
