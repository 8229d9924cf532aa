"""Background bias: does ISNet keep a model from using what lies outside the lesion?
``python -m experiments.benchmarks.background_bias [--seeds 0 1 2] [--variants ...] [--plain_ckpt PATH]
[--reference_ckpt PATH] [--quick] [--output_dir DIR]``.

The embedded dermoscopy data of the demo (``config_files/pipeline/synth_derm.yaml``): band-aids beside
the lesion in a third of the benign images and in no melanoma. The **plain** model is the demo's
(same training config and name, so ``--plain_ckpt`` may point at a demo run's
``outputs/training/synth_derm/tiny_vgg/synth_derm/checkpoints/best.pt``; otherwise it is trained once
into ``--output_dir`` and reused). Each ISNet variant fine-tunes it with the demo's correction settings
(Adam, lr 5e-4, two epochs, all layers trainable, A = 1 without the demo's sweep of A, ground-truth
lesion masks), once per seed:

* ``original`` (one heatmap per class), ``selective`` (the label's log-odds), ``stochastic`` (one
  random logit), all on the differentiable epsilon-LRP heatmap;
* ``dual`` (selective on the epsilon-LRP and the model's own z+ heatmap) and ``grad_x_input``
  (selective, gradient x input: the ablation without LRP), where this checkout's ISNet has the
  ``heatmap`` key.

Faster ISNet trains ISNets from scratch (``from_scratch: true``); here they fine-tune the trained model,
as the pipeline does by default: from scratch costs the plain training (24 epochs) again per variant
and seed at two to five times the cost of a step, hours on two CPU cores.

Every model is evaluated on four versions of the same test images (``datasets.with_artifacts``):
``biased`` (the training distribution), ``unbiased`` (no artifact), ``attacked`` (a band-aid in every
image) and ``confounding`` (a band-aid in every melanoma and in no benign image: the shortcut points
the wrong way). Per model and test set: accuracy (± its standard error), per-class AUROC and, for each
ISNet model, McNemar's test of accuracy and DeLong's test of the AUROC of the class the artifact is
evidence for, against the plain model on the same images. ISNet rows are mean ± sd over the seeds
(the p-values: the median over the seeds, and how many seeds had p < 0.05); the plain row is one model.
``--reference_ckpt`` adds a model trained on the same data without the band-aid (the mitigation
benchmark trains one): its confounding accuracy is what removing the shortcut can give, so it tells
whether a correction's gain was limited by the correction or by the data (the band-aid also covers skin
and lesion, and is a pattern such a model never saw).

A run's status is the worst of its validation status (the correction's own) and its test status: clean
(``unbiased``) test accuracy more than ``max_clean_drop`` below the plain model's is ``degraded``, at
the majority-class rate ``collapsed``; a row takes the worst over its seeds, is labelled so, and never
meets the bar (selective: confounding accuracy at least 15 points above the plain model's at no more
than 3 points lower unbiased accuracy). Not a test: the plain training (24 epochs) and 15 correction runs
(5 variants x 3 seeds) take about 15 minutes on two idle CPU cores (estimated from the demo's step times),
several times that on a shared machine; ``--quick`` is a smoke run on tiny data whose numbers mean nothing.

Finished trainings, corrections and predictions are reused; ``benchmark.json`` and ``benchmark.md``
are written atomically into ``--output_dir``.
"""
import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm import tqdm

from model_training.corrections import runs as correction_runs
from model_training.corrections.data import correction_splits
from model_training.corrections.loading import load_corrected_model
from model_training.corrections.selection import CleanBudget, worst
from model_training.trainer import run_training
from utils.checkpoint import load_checkpoint
from utils.cli import main_entry
from utils.config.mitigation import MitigationConfig
from utils.device import resolve_device
from utils.errors import UserError
from utils.evaluation.cache import data_key
from utils.evaluation.stats import format_mean_sd, mean_sd, paired_tests
from utils.identity import file_identity
from utils.io import nan_for_null, read_json, write_json, write_text
from utils.labels import biased_class_index
from utils.metrics import classification_metrics
from utils.pipeline.config import PipelineConfig
from utils.provenance import provenance, stamp
from utils.table import format_table, markdown_table

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config_files" / "pipeline" / "synth_derm.yaml"
# the benchmark's names of the evaluation subsets of datasets.with_artifacts
TEST_SETS = {"biased": "ch", "unbiased": "clean", "attacked": "attacked", "confounding": "confounding"}
PLAIN = "plain"
REFERENCE = "reference"  # a model trained without the shortcut (--reference_ckpt): what removing it can give
SAME_TRAINING_KEYS = ("dataset_name", "img_size", "seed", "dataset_options", "model_name")
# row name -> the ISNet keys it sets over the demo's ISNet correction
VARIANTS = {
    "original": {"variant": "original"},
    "selective": {"variant": "selective"},
    "stochastic": {"variant": "stochastic"},
    "dual": {"variant": "selective", "heatmap": "dual"},
    "grad_x_input": {"variant": "selective", "heatmap": "grad_x_input"},
}
BAR_VARIANT, BAR_GAIN, BAR_MAX_DROP = "selective", 0.15, 0.03
SIGNIFICANCE = 0.05
# --quick: a smoke run of every step (one seed unless --seeds says otherwise); its numbers mean nothing
QUICK = {"img_size": 32, "batch_size": 32, "dataset_options": {"n_train": 96, "n_val": 32, "n_test": 64},
         "training": {"num_epochs": 4, "milestones": []}, "mitigation_common": {"num_epochs": 1}}
COLUMNS = ["model", "status", "seeds", *TEST_SETS, "auroc confounding", "p_delong confounding",
           "p_mcnemar confounding"]


# --- configuration --------------------------------------------------------------------------
def available_variants(names):
    """``({name: keys}, {name: why not})``: the requested variants this checkout's ISNet config can express
    (``dual`` and ``grad_x_input`` need its ``heatmap`` key)."""
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise UserError(f"--variants: unknown {', '.join(unknown)}; valid: {', '.join(VARIANTS)}")
    usable, skipped = {}, {}
    for name in names:
        missing = [key for key in VARIANTS[name] if key not in MitigationConfig.model_fields]
        if missing:
            skipped[name] = f"this checkout's ISNet has no '{missing[0]}' option"
        else:
            usable[name] = VARIANTS[name]
    return usable, skipped


def benchmark_config(output_dir, variants, overrides=None) -> PipelineConfig:
    """The demo's pipeline config with one ISNet correction per variant (the demo's ISNet settings without
    its sweep of A); ``overrides`` (e.g. :data:`QUICK`) replace top-level keys and update sections."""
    raw = yaml.safe_load(DEMO.read_text())
    isnet = next(run for run in raw["mitigation"] if run["method"] == "ISNet")
    isnet = {k: v for k, v in isnet.items() if k != "sweep"}  # one strength: a sweep would triple the cost
    raw["mitigation"] = [{**isnet, **keys} for keys in variants.values()]
    for key, value in (overrides or {}).items():
        raw[key] = {**raw.get(key, {}), **value} if key in ("training", "mitigation_common") else value
    # the demo's name: the plain model's folder is the demo's; another setting gets one of its own
    name = "synth_derm" if not overrides else "synth_derm_" + hashlib.sha256(
        json.dumps(overrides, sort_keys=True).encode()).hexdigest()[:8]
    config = PipelineConfig.model_validate({**raw, "config_name": name, "output_dir": str(output_dir)})
    config._source_file = f"background-bias benchmark ({DEMO.name})"
    return config


def isnet_configs(config, ckpt, variants, seeds):
    """``{variant: its MitigationConfig}`` with ``seeds`` set after the pipeline config named the corrections:
    the name hashes the settings, and a run of seed 0 is the same run whatever other seeds are asked for,
    so a later ``--seeds 0 1 2`` reuses the runs of ``--seeds 0``."""
    return {name: mitigation.model_copy(update={"seeds": list(seeds)})
            for name, mitigation in zip(variants, config.mitigation_configs(ckpt))}


def plain_checkpoint(config, plain_ckpt=None, log=print) -> Path:
    """The plain model: ``plain_ckpt`` when given (it must be trained on the same data and model), else the
    demo's training run in the output folder (trained once, then reused)."""
    training = config.training_config()
    if plain_ckpt is None:
        start = time.time()
        out_dir, _ = run_training(training, resume=True)
        log(f"plain model ready ({time.time() - start:.0f} s)")
        return out_dir / "checkpoints" / "best.pt"
    trained_like(training, plain_ckpt, "--plain_ckpt", SAME_TRAINING_KEYS + ("artifacts",))
    return Path(plain_ckpt)


def trained_like(training, path, option, keys):
    """The training config stored in the checkpoint at ``path``, which must equal ``training``'s in ``keys``."""
    trained = load_checkpoint(path).get("config") or {}
    different = [k for k in keys if trained.get(k) != getattr(training, k)]
    if different:
        raise UserError(f"{option}: {path} was trained with other {', '.join(different)} than the benchmark's "
                        f"(e.g. {different[0]}: {trained.get(different[0])!r}, expected "
                        f"{getattr(training, different[0])!r})")
    return trained


def reference_checkpoint(config, path) -> Path:
    """A model trained on the same data and model without the target artifact (e.g. the mitigation benchmark's
    ``reference``): its confounding accuracy is what a model that never saw the shortcut gets there."""
    trained = trained_like(config.training_config(), path, "--reference_ckpt", SAME_TRAINING_KEYS)
    if trained.get("artifacts") is None or config.artifact in trained["artifacts"]:
        raise UserError(f"--reference_ckpt: {path} was trained with the {config.artifact}; a reference is trained "
                        f"without it (artifacts: {trained.get('artifacts')!r}, None meaning the data set's defaults)")
    return Path(path)


# --- evaluation ------------------------------------------------------------------------------
def render_test_sets(split):
    """``{test set: (normalised inputs, labels)}``: every version of the test images rendered once (drawing
    the artifacts is the costly part; 16 models read them)."""
    inputs = {}
    for name, mode in tqdm(TEST_SETS.items(), desc="rendering test sets", leave=False):
        view = split.with_mode(mode)
        view.augment = False
        xs, ys = zip(*(view[i] for i in range(len(view))))
        inputs[name] = (torch.stack(xs), np.asarray(ys))
    return inputs


@torch.no_grad()
def predict_sets(ckpt, inputs, batch_size, device):
    """Logits of the model at ``ckpt`` on every test set."""
    model = load_corrected_model(ckpt, device)
    return {name: torch.cat([model(x[i:i + batch_size].to(device)).float().cpu()
                             for i in range(0, len(x), batch_size)]).numpy()
            for name, (x, _) in inputs.items()}


def cached_logits(ckpt, inputs, cache, key, batch_size, device):
    """:func:`predict_sets`, kept in ``cache`` (a JSON file) while the checkpoint and the data are the same."""
    identity = {"checkpoint": file_identity(ckpt), "data": key}
    if cache.is_file():
        saved = read_json(cache)
        if saved.get("identity") == identity:
            return {name: np.asarray(values, dtype=np.float64) for name, values in saved["logits"].items()}
    logits = predict_sets(ckpt, inputs, batch_size, device)
    write_json(cache, {"identity": identity, "logits": logits})
    return logits


def set_metrics(logits, labels, class_names):
    """Accuracy with its standard error and the per-class AUROC of one model on one test set."""
    m = classification_metrics(torch.as_tensor(logits), torch.as_tensor(labels), class_names)
    return {k: m[k] for k in ("n", "accuracy", "accuracy_se", "per_class_auroc", "majority_rate")}


def model_record(logits, inputs, class_names, plain_logits=None, auroc_class=0):
    """A model's metrics on every test set and, beside the plain model's logits, the paired tests there."""
    record = {}
    for name, (_, labels) in inputs.items():
        record[name] = set_metrics(logits[name], labels, class_names)
        if plain_logits is not None:  # A = plain, B = this model: auc_b - auc_a is what the correction changed
            record[name]["paired"] = paired_tests(labels, plain_logits[name], logits[name], auroc_class)
    return record


def run_status(run_metrics, record, plain_record, max_clean_drop):
    """The worst of the correction's validation status and its test status against the plain model."""
    budget = CleanBudget.from_original({"clean": plain_record["unbiased"]}, max_clean_drop)
    return worst([run_metrics["selection"]["status"], budget.status(record["unbiased"]["accuracy"])])


# --- summary ----------------------------------------------------------------------------------
def _p_summary(values):
    """Median p over the seeds and how many seeds had p < 0.05, e.g. ``3.2e-05 (3/3)``."""
    values = [v for v in values if v == v]
    if not values:
        return "—"
    significant = sum(v < SIGNIFICANCE for v in values)
    return f"{float(np.median(values)):.2g} ({significant}/{len(values)})"


def summary_row(name, records, status, auroc_class):
    """One table row: accuracy per test set (mean ± sd over the records), the AUROC and the paired tests on
    the confounding set, the status."""
    row = {"model": name, "status": status, "seeds": len(records)}
    for test_set in TEST_SETS:
        row[test_set] = format_mean_sd([r[test_set]["accuracy"] for r in records])
    confounding = [r["confounding"] for r in records]
    row["auroc confounding"] = format_mean_sd([list(c["per_class_auroc"].values())[auroc_class] for c in confounding])
    paired = [c["paired"] for c in confounding if "paired" in c]
    row["p_delong confounding"] = _p_summary([p["auroc"]["p_value"] for p in paired]) if paired else "—"
    row["p_mcnemar confounding"] = _p_summary([p["accuracy"]["p_value"] for p in paired]) if paired else "—"
    return row


def detail_rows(results, class_names):
    """Per model and test set: accuracy ± its standard error (each the mean over the seeds) and the per-class
    AUROC (mean ± sd over the seeds)."""
    rows = []
    for name, entry in results.items():
        records = entry["records"]
        for test_set in TEST_SETS:
            accuracy = mean_sd([r[test_set]["accuracy"] for r in records])[0]
            se = mean_sd([r[test_set]["accuracy_se"] for r in records])[0]
            rows.append({"model": name, "test set": test_set, "n": records[0][test_set]["n"],
                         "accuracy ± se": f"{accuracy:.3f} ± {se:.3f}",
                         **{f"auroc {c}": format_mean_sd([r[test_set]["per_class_auroc"][c] for r in records])
                            for c in class_names}})
    return rows


def bar_verdict(results):
    """Whether ISNet selective meets the issue's bar against the plain model, and why not where it does not."""
    if BAR_VARIANT not in results:
        return {"met": False, "why": f"ISNet {BAR_VARIANT} was not run"}
    accuracy = {model: {s: mean_sd([r[s]["accuracy"] for r in results[model]["records"]])[0] for s in TEST_SETS}
                for model in (PLAIN, BAR_VARIANT, REFERENCE) if model in results}
    gain = accuracy[BAR_VARIANT]["confounding"] - accuracy[PLAIN]["confounding"]
    drop = accuracy[PLAIN]["unbiased"] - accuracy[BAR_VARIANT]["unbiased"]
    status = results[BAR_VARIANT]["status"]
    why = []
    if status != "ok":
        why.append(f"its status is {status}")
    if not gain >= BAR_GAIN - 1e-9:  # accuracies are multiples of 1/n: 0.802 - 0.652 is 0.15 give or take 1e-16
        why.append(f"confounding accuracy gained {100 * gain:.1f} points (bar: {100 * BAR_GAIN:.0f})")
    if not drop <= BAR_MAX_DROP + 1e-9:
        why.append(f"unbiased accuracy fell {100 * drop:.1f} points (bar: at most {100 * BAR_MAX_DROP:.0f})")
    # what a model that never learned the shortcut gains there: whether the bar can be reached at all
    attainable = accuracy[REFERENCE]["confounding"] - accuracy[PLAIN]["confounding"] if REFERENCE in accuracy \
        else float("nan")
    return {"met": not why, "confounding_gain": gain, "unbiased_drop": drop, "status": status,
            "reference_confounding_gain": attainable, "why": "; ".join(why) if why else "met"}


def bar_line(verdict):
    attainable = verdict.get("reference_confounding_gain", float("nan"))
    reference = (f"; the model trained without the shortcut gains {100 * attainable:.1f} points there"
                 if attainable == attainable else "")
    if verdict["met"]:
        return (f"bar met: ISNet {BAR_VARIANT} gains {100 * verdict['confounding_gain']:.1f} points on confounding "
                f"at {100 * verdict['unbiased_drop']:.1f} points lower unbiased accuracy (status ok){reference}")
    return f"bar NOT met by ISNet {BAR_VARIANT}: {verdict['why']}{reference}"


# --- the run -----------------------------------------------------------------------------------
def run_benchmark(output_dir, seeds=(0, 1, 2), variants=tuple(VARIANTS), overrides=None, plain_ckpt=None,
                  reference_ckpt=None, log=print):
    """Train (or reuse) the plain model and every ISNet variant, evaluate them on the four test sets, write
    ``benchmark.json`` and ``benchmark.md``; returns the written result."""
    start = time.time()
    output_dir = Path(output_dir)
    if len(set(seeds)) != len(seeds) or not seeds:
        raise UserError(f"--seeds: at least one, each once; got {list(seeds)}")
    usable, skipped = available_variants(list(variants))
    for name, why in skipped.items():
        log(f"skipping {name}: {why}")
    if not usable:
        raise UserError(f"--variants: none of them can run in this checkout ({'; '.join(skipped.values())})")
    config = benchmark_config(output_dir, usable, overrides)
    reference = reference_checkpoint(config, reference_ckpt) if reference_ckpt else None  # checked before training
    ckpt = plain_checkpoint(config, plain_ckpt, log)
    configs = isnet_configs(config, ckpt, usable, seeds)
    for name, mitigation in configs.items():  # each run is reused when it is finished
        log(f"ISNet {name}: {mitigation.config_name}")
        correction_runs.correct(mitigation, log=log)

    first = next(iter(configs.values()))
    splits = correction_splits(first)
    device = resolve_device(first.device)
    train = splits.train
    auroc_class = biased_class_index(train.labels, train.artifact_labels(first.artifact), train.n_classes)
    inputs = render_test_sets(splits.test)
    key = {**data_key(first, splits), "test_sets": TEST_SETS}
    cache = output_dir / "predictions"
    plain_logits = cached_logits(ckpt, inputs, cache / f"{config.config_name}_plain.json", key, first.batch_size,
                                 device)
    plain_record = model_record(plain_logits, inputs, train.class_names)
    results = {PLAIN: {"records": [plain_record], "status": "-", "checkpoints": [str(ckpt)]}}
    for name, mitigation in tqdm(configs.items(), desc="evaluating ISNet variants", leave=False):
        entry = results[name] = {"config": mitigation.config_name, "keys": usable[name], "records": [], "statuses": [],
                                 "seeds": [], "checkpoints": [], "correction_seconds": []}
        for run in correction_runs.expand(mitigation):
            metrics = correction_runs.run_metrics(run)
            if metrics is None:
                raise UserError(f"correction {run.config_name} did not finish; run the benchmark again to resume it")
            run_ckpt = correction_runs.corrected_checkpoint_path(run)
            logits = cached_logits(run_ckpt, inputs, cache / f"{run.config_name}.json", key, run.batch_size, device)
            record = model_record(logits, inputs, train.class_names, plain_logits, auroc_class)
            entry["records"].append(record)
            entry["statuses"].append(run_status(metrics, record, plain_record, run.max_clean_drop))
            entry["seeds"].append(run.train_seed)
            entry["checkpoints"].append(str(run_ckpt))
            entry["correction_seconds"].append(metrics["correction_seconds"])
        entry["status"] = worst(entry["statuses"])
    if reference is not None:
        logits = cached_logits(reference, inputs, cache / f"{config.config_name}_reference.json", key,
                               first.batch_size, device)
        results[REFERENCE] = {"records": [model_record(logits, inputs, train.class_names, plain_logits, auroc_class)],
                              "status": "-", "checkpoints": [str(reference)]}
    return write_results(output_dir, config, results, skipped, auroc_class, list(seeds), time.time() - start, log)


def write_results(output_dir, config, results, skipped, auroc_class, seeds, seconds, log=print):
    class_names = list(results[PLAIN]["records"][0]["biased"]["per_class_auroc"])
    rows = [summary_row(name, entry["records"], entry["status"], auroc_class) for name, entry in results.items()]
    verdict = bar_verdict(results)
    record = provenance()
    result = {"settings": {"config": config.config_name, "seeds": seeds, "img_size": config.img_size,
                           "dataset_options": config.dataset_options, "training": config.training,
                           "mitigation_common": {**config.mitigation_common, "seeds": seeds},
                           "auroc_class": class_names[auroc_class], "test_sets": TEST_SETS},
              "skipped": skipped, "rows": rows, "bar": verdict, "results": results, "wall_seconds": seconds,
              "provenance": record}
    write_json(output_dir / "benchmark.json", result)
    runs = "plain: one model; ISNet rows: " + (f"one run each (seed {seeds[0]})" if len(seeds) == 1 else
                                               "mean ± sd over seeds " + ", ".join(map(str, seeds)))
    text = [markdown_table(rows, COLUMNS), "", f"Accuracy mean ± sd over seeds; p-values against the plain model: "
            f"median over seeds (seeds with p < {SIGNIFICANCE}); the AUROC and DeLong's test are of "
            f"{class_names[auroc_class]}, the class the artifact is evidence for. Per test set, accuracy ± its "
            "standard error and the per-class AUROC:", "",
            markdown_table(detail_rows(results, class_names)), "", bar_line(verdict), "",
            *(f"skipped {name}: {why}" for name, why in skipped.items()), stamp(record, runs) + "\n"]
    write_text(output_dir / "benchmark.md", "\n".join(text))
    log("\n" + format_table(rows, COLUMNS))
    log(bar_line(verdict))
    log(f"wall time {seconds / 60:.1f} min; outputs: {output_dir / 'benchmark.md'}")
    return nan_for_null(read_json(output_dir / "benchmark.json"))


@main_entry
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=None,
                        help="fine-tuning seeds of every variant (default 0 1 2; with --quick 0)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), help=f"any of {', '.join(VARIANTS)}")
    parser.add_argument("--plain_ckpt", default=None, help="reuse this plain model (e.g. a demo run's best.pt)")
    parser.add_argument("--reference_ckpt", default=None,
                        help="also evaluate a model trained without the shortcut (e.g. the mitigation benchmark's "
                             "training/synth_derm/tiny_vgg/synth_derm_band_aid_reference/checkpoints/best.pt)")
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run (32 px, 96 training images)")
    parser.add_argument("--output_dir", default="outputs/benchmarks/background_bias")
    args = parser.parse_args(argv)
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2])
    return run_benchmark(args.output_dir, seeds, args.variants, QUICK if args.quick else None, args.plain_ckpt,
                         args.reference_ckpt)


if __name__ == "__main__":
    main()
