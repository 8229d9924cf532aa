"""The pipeline's default mitigation on settings nobody tuned it on:
``python -m experiments.benchmarks.mitigation [--settings NAME ...] [--seeds 0 1 2] [--output_dir DIR]``.

Each setting trains its original model (cached), then runs the mitigation of its pipeline config
exactly as ``run_pipeline`` does (every method, each strength of its sweep chosen on validation,
every seed) with ground-truth artifact masks, and reports per method: clean and attacked test
accuracy, gap closed (mean ± sd over the seeds) beside its clean cost, the status and the chosen
strength. The reveal, annotation and localization steps are left out: they do not change what is
corrected. Not a test: it takes hours on two cores (about 25 minutes a setting).

Settings (none of them was used to choose a default):

* ``synth_derm_band_aid``: the demo (``config_files/pipeline/synth_derm.yaml``);
* ``synth_derm_skin_marker``: the same data with another shortcut, a skin marker in a third of the
  melanomas (and no band-aid);
* ``synth_derm_seed1``: the demo with another seed for the data and the training;
* ``synth_ecg_defective_lead``: ``config_files/pipeline/synth_ecg.yaml``;
* ``synth_shapes_image_folder``: a 6-class shape task (``synth_shapes``) exported as a bring-your-own
  image folder, its artifact annotated with masks (clean/attacked subsets by pasting).

Beside the original model, each setting trains a **reference**: the same training on the same data
with the shortcut under study left out (the other artifacts stay), evaluated on the same test
subsets. Its attacked accuracy is what a model that never learned the shortcut gets there, so
``gap_closed_attainable`` (attacked accuracy gained over the original, as a share of the
reference's gain) says how much of the *shortcut's* part of the gap a correction closed. The
clean-attacked gap also holds what the artifact costs a model without the shortcut (occlusion, an
unseen pattern); ``gap_closed`` counts that part too, and no correction can close it.

Each setting's result is written to ``<output_dir>/settings/<setting>.json`` as soon as it is done;
``benchmark.json`` and ``benchmark.md`` sum up every setting measured into the folder so far, so the
settings may be run one at a time (``python -m experiments.readme_numbers`` reads them).
"""
import argparse
import time
from pathlib import Path

import numpy as np
import yaml

from datasets.export_image_folder import export_image_folder
from datasets.registry import get_dataset_entry, get_dataset_from_config
from model_training.corrections.data import correction_splits
from model_training.corrections.loading import load_corrected_model
from model_training.trainer import run_training
from utils.cli import main_entry
from utils.config import TrainingConfig, load_config
from utils.device import resolve_device
from utils.errors import UserError
from utils.evaluation.compare import BEST_RULE, best, display_rows, write_comparison
from utils.evaluation.runner import correct_and_evaluate
from utils.io import nan_for_null, read_json, write_json, write_text
from utils.metrics import evaluate_subsets
from utils.pipeline.config import PipelineConfig
from utils.provenance import provenance
from utils.table import format_table, markdown_table

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = ROOT / "config_files" / "pipeline"
SHAPES_TRAINING = ROOT / "config_files" / "training" / "synth_shapes" / "tiny_vgg_adam_lr0.003.yaml"
COLUMNS = ["setting", "method", "strength", "status", "clean", "attacked", "gap_closed", "gap_closed_attainable",
           "clean_change", "p_attacked", "seeds"]
REFERENCE = "reference"
MIN_ATTAINABLE = 0.1  # share of the gap the reference must close for gap_closed_attainable to be defined


def _pipeline(name):
    return yaml.safe_load((PIPELINES / f"{name}.yaml").read_text())


def _skin_marker():
    config = _pipeline("synth_derm")
    return {**config, "artifact": "skin_marker",
            "artifacts": {"skin_marker": {"melanoma": 0.33}, "ruler": {"benign": 0.15, "melanoma": 0.15}}}


def _shapes_export(output_dir, without_artifacts=False):
    """An image-folder export of synth_shapes (written once under ``output_dir``), optionally without
    its artifacts (for the reference)."""
    source = load_config(SHAPES_TRAINING, TrainingConfig)
    if without_artifacts:
        source = source.model_copy(update={"artifacts": {}})
    export = output_dir / ("synth_shapes_export_without_artifacts" if without_artifacts else "synth_shapes_export")
    if not (export / "labels.csv").is_file():
        export_image_folder(get_dataset_from_config(source), export)
    return export, source


def _shapes(output_dir):
    """The image-folder pipeline on an export of synth_shapes."""
    training = yaml.safe_load(SHAPES_TRAINING.read_text())
    export, source = _shapes_export(output_dir)
    config = _pipeline("image_folder")
    artifact = next(iter(get_dataset_from_config(source).train.artifact_names))
    own = {k: training[k] for k in ("num_epochs", "milestones", "lr", "optimizer", "loss") if k in training}
    return {**config, "data_paths": [str(export)], "artifact": artifact, "img_size": training.get("img_size", 64),
            "training": {**config["training"], **own}}


SETTINGS = {
    "synth_derm_band_aid": lambda out: _pipeline("synth_derm"),
    "synth_derm_skin_marker": lambda out: _skin_marker(),
    "synth_derm_seed1": lambda out: {**_pipeline("synth_derm"), "seed": 1},
    "synth_ecg_defective_lead": lambda out: _pipeline("synth_ecg"),
    "synth_shapes_image_folder": _shapes,
}


def _without_shortcut(raw, output_dir):
    """Training data of a setting without its shortcut: the artifact under study is left out of the
    embedded data set's artifacts, or (an image folder) the folder is exported without it."""
    unbiased = {**raw, "artifact": None}  # the shortcut is not in these data
    if raw["dataset_name"] == "image_folder":  # an export: only the export of synth_shapes has a twin without it
        export, _ = _shapes_export(output_dir)
        if [str(p) for p in raw.get("data_paths", [])] != [str(export)]:
            raise UserError(f"no reference for the image folder {raw.get('data_paths')}: only the synth_shapes export "
                            "can be written again without its artifact")
        return {**unbiased, "data_paths": [str(_shapes_export(output_dir, without_artifacts=True)[0])]}
    artifacts = raw.get("artifacts")
    artifacts = get_dataset_entry(raw["dataset_name"]).default_artifacts if artifacts is None else artifacts
    return {**unbiased, "artifacts": {k: v for k, v in artifacts.items() if k != raw["artifact"]}}


def reference_row(name, raw, config, output_dir, original, log=print):
    """Train (cached) the setting's reference and evaluate it on the setting's test subsets."""
    reference = PipelineConfig.model_validate({**_without_shortcut(raw, output_dir), "config_name": f"{name}_reference"})
    reference._source_file = f"benchmark setting {name} (reference)"
    out_dir, _ = run_training(reference.training_config(), resume=True)
    evaluation = config.mitigation_configs(out_dir / "checkpoints" / "best.pt")[0]
    device = resolve_device(evaluation.device)
    model = load_corrected_model(evaluation.ckpt_path, device)
    metrics = evaluate_subsets(model, correction_splits(evaluation).test, evaluation.batch_size, device,
                               evaluation.num_workers, subsets=("clean", "attacked", "ch"))
    acc = {mode: m["accuracy"] for mode, m in metrics.items()}
    gap = original["clean"] - original["attacked"]
    log(f"{name}: reference without {raw['artifact']}: clean {acc['clean']:.3f}, attacked {acc['attacked']:.3f}")
    return {"method": REFERENCE, "config": reference.config_name, "layer": "-",
            "strength": f"no {raw['artifact']} in training", "seeds": 1, "status": "-",
            "clean": acc["clean"], "attacked": acc["attacked"], "ch": acc["ch"],
            # as for the corrections: the share of the original's clean-attacked gap that is gone
            "gap_closed": ((acc["attacked"] - acc["clean"]) + gap) / gap if gap > 0 else float("nan"),
            "clean_change": acc["clean"] - original["clean"]}


def with_attainable_gap(rows, reference):
    """Every row with ``gap_closed_attainable``: its ``gap_closed`` as a share of the reference's, and the
    reference's row last. Undefined (``nan``) where the reference closes less than
    :data:`MIN_ATTAINABLE` of the gap: then the artifact costs a model that never learned it about as much
    as the original, the gap is not a learned shortcut, and a ratio to a near-zero gain would only
    amplify noise."""
    attainable = reference["gap_closed"]
    usable = np.isfinite(attainable) and attainable >= MIN_ATTAINABLE

    def share(row, key):
        value = row.get(key)
        return value / attainable if usable and value is not None else float("nan")

    return [{**row, "gap_closed_attainable": share(row, "gap_closed"),
             "gap_closed_attainable_sd": share(row, "gap_closed_sd")} for row in rows + [reference]]


def run_setting(name, seeds, output_dir, log=print):
    """Train (cached) and correct one setting; returns its comparison rows."""
    raw = {**SETTINGS[name](output_dir), "config_name": name, "output_dir": str(output_dir)}
    raw["mitigation_common"] = {**raw.get("mitigation_common", {}), "seeds": list(seeds)}
    config = PipelineConfig.model_validate(raw)
    config._source_file = f"benchmark setting {name}"
    start = time.time()
    training = config.training_config()
    out_dir, _ = run_training(training, resume=True)
    log(f"{name}: original model ready ({time.time() - start:.0f} s)")
    result = correct_and_evaluate(config.mitigation_configs(out_dir / "checkpoints" / "best.pt"), log=log)
    original = next(r for r in result.rows() if r["method"] == "original")
    reference = reference_row(name, raw, config, output_dir, original, log)
    rows = with_attainable_gap(result.rows(), reference)
    first = result.candidates[0][0]
    write_comparison(rows, with_attainable_gap(result.all_rows(), reference),
                     output_dir / "evaluation" / first.dataset_name / first.model_name, f"benchmark_{name}")
    log(f"{name}: done in {time.time() - start:.0f} s")
    return rows


def setting_path(output_dir, name):
    return Path(output_dir) / "settings" / f"{name}.json"


def read_settings(output_dir) -> dict:
    """``{setting: {"seeds", "best_rule", "rows", "best"}}`` of every setting measured into ``output_dir``,
    in the order of :data:`SETTINGS`."""
    results = {name: read_json(setting_path(output_dir, name)) for name in SETTINGS
               if setting_path(output_dir, name).is_file()}
    return {name: {**result, "rows": _derived(nan_for_null(result["rows"]))} for name, result in results.items()}


def _derived(rows):
    """Rows with the columns derived from others recomputed by today's rule (``gap_closed_attainable``)."""
    reference = [row for row in rows if row["method"] == REFERENCE]
    if not reference:
        return rows
    return with_attainable_gap([row for row in rows if row["method"] != REFERENCE], reference[0])


def summary_rows(name, rows):
    cells = display_rows(rows, COLUMNS[1:])
    return [{"setting": name, **cell} for cell in cells]


@main_entry
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS), help=f"any of {', '.join(SETTINGS)}")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds of every correction")
    parser.add_argument("--output_dir", default="outputs/benchmarks/mitigation")
    args = parser.parse_args(argv)
    unknown = [s for s in args.settings if s not in SETTINGS]
    if unknown:
        raise UserError(f"--settings: unknown {', '.join(unknown)}; valid: {', '.join(SETTINGS)}")
    if len(set(args.seeds)) != len(args.seeds):
        raise UserError(f"--seeds: each seed once, got {args.seeds}")
    output_dir = Path(args.output_dir)
    for name in args.settings:
        rows = run_setting(name, args.seeds, output_dir)
        winner = best(rows)
        write_json(setting_path(output_dir, name), {"seeds": args.seeds, "best_rule": BEST_RULE, "rows": rows,
                                                    "best": winner, "provenance": provenance()})
        print(format_table(summary_rows(name, rows), COLUMNS))
        print(f"best correction: {winner['method'] + ' ' + winner['strength'] if winner else 'none'}\n")
    # the summary holds every setting measured into this folder so far: settings may be run one at a time
    results = read_settings(output_dir)
    table = [row for name, result in results.items() for row in summary_rows(name, result["rows"])]
    write_json(output_dir / "benchmark.json", {"best_rule": BEST_RULE, "settings": results})
    write_text(output_dir / "benchmark.md", markdown_table(table, COLUMNS) + f"\n\nbest: {BEST_RULE}\n")
    print(format_table(table, COLUMNS))
    print(f"outputs: {output_dir / 'benchmark.md'}")
    return results


if __name__ == "__main__":
    main()
