"""Write any registered image data set in the bring-your-own (``image_folder``) layout.

    python -m datasets.export_image_folder --config_file config_files/training/synth_derm/tiny_vgg_adam_lr0.003.yaml \\
        --out outputs/example_image_folder [--n_per_split 200]

The exported folder is what a hospital team would prepare by hand: ``labels.csv``
(``image,label,split``), ``images/``, ``artifacts.json`` with the artifacts each image carries,
``masks/<artifact>/<stem>.png`` and ``foreground/<stem>.png`` where the data set knows them. Images
are written as they are in the training distribution (artifacts included), so the export is a
worked example of a data set whose artifacts are real annotations rather than inserted ones.
An existing, non-empty ``--out`` is refused: nothing is overwritten.
"""
import argparse
import csv
import io
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from datasets.registry import get_dataset_from_config
from utils.cli import main_entry
from utils.config import TrainingConfig, load_config
from utils.errors import UserError
from utils.io import atomic_path, write_json, write_text
from utils.table import format_table


def _write_png(path, array):
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def _image_uint8(x):
    return (x.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def _mask_uint8(mask):
    return np.asarray(mask, dtype=np.uint8) * 255


def export_image_folder(splits, out_dir, n_per_split=None, progress=True) -> dict:
    """Write ``splits`` (a :class:`~datasets.base.DataSplits` of images) into ``out_dir``; returns counts."""
    out_dir = Path(out_dir)
    if splits.train.modality != "image":
        raise UserError("export_image_folder: only image data sets can be exported (this one holds signals)")
    rows, annotations, counts = [], {}, {}
    ids = [i for _, split in splits.items() for i in split.sample_ids]
    prefix = len(set(ids)) < len(ids)  # ids repeat across splits: make file names unique
    for split_name, split in splits.items():
        n = len(split) if n_per_split is None else min(n_per_split, len(split))
        counts[split_name] = n
        for idx in tqdm(range(n), desc=f"export {split_name}", disable=not progress, leave=False):
            stem = (f"{split_name}_" if prefix else "") + str(split.sample_ids[idx]).replace("/", "_")
            name = f"{stem}.png"
            _write_png(out_dir / "images" / name, _image_uint8(split.load_raw(idx)))
            rows.append((name, split.class_names[split.labels[idx]], split_name))
            for artifact in split.artifact_names:
                if split.artifact_labels(artifact)[idx]:
                    annotations.setdefault(artifact, []).append(name)
                    mask = split.get_mask(idx, artifact)
                    if mask is not None:
                        _write_png(out_dir / "masks" / artifact / name, _mask_uint8(mask))
            foreground = split.get_foreground_mask(idx)
            if foreground is not None:
                _write_png(out_dir / "foreground" / name, _mask_uint8(foreground))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image", "label", "split"])
    writer.writerows(rows)
    write_json(out_dir / "artifacts.json", annotations)
    write_text(out_dir / "labels.csv", buffer.getvalue())  # last: a folder without it is visibly unfinished
    return {"samples": counts, "artifacts": {a: len(ids) for a, ids in annotations.items()}}


@main_entry
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config_file", required=True, help="config naming the data set (e.g. a training config)")
    parser.add_argument("--out", required=True, help="folder to create (must not exist or be empty)")
    parser.add_argument("--n_per_split", type=int, default=None, help="export only the first N samples of each split")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"--out {out}: the folder exists and is not empty; choose a new one")
    if args.n_per_split is not None and args.n_per_split < 1:
        raise UserError(f"--n_per_split: a positive number, got {args.n_per_split}")
    config = load_config(args.config_file, TrainingConfig)
    summary = export_image_folder(get_dataset_from_config(config), out, args.n_per_split)
    print(format_table([{"split": s, "images": n} for s, n in summary["samples"].items()]))
    print(format_table([{"artifact": a, "images": n} for a, n in summary["artifacts"].items()]))
    print(f"written: {out}  (use it with dataset_name: image_folder, data_paths: [{out}])")
    return summary


if __name__ == "__main__":
    main()
