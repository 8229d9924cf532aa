"""What a real data set costs: preprocessing, one correction epoch and one evaluation, timed per image:
``python -m experiments.benchmarks.scale [--models vgg16,resnet50] [--img_size 224] [--n_images 256]
[--methods RRR,RRClarc] [--gpu_speedup 30] [--output outputs/benchmarks/scale.json]``.

For each model of ``--models``, on ``--n_images`` images of the embedded data set ``synth_derm`` (its
band-aid as the artifact, as the committed configs of ``config_files/``) at ``--img_size`` px, with an
untrained model of ``models.get_model`` saved as a checkpoint (speed does not depend on the weights;
nothing is downloaded), it runs the library steps every entry point runs, on YAML configs it writes and
loads like a user's (kept in ``--work_dir`` when given, else in a temporary folder that is removed):

1. **preprocessing** (``utils.preprocessing.preprocess``, the step of
   ``experiments.preprocessing.run_preprocessing``) of the training split: seconds per image, and the size
   of the HDF5 store it writes per image (``--heatmap_size`` as that config key; default: full-size
   heatmaps);
2. **one correction epoch** per method of ``--methods`` (``model_training.corrections.run.run_correction``,
   the step of ``start_model_correction``; each method with its own defaults, at the model's default layer;
   ``--method_option METHOD.KEY=VALUE`` changes a key): seconds per training image of the method's
   preparation (RR-ClArC: its CAV on the model's activations of the training split) plus the fine-tuning
   epoch (forward, loss, backward, optimizer step). Left out: the validation after the epoch,
   checkpoint writing and model loading, which do not grow with the training set (the validation grows
   with the validation split: it costs about what the evaluation below costs per image). RRR's default
   is the input gradient with the layers up to the default layer frozen; the published ISIC configs
   (``config_files/bias_mitigation_controlled/isic_attacked``) also train it unfrozen with the LRP
   composite: ``--method_option RRR.freeze=false --method_option RRR.rrr_explanation=lrp_composite
   --method_option RRR.rrr_penalty=positive_share``;
3. **one evaluation** (``utils.evaluation.steps.evaluate_by_subset``, the step of
   ``evaluate_by_subset_attacked``) of the first method's corrected model and the original model on the
   clean / attacked / ch subsets of a test split of ``--n_images`` images (six forward passes per image,
   checkpoint loading included): seconds per test image.

Drawing the synthetic images is done (and timed) once before the steps and left out of their times:
ISIC images are read from files instead. Splits: ``--n_images`` training and test images and a validation
split of an eighth of that (at least 8; ISIC-like proportions).

Each step's seconds per image is extrapolated to ISIC 2019 (25,331 images): hours = seconds per image x
25,331 / 3600 (a step that sees a split of it, e.g. a test split of a tenth, takes that share), on this
machine, and on one GPU as those hours / ``--gpu_speedup``. **The GPU column is an assumption, not a
measurement**, unless a speedup measured on the same steps is passed: the default, 30x, is a rough
figure for fp32 VGG16/ResNet50 forward and backward passes on one data-centre GPU against two CPU cores,
and it ignores that on a GPU reading and decoding the images may become the bottleneck.

Writes ``--output`` (JSON: every raw number, the settings, provenance with the commit, the CPU model) and
a Markdown table beside it (same name, ``.md``). Not a test. The correction status an untrained model
gets (ok, degraded, collapsed) means nothing here. Every step runs with ``--batch_size`` (default 16, for
the memory of double backward passes at 224 px on a CPU; the JSON records the peak memory).
"""
import argparse
import contextlib
import functools
import gc
import math
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

import torch
import yaml

from datasets import get_dataset_from_config
from model_training.corrections import get_correction_method
from model_training.corrections.run import run_correction
from model_training.trainer import Trainer
from models import get_model, get_model_spec
from utils.checkpoint import save_checkpoint
from utils.cli import main_entry
from utils.config import AuditConfig, load_config
from utils.config.mitigation import MitigationConfig
from utils.errors import UserError
from utils.evaluation.steps import evaluate_by_subset
from utils.io import write_json, write_text
from utils.preprocessing import preprocess
from utils.provenance import provenance, stamp
from utils.table import MISSING, format_table, markdown_table

ISIC2019_IMAGES = 25_331  # the ISIC 2019 training set (images with ground truth)
DEFAULT_GPU_SPEEDUP = 30.0  # assumed, not measured: see the module docstring
DATASET, ARTIFACT = "synth_derm", "band_aid"


def isic_hours(seconds_per_image):
    """Hours of a step over ISIC 2019 at ``seconds_per_image``."""
    return seconds_per_image * ISIC2019_IMAGES / 3600


def cpu_model():
    """The CPU's model name (``/proc/cpuinfo``; elsewhere what ``platform`` knows)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or None


def peak_rss_mib():
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextlib.contextmanager
def stopwatch(owner, name, seconds):
    """While inside, add the wall time of every call of ``owner.name`` (a method) to ``seconds[name]``.
    Only measures: arguments, result and exceptions pass through unchanged."""
    own = name in vars(owner)
    original = getattr(owner, name)

    @functools.wraps(original)
    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start

    setattr(owner, name, timed)
    try:
        yield seconds
    finally:
        if own:
            setattr(owner, name, original)
        else:  # inherited: remove the wrapper, the base class's method shows through again
            delattr(owner, name)


def _per_image(seconds, n, speedup, per_image=None):
    """A step's record: ``seconds`` over ``n`` images (``per_image`` when it is not their ratio) and the
    extrapolation to ISIC 2019 here and on one GPU."""
    per_image = seconds / n if per_image is None else per_image
    return {"seconds": seconds, "n_images": n, "s_per_image": per_image,
            "isic2019_hours_here": isic_hours(per_image), "isic2019_hours_gpu": isic_hours(per_image) / speedup}


def images_per_epoch(n_train, batch_size):
    """Training images one epoch passes through: the Trainer drops an incomplete last batch when the
    split holds more than one batch (``model_training.trainer.Trainer._loader``)."""
    return n_train if n_train <= batch_size else n_train - n_train % batch_size


class ScaleRun:
    """The configs and outputs of one model's measurement, in ``folder``."""

    def __init__(self, model, args, folder):
        self.model, self.args, self.folder = model, args, Path(folder)
        self.n_train = args.n_images
        self.n_val = max(8, args.n_images // 8)
        self.ckpt = self.folder / f"untrained_{model}.pt"
        self.common = {"dataset_name": DATASET, "artifact": ARTIFACT, "img_size": args.img_size, "seed": 0,
                       "model_name": model, "batch_size": args.batch_size, "device": "cpu",
                       "output_dir": str(self.folder / "outputs"), "ckpt_path": str(self.ckpt),
                       "dataset_options": {"n_train": self.n_train, "n_val": self.n_val, "n_test": args.n_images}}

    def _config(self, name, keys, schema):
        path = self.folder / "configs" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump({**self.common, **keys}, sort_keys=False))
        return load_config(path, schema)  # validated as a user's file is

    def audit_config(self):
        keys = {"splits": ["train"]}
        if self.args.heatmap_size is not None:
            keys["heatmap_size"] = self.args.heatmap_size
        return self._config(f"scale_{self.model}", keys, AuditConfig)

    def mitigation_config(self, method):
        keys = {"method": method, "num_epochs": 1, "milestones": [], "eval_splits": ["test"],
                **self.args.method_options.get(method, {})}
        return self._config(f"scale_{self.model}_{method}", keys, MitigationConfig)

    def draw_data(self, config):
        """Draw every sample of every split once (the process's render cache keeps them for the steps);
        returns (seconds, samples drawn, n_classes, in_channels)."""
        start = time.perf_counter()
        data = get_dataset_from_config(config)
        n = 0
        for split in (data.train, data.val, data.test):
            for i in range(len(split)):
                split.load_raw(i)
                n += 1
        return time.perf_counter() - start, n, data.n_classes, data.in_channels

    def save_untrained(self, n_classes, in_channels):
        torch.manual_seed(0)
        model = get_model(self.model, n_classes, img_size=self.args.img_size, in_channels=in_channels)
        save_checkpoint(self.ckpt, model, self.model, n_classes, {"note": "untrained, for timing only"},
                        in_channels=int(in_channels), img_size=self.args.img_size)


def measure_preprocessing(config, speedup):
    start = time.perf_counter()
    results = preprocess(config, splits=["train"], force=True)
    seconds = time.perf_counter() - start
    store_bytes = sum(Path(r.path).stat().st_size for r in results)
    n = sum(r.n_samples for r in results)
    return {**_per_image(seconds, n, speedup), "store_bytes": store_bytes,
            "store_mb_per_image": store_bytes / n / 1e6, "stores": [Path(r.path).name for r in results],
            "peak_rss_mib_so_far": peak_rss_mib()}


def measure_correction(config, n_train, speedup):
    """One epoch of ``config``'s correction: its preparation and fine-tuning epoch per training image; the
    rest of the run (loading, validation, checkpoints) in ``other_seconds``."""
    seconds = {}
    method = get_correction_method(config.method)
    start = time.perf_counter()
    with stopwatch(method, "prepare", seconds), stopwatch(Trainer, "train_epoch", seconds):
        _, metrics = run_correction(config, overwrite=True)
    total = time.perf_counter() - start
    prepare, epoch = seconds.get("prepare", 0.0), seconds.get("train_epoch", 0.0)
    trained = images_per_epoch(n_train, config.batch_size)  # the preparation sees every training image
    return {**_per_image(prepare + epoch, n_train, speedup, prepare / n_train + epoch / trained),
            "images_trained": trained, "prepare_seconds": prepare, "epoch_seconds": epoch,
            "other_seconds": total - prepare - epoch, "total_seconds": total,
            "status": metrics.get("selection", {}).get("status"), "peak_rss_mib_so_far": peak_rss_mib()}


def measure_evaluation(config, n_test, speedup):
    start = time.perf_counter()
    results = evaluate_by_subset(config)
    seconds = time.perf_counter() - start
    subsets = {mode: m["n"] for mode, m in results["corrected"]["test"].items()}
    return {**_per_image(seconds, n_test, speedup), "models": [m for m in ("corrected", "original") if m in results],
            "subsets": subsets, "peak_rss_mib_so_far": peak_rss_mib()}


def measure_model(run, audit, configs, args):
    """Every step for ``run.model`` with its configs (preprocessing, then one per method)."""
    model = run.model
    draw_seconds, n_drawn, n_classes, in_channels = run.draw_data(audit)
    run.save_untrained(n_classes, in_channels)
    result = {"data_draw_seconds": draw_seconds, "data_draw_s_per_image": draw_seconds / n_drawn,
              "splits": {"train": run.n_train, "val": run.n_val, "test": args.n_images}}
    print(f"{model}: drew {n_drawn} images in {draw_seconds:.1f} s (left out of the step times)", flush=True)
    result["preprocessing"] = measure_preprocessing(audit, args.gpu_speedup)
    result["corrections"] = {}
    for method, config in configs.items():
        gc.collect()
        result["corrections"][method] = measure_correction(config, run.n_train, args.gpu_speedup)
        print(f"{model}: {method}: one epoch in {result['corrections'][method]['epoch_seconds']:.1f} s", flush=True)
    gc.collect()
    result["evaluation"] = measure_evaluation(configs[args.methods[0]], args.n_images, args.gpu_speedup)
    result["evaluation"]["corrected_by"] = args.methods[0]
    return result


def columns(gpu_column):
    return ["model", "step", "s/image", "MB/image", "ISIC 2019 h (here)", gpu_column]


def _label(method, method_options):
    """The method's name, with the keys ``--method_option`` changed."""
    keys = method_options.get(method, {})
    return f"{method} ({', '.join(f'{k}={v}' for k, v in keys.items())})" if keys else method


def table_rows(results, gpu_column, method_options):
    """One row per model and step (numbers to 3 significant digits)."""

    def cells(model, step, m, mb=None):
        return {"model": model, "step": step, "s/image": _sig(m["s_per_image"]), "MB/image": _sig(mb),
                "ISIC 2019 h (here)": _sig(m["isic2019_hours_here"]), gpu_column: _sig(m["isic2019_hours_gpu"])}

    rows = []
    for model, result in results.items():
        preprocessing = result["preprocessing"]
        rows.append(cells(model, "preprocessing", preprocessing, preprocessing["store_mb_per_image"]))
        rows += [cells(model, f"{_label(method, method_options)}: 1 epoch", m)
                 for method, m in result["corrections"].items()]
        rows.append(cells(model, "evaluation", result["evaluation"]))
    return rows


def _sig(value):
    return MISSING if value is None else f"{value:.3g}"


def _methods(text):
    methods = [m.strip() for m in text.split(",") if m.strip()]
    if not methods:
        raise UserError("--methods: at least one correction method, e.g. RRR,RRClarc")
    for method in methods:
        get_correction_method(method)  # an unknown name: one line listing the valid ones
    return methods


def _models(text):
    models = [m.strip() for m in text.split(",") if m.strip()]
    if not models:
        raise UserError("--models: at least one model, e.g. vgg16,resnet50")
    for model in models:
        if get_model_spec(model).modality != "image":  # an unknown name: one line listing the valid ones
            raise UserError(f"--models: '{model}' is a {get_model_spec(model).modality} model; "
                            f"the benchmark's data ({DATASET}) are images")
    return models


def _method_options(items, methods):
    """``{method: {key: value}}`` from ``METHOD.KEY=VALUE`` items (values read as YAML)."""
    options = {}
    for item in items:
        name, sep, value = item.partition("=")
        method, dot, key = name.partition(".")
        if not (sep and dot and key):
            raise UserError(f"--method_option: METHOD.KEY=VALUE, got '{item}'")
        if method not in methods:
            raise UserError(f"--method_option: '{method}' is not one of --methods ({', '.join(methods)})")
        options.setdefault(method, {})[key] = yaml.safe_load(value)
    return options


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="vgg16,resnet50", help="comma-separated (default: %(default)s)")
    parser.add_argument("--img_size", type=int, default=224)
    parser.add_argument("--n_images", type=int, default=256,
                        help="training images, and as many test images (default: %(default)s)")
    parser.add_argument("--methods", default="RRR,RRClarc", help="comma-separated corrections (default: %(default)s)")
    parser.add_argument("--method_option", action="append", default=[], metavar="METHOD.KEY=VALUE",
                        help="a mitigation config key of one method, e.g. RRR.rrr_explanation=lrp_composite")
    parser.add_argument("--batch_size", type=int, default=16, help="batch size of every step (default: %(default)s)")
    parser.add_argument("--heatmap_size", type=int, default=None,
                        help="preprocessing: side of the stored input heatmaps (default: full size)")
    parser.add_argument("--gpu_speedup", type=float, default=None,
                        help=f"GPU / this machine speed ratio for the GPU column (default: {DEFAULT_GPU_SPEEDUP:g}, "
                             "an assumption, not a measurement)")
    parser.add_argument("--work_dir", default=None, help="keep configs and outputs here (default: a temporary "
                        "folder, removed at the end)")
    parser.add_argument("--output", default="outputs/benchmarks/scale.json", help="JSON results (default: %(default)s)")
    return parser


def parse_args(argv=None):
    args = build_parser().parse_args(argv)
    args.models, args.methods = _models(args.models), _methods(args.methods)
    args.method_options = _method_options(args.method_option, args.methods)
    if args.n_images < 1:
        raise UserError(f"--n_images: at least 1, got {args.n_images}")
    if args.img_size < 8:
        raise UserError(f"--img_size: at least 8, got {args.img_size}")
    if args.batch_size < 1:
        raise UserError(f"--batch_size: at least 1, got {args.batch_size}")
    given = args.gpu_speedup is not None
    if given and not (math.isfinite(args.gpu_speedup) and args.gpu_speedup > 0):
        raise UserError(f"--gpu_speedup: a positive number, got {args.gpu_speedup}")
    args.gpu_speedup_source = ("given with --gpu_speedup" if given else
                               "assumed, not measured (fp32 VGG16/ResNet50 on one data-centre GPU vs 2 CPU cores)")
    args.gpu_speedup = args.gpu_speedup if given else DEFAULT_GPU_SPEEDUP
    args.gpu_column = f"ISIC 2019 h (1 GPU, {'given' if given else 'ASSUMED'} {args.gpu_speedup:g}x)"
    return args


@main_entry
def main(argv=None):
    args = parse_args(argv)
    output = Path(args.output)
    with contextlib.ExitStack() as stack:
        root = Path(args.work_dir) if args.work_dir else Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="scale_benchmark_")))
        runs = {model: ScaleRun(model, args, root / model) for model in args.models}
        # every config is written and validated before any work: a bad key stops the run at once
        configs = {model: (run.audit_config(), {method: run.mitigation_config(method) for method in args.methods})
                   for model, run in runs.items()}
        results = {}
        for model, run in runs.items():
            results[model] = measure_model(run, *configs[model], args)
            if not args.work_dir:  # a VGG16's checkpoints take gigabytes: free them before the next model
                shutil.rmtree(root / model, ignore_errors=True)
    record = provenance()
    rows = table_rows(results, args.gpu_column, args.method_options)
    report = {"settings": {"dataset": DATASET, "artifact": ARTIFACT, "img_size": args.img_size,
                           "n_images": args.n_images, "batch_size": args.batch_size, "heatmap_size": args.heatmap_size,
                           "methods": args.methods, "method_options": args.method_options, "device": "cpu"},
              "isic2019_images": ISIC2019_IMAGES, "gpu_speedup": args.gpu_speedup,
              "gpu_speedup_source": args.gpu_speedup_source, "cpu_model": cpu_model(),
              "provenance": record, "models": results, "rows": rows}
    write_json(output, report)
    write_text(output.with_suffix(".md"), markdown(report) + "\n")
    print("\n" + format_table(rows, columns(args.gpu_column)))
    print(note(report))
    print(f"outputs: {output}")
    return report


def note(report):
    """What the table's columns mean and what was measured."""
    settings = report["settings"]
    return (f"ISIC 2019 = {report['isic2019_images']:,} images; 1 GPU = this machine's hours / "
            f"{report['gpu_speedup']:g}x, {report['gpu_speedup_source']}. {settings['n_images']} images of "
            f"{settings['dataset']} at {settings['img_size']} px, batches of {settings['batch_size']}, untrained "
            f"models, CPU {report['cpu_model']}.")


def markdown(report):
    """The table, its note and the run's stamp, from a written report (the README block of
    ``experiments.readme_numbers``)."""
    gpu_column = next(key for key in report["rows"][0] if key.startswith("ISIC 2019 h (1 GPU"))
    return (markdown_table(report["rows"], columns(gpu_column)) + f"\n\n{note(report)}\n\n"
            + stamp(report["provenance"], "one run"))


if __name__ == "__main__":
    main()
