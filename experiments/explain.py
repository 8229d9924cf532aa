"""Heatmaps of a folder of images from any checkpoint this project wrote (LRP-Flex, utils.lrp.explain):

    python -m experiments.explain --ckpt_path F --images DIR --out DIR [--rule epsilon|z_plus] [--target K]
                                  [--img_size N] [--input_rule gradient|zb] [--mean M ...] [--std S ...]

F: a training checkpoint (best.pt, last.pt) or a corrected one (corrected.pt, loaded with its
correction, e.g. P-ClArC's projection hook). Every image file directly in DIR (sorted; any format
Pillow reads, 16-bit grayscale scaled as the data sets scale it) is resized to the checkpoint's image
size and normalised with the mean and std of the data set it was trained on (checkpoints do not record
them: the data set named in its config is opened to read them; --mean/--std instead). Writes, in --out:

    <stem>_heatmap.png   relevance summed over the colour channels, red for the explained class, blue
                         against it, one symmetric scale per image (white: 0)
    index.json           per image: predicted class, explained class, its logit, the relevance sum;
                         the settings. Written last; an earlier one is removed before the first heatmap
                         is written, so a run that stopped half-way leaves none.

--rule epsilon (default): epsilon-LRP (--input_rule gradient, or zb with the images' true bounds);
z_plus: the composite the audit computes (z+ on convolutions). --target K explains class K for every
image (default: each image's predicted class).
"""
import argparse
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from utils.cli import main_entry
from utils.errors import UserError
from utils.io import atomic_path, write_json

INDEX = "index.json"
COMMON_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")  # named when a folder has none
SHOWN_ROWS = 20  # rows of the table printed at the end; index.json has them all


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt_path", required=True, help="checkpoint written by training or mitigation")
    parser.add_argument("--images", required=True, help="folder of image files")
    parser.add_argument("--out", required=True, help="folder for the heatmap PNGs and index.json")
    parser.add_argument("--rule", choices=["epsilon", "z_plus"], default="epsilon")
    parser.add_argument("--input_rule", choices=["gradient", "zb"], default=None,
                        help="rule epsilon: the input layer's rule (default gradient)")
    parser.add_argument("--target", type=int, default=None, help="class to explain (default: the predicted one)")
    parser.add_argument("--img_size", type=int, default=None, help="default: the checkpoint's")
    parser.add_argument("--mean", type=float, nargs="+", help="normalisation mean per channel (with --std)")
    parser.add_argument("--std", type=float, nargs="+", help="normalisation std per channel (with --mean)")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    return parser


@main_entry
def main(argv=None):
    args = build_parser().parse_args(argv)
    return run_explain(args)


def run_explain(args):
    """Explain every image of ``args.images``; returns the rows of index.json."""
    from model_training.corrections.loading import load_corrected_model
    from utils.device import resolve_device

    if args.input_rule is not None and args.rule != "epsilon":
        raise UserError(f"--input_rule belongs to --rule epsilon; --rule {args.rule} uses its composite's rules")
    if args.batch_size < 1:
        raise UserError(f"--batch_size: a positive number, got {args.batch_size}")
    checkpoint = _checkpoint(args.ckpt_path)
    images = list_images(args.images)  # before any slow work: an empty folder is answered at once
    for path in images:  # a broken file is answered before the first heatmap is written
        check_readable(path)
    _check_target(args.target, checkpoint, args.ckpt_path)
    settings = _settings(checkpoint, args)
    device = resolve_device(args.device)
    model = load_corrected_model(args.ckpt_path, device)
    out = Path(args.out)
    (out / INDEX).unlink(missing_ok=True)  # index.json marks a finished run; the old one describes another
    rows = []
    with tqdm(total=len(images), desc="explaining", unit="image") as progress:
        for start in range(0, len(images), args.batch_size):
            batch = images[start:start + args.batch_size]
            x = torch.stack([read(path, settings) for path in batch]).to(device)
            rows += _explain_batch(model, x, batch, args, settings, out)
            progress.update(len(batch))
    write_json(out / INDEX, {"checkpoint": str(args.ckpt_path), "images": str(args.images), "rule": args.rule,
                             "input_rule": settings["input_rule"], "img_size": settings["img_size"],
                             "mean": settings["mean"], "std": settings["std"],
                             "normalisation": settings["source"], "samples": rows})
    _print_results(rows, out)
    return rows


# --- the checkpoint and what it says about its inputs ------------------------------------------------
def _checkpoint(path):
    from utils.checkpoint import load_checkpoint

    return load_checkpoint(path, required=("model_name", "n_classes"),
                           what="a checkpoint written by this project's training or mitigation step")


def _settings(checkpoint, args):
    """Image size, channels, normalisation (and where it came from), z^B bounds for this run."""
    from models import get_model_spec

    path, config = args.ckpt_path, checkpoint.get("config") or {}
    spec = get_model_spec(checkpoint["model_name"])
    if spec.modality != "image":
        raise UserError(f"checkpoint {path} holds '{spec.name}', a {spec.modality} model; experiments.explain "
                        "reads image files")
    size = args.img_size or checkpoint.get("img_size") or config.get("img_size")
    if not size or size < 1:
        raise UserError(f"checkpoint {path} records no image size; give --img_size")
    channels = _in_channels(checkpoint)
    mean, std, source = _normalisation(config, args, int(size), path)
    if len(mean) == 1:
        mean, std = mean * channels, std * channels
    if len(mean) != channels or len(std) != channels:
        raise UserError(f"normalisation has {len(mean)} mean and {len(std)} std values; the model in {path} "
                        f"reads {channels} channel(s)")
    if any(s <= 0 for s in std):
        raise UserError(f"--std: every value must be positive, got {std}")
    input_rule = args.input_rule or ("gradient" if args.rule == "epsilon" else None)
    # z^B's bounds: the normalised images' true minimum and maximum, normalize(0) and normalize(1)
    low = [(0.0 - m) / s for m, s in zip(mean, std)]
    high = [(1.0 - m) / s for m, s in zip(mean, std)]
    return {"img_size": int(size), "channels": channels, "mean": mean, "std": std, "source": source,
            "input_rule": input_rule, "low": low, "high": high}


def _in_channels(checkpoint):
    """What the first layer reads: recorded by corrected checkpoints, else its weight's second dim."""
    if checkpoint.get("in_channels"):
        return int(checkpoint["in_channels"])
    first = next((v for v in checkpoint["model_state_dict"].values() if v.dim() >= 3), None)
    return 3 if first is None else int(first.shape[1])


def _normalisation(config, args, size, path):
    """``(mean, std, source)``: --mean/--std, else the training data set's (checkpoints do not record
    normalisation; the data set named in the config defines it)."""
    if (args.mean is None) != (args.std is None):
        raise UserError("--mean and --std go together; give both or neither")
    if args.mean is not None:
        return list(args.mean), list(args.std), "--mean/--std"
    name = config.get("dataset_name")
    if not name:
        raise UserError(f"checkpoint {path} records neither a normalisation nor its data set; give --mean and --std")
    print(f"{path} records no normalisation: using that of its data set '{name}'")
    try:
        split = _training_split(config, name, size)
    except UserError as error:
        raise UserError(f"checkpoint {path} records no normalisation and its data set '{name}' cannot be opened "
                        f"({error}); give --mean and --std") from None
    return _values(split.mean), _values(split.std), f"data set '{name}'"


def _values(tensor):
    return [round(float(v), 6) for v in tensor.flatten()]  # float32 constants, written as they were typed


def _training_split(config, name, size):
    """The training split of the checkpoint's data set, as its config opens it (paths from the config
    or the local config); without artifacts, which do not change the normalisation."""
    from types import SimpleNamespace

    from datasets import get_dataset
    from datasets.registry import ATTACKED_SUFFIX
    from utils.paths import data_paths

    base = name.removesuffix(ATTACKED_SUFFIX)
    roots = data_paths(SimpleNamespace(dataset_name=name, data_paths=config.get("data_paths") or []))
    return get_dataset(base, img_size=size, seed=config.get("seed", 0), data_paths=roots, artifacts={},
                       dataset_options=config.get("dataset_options") or {}).train


def _check_target(target, checkpoint, path):
    k = int(checkpoint["n_classes"])
    if target is not None and not 0 <= target < k:
        raise UserError(f"--target {target}: the model in {path} has {k} classes (0..{k - 1})")


# --- images -------------------------------------------------------------------------------------------
def list_images(folder):
    """The image files directly in ``folder``, sorted by name (suffixes Pillow can open)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"--images: folder not found: {folder.resolve()}")
    suffixes = set(Image.registered_extensions())
    images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes
                    and not p.name.startswith("."))
    if not images:
        raise UserError(f"--images: no image files in {folder} (looked for {', '.join(COMMON_SUFFIXES)}, ...)")
    stems = {}
    for path in images:
        if path.stem in stems:
            raise UserError(f"--images: {stems[path.stem].name} and {path.name} would both write "
                            f"{path.stem}_heatmap.png; rename one")
        stems[path.stem] = path
    return images


def check_readable(path):
    """Open ``path`` and check its structure (Pillow's ``verify``: headers and checksums, no decoding)."""
    try:
        with Image.open(path) as image:
            image.verify()
    except Exception as error:  # Pillow raises many types for a broken file
        raise UserError(f"cannot read image {path}: {_first_line(error)}") from None


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def read(path, settings):
    """One image as the model reads it: resized, in [0, 1], grey for a one-channel model, normalised."""
    from datasets.files import read_image

    try:
        x = read_image(path, settings["img_size"])
    except Exception as error:  # what verify does not see (a truncated pixel stream)
        raise UserError(f"cannot read image {path}: {_first_line(error)}") from None
    if settings["channels"] == 1:
        x = x.mean(0, keepdim=True)
    elif settings["channels"] != 3:
        raise UserError(f"the model reads {settings['channels']} channels; image files give 1 or 3")
    mean = torch.tensor(settings["mean"]).view(-1, 1, 1)
    std = torch.tensor(settings["std"]).view(-1, 1, 1)
    return (x - mean) / std


# --- explaining and writing ---------------------------------------------------------------------------
def _explain_batch(model, x, paths, args, settings, out):
    from utils.lrp import explain

    low = high = None
    if settings["input_rule"] == "zb":
        low, high = torch.tensor(settings["low"]), torch.tensor(settings["high"])
    result = explain(model, x, target=args.target, rule=args.rule, input_rule=args.input_rule, low=low, high=high)
    predicted = result.logits.argmax(1)
    rows = []
    for i, path in enumerate(paths):
        heatmap = result.heatmap[i].sum(0).cpu()  # the colour channels' relevance together
        name = f"{path.stem}_heatmap.png"
        with atomic_path(out / name) as tmp:
            heatmap_image(heatmap).save(tmp, format="PNG")
        rows.append({"image": path.name, "heatmap": name, "predicted": int(predicted[i]),
                     "explained": int(result.target[i]), "logit": float(result.logits[i, result.target[i]]),
                     "relevance_sum": float(heatmap.sum())})
    return rows


def heatmap_image(heatmap):
    """A (H, W) relevance map as RGB: blue (negative) - white (0) - red (positive), symmetric about 0."""
    import numpy as np

    values = np.asarray(heatmap, dtype=np.float64)
    bound = float(np.abs(values).max()) or 1.0
    v = np.clip(values / bound, -1, 1)
    red, blue = np.where(v < 0, 1 + v, 1.0), np.where(v > 0, 1 - v, 1.0)
    pixels = np.stack([red, 1 - np.abs(v), blue], -1)
    return Image.fromarray((pixels * 255 + 0.5).astype(np.uint8))


def _print_results(rows, out):
    from utils.table import format_table

    print(f"\n{len(rows)} heatmaps; predicted and explained class, logit of the explained class, relevance sum")
    print(format_table(rows[:SHOWN_ROWS]))
    if len(rows) > SHOWN_ROWS:
        print(f"... {len(rows) - SHOWN_ROWS} more in {out / INDEX}")
    print(f"outputs: {out}")


if __name__ == "__main__":
    main()
