"""The steps of the audit pipeline. Each calls the same library code as its ``python -m`` entry point.

A step returns ``{"text": [...], "tables": {...}, "figures": {...}, "metrics": {...}}`` plus any
values later steps need (e.g. the checkpoint path), and ``trusted``: the files it produced that later
steps rely on (checkpoints, stores, the localization index; :mod:`utils.pipeline.runner` records their
identities). ``inputs`` lists the config parts it reads: together with its dependencies' keys they
decide whether a cached result is still valid.
"""
import hashlib
import json
from pathlib import Path

import numpy as np

from datasets import get_dataset_from_config
from utils.pipeline.runner import pipeline_step


def _dump(config, include=None, exclude=("config_name", "output_dir")):
    from utils.secrets import without_secrets

    values = without_secrets(config.model_dump(mode="json", include=include))
    return {k: v for k, v in values.items() if k not in exclude}


def _hash(payload):
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _number(value, digits=3):
    """A measured number for a sentence: ``—`` when it is missing (``null`` in strict JSON, or NaN)."""
    return "—" if value is None or value != value else f"{value:.{digits}f}"


def training_config(ctx):
    if "training_config" not in ctx.cache:
        ctx.cache["training_config"] = ctx.config.training_config()
    return ctx.cache["training_config"]


def audit_config(ctx):
    if "audit_config" not in ctx.cache:
        ctx.cache["audit_config"] = ctx.config.audit_config(ctx.results["train"]["ckpt_path"])
    return ctx.cache["audit_config"]


def splits(ctx):
    if "splits" not in ctx.cache:
        ctx.cache["splits"] = get_dataset_from_config(training_config(ctx))
    return ctx.cache["splits"]


# --- 1. the data ------------------------------------------------------------------------------
def _data_inputs(ctx):
    # the settings, and for data read from disk the identity of its files (a replaced image is other data)
    return {**_dump(training_config(ctx), include={
        "dataset_name", "img_size", "seed", "data_paths", "dataset_options", "artifacts", "artifact_type",
        "attacked_classes", "p_artifact", "artifact"}), "identity": splits(ctx).identity()}


@pipeline_step("data", title="Data set", inputs=_data_inputs)
def data_step(ctx):
    from utils.labels import class_rates
    from utils.pipeline.figures import example_grid

    data = splits(ctx)
    rows, rates = [], []
    for name, split in data.items():
        counts = split.class_counts()
        rows.append({"split": name, "samples": len(split), **{c: int(n) for c, n in zip(data.class_names, counts)}})
        for artifact in split.artifact_names:
            per_class = class_rates(split.labels, split.artifact_labels(artifact), data.n_classes, empty=float("nan"))
            rates.append({"split": name, "artifact": artifact,
                          **{f"rate in {c}": float(p) for c, p in zip(data.class_names, per_class)}})
    figure = example_grid(data.train, ctx.root / "figures" / "data_examples.png")
    text = [f"Data set '{ctx.config.dataset_name}' with classes {', '.join(data.class_names)}."]
    return {"text": text, "tables": {"Samples per class": rows, "Artifact rates per class": rates},
            "figures": {"Examples per artifact (training split)": str(figure)},
            "metrics": {"classes": data.class_names, "counts": rows, "artifact_rates": rates}}


# --- 2. the model -----------------------------------------------------------------------------
@pipeline_step("train", depends=("data",), title="Model training",
               inputs=lambda ctx: {"ckpt_path": ctx.config.ckpt_path, **_dump(training_config(ctx))})
def train_step(ctx):
    from utils.metrics import subset_rows
    from model_training.trainer import run_training

    if ctx.config.ckpt_path:  # audit an existing model
        from models import get_model_for_config
        from utils.device import resolve_device
        from utils.metrics import evaluate_subsets

        config = training_config(ctx)
        model = get_model_for_config(ctx.config, splits(ctx).n_classes, splits(ctx).in_channels)
        device = resolve_device(config.device)
        test = evaluate_subsets(model.to(device), splits(ctx).test, config.batch_size, device)
        return {"ckpt_path": ctx.config.ckpt_path, "text": [f"Audited checkpoint: {ctx.config.ckpt_path}."],
                "tables": {"Original model: test accuracy by subset": subset_rows({"test": test}, auroc_columns=False)},
                "figures": {}, "metrics": {"test": test}, "trusted": [ctx.config.ckpt_path]}
    out_dir, metrics = run_training(training_run_config(ctx), resume=True)
    test = metrics["test"]
    text = ["The model is trained on the training distribution (artifacts at their configured rates) and "
            "tested on three subsets: clean (no artifact), attacked (the artifact in every image) and ch "
            "(the training distribution). An artifact the data set annotates itself is cut out of annotated "
            "training images with its mask and pasted into the test images without it (clean: those images "
            "before the paste)."
            if "clean" in test else
            "The model is trained and tested on the data as it is (ch): no training image has a mask of the "
            "artifact, so there is no clean/attacked subset."]
    best = str(out_dir / "checkpoints" / "best.pt")
    return {"ckpt_path": best, "trusted": [best], "text": text,
            "tables": {"Original model: test accuracy by subset": subset_rows({"test": test}, auroc_columns=False),
                       "Per-class test accuracy": [{"subset": s, **m["per_class_accuracy"]} for s, m in test.items()]},
            "figures": {"Training curves": str(out_dir / "training_curves.png")},
            "metrics": {"test": test, "best_epoch": metrics["best_epoch"]}}


def training_run_config(ctx):
    """The pipeline's training config, in a folder where it continues or reuses only a run of the same
    settings and inputs: ``<config_name>`` when that folder is empty or holds such a run, else
    ``<config_name>_<hash of settings and inputs>`` (a changed lr, optimizer or data trains a new model
    beside the old one, which is kept; the same settings later find their folder again)."""
    from model_training.resume import run_settings
    from model_training.trainer import resume_problems, training_inputs
    from utils.errors import UserError

    config = training_config(ctx)
    if not resume_problems(config, splits(ctx)):  # nothing there yet, or the same run
        return config
    digest = _hash({"settings": run_settings(config.model_dump(mode="json")), "num_epochs": config.num_epochs,
                    "inputs": training_inputs(config, splits(ctx))})
    other = config.model_copy(update={"config_name": f"{config.config_name}_{digest}"})
    other._source_file = config._source_file
    problems = resume_problems(other, splits(ctx))
    if problems:
        raise UserError(f"the training folders of '{config.config_name}' hold runs of other settings or inputs "
                        f"({'; '.join(problems)}); remove the folder or choose another config_name")
    return other


# --- 3. preprocessing -------------------------------------------------------------------------
@pipeline_step("preprocess", depends=("train",), title="Preprocessing (activations and relevances)",
               inputs=lambda ctx: ctx.config.audit | {"lrp_backend": ctx.config.lrp_backend})
def preprocess_step(ctx):
    from utils.preprocessing import preprocess

    results = preprocess(audit_config(ctx))
    rows = [{"split": r.split, "samples": r.n_samples, "accuracy": r.accuracy} for r in results]
    return {"text": ["Activations and LRP relevances of every inspectable layer, for every sample."],
            "tables": {"Preprocessed splits": rows}, "figures": {}, "metrics": {"splits": rows},
            "trusted": [str(r.path) for r in results]}


# --- shared: the derived configs live as YAML files, so every step can be re-run by hand ----------
def _config_file(ctx, name, config):
    from utils.io import write_yaml

    path = ctx.root / "configs" / f"{name}.yaml"
    write_yaml(path, config.model_dump(mode="json"))
    return str(path)


def audit_file(ctx):
    return _config_file(ctx, "audit", audit_config(ctx))


def _annotation_config(ctx, path=None):
    """The audit config the annotation step wrote (``path``, default its recorded one), read as a user's
    file is."""
    from utils.config import AuditConfig, load_config

    return load_config(path or ctx.results["annotate"]["annotation_config"], AuditConfig)


def _artifact(ctx):
    artifact = audit_config(ctx).artifact
    if not artifact:
        from utils.errors import UserError

        raise UserError(f"config error in {ctx.config._source_file}: 'artifact': the pipeline needs the artifact "
                        "to model (e.g. band_aid), got None")
    return artifact


def _figures(candidates):
    return {caption: str(path) for caption, path in candidates if Path(path).is_file()}


# --- 4. reveal ---------------------------------------------------------------------------------
def _reveal_inputs(ctx):
    return {k: v for k, v in ctx.config.audit.items()} | {"artifact": ctx.config.artifact}


@pipeline_step("reveal", depends=("preprocess",), title="Reveal: SpRAy, DORA and CRP", inputs=_reveal_inputs)
def reveal_step(ctx):
    from utils.io import read_json
    from utils.reveal.results import result_path
    from utils.reveal.steps import crp_step, dora_step, plot_crp, plot_dora, plot_spray, quality_rows, \
        reveal_quality_step, spray_step

    config = audit_config(ctx)
    audit_file(ctx)  # the audit section as a file (listed in the report): each step can be rerun by hand with it
    spray_step(config)
    dora_step(config)
    crp_step(config)
    figures = []
    for k in range(splits(ctx).n_classes):
        name = splits(ctx).class_names[k]
        figures += [(f"SpRAy embedding and outlier samples, class {name}", plot_spray(config, k)[0]),
                    (f"CRP relevance-pattern outlier neurons, class {name}", plot_crp(config, k)[0])]
    figures.append(("DORA: outlier neurons and their reference signals", plot_dora(config)[0]))
    tables, metrics = {}, {}
    if config.artifact:
        # the numbers in memory: quality.json holds null where an AUROC is undefined (strict JSON)
        quality, _ = reveal_quality_step(config, config.artifact)
        tables["Does the reveal step find the artifact? (checked against ground truth)"] = quality_rows(quality)
        metrics["quality"] = quality
    outliers = read_json(result_path(config, "spray", 0))["outlier_samples"][:5]
    metrics["top_spray_outliers_class0"] = outliers
    return {"text": ["Outlier samples (SpRAy, data perspective) and outlier neurons (DORA activation patterns, CRP "
                     "relevance patterns, model perspective), found without knowing the bias."],
            "tables": tables, "figures": _figures(figures), "metrics": metrics}


# --- 5. annotation: seeds from the reveal outliers, refined by review rounds ----------------------
@pipeline_step("annotate", depends=("reveal",), title="Annotation: seeds from reveal, iterative CAV refinement",
               inputs=lambda ctx: _reveal_inputs(ctx) | ctx.config.annotation.model_dump())
def annotate_step(ctx):
    from utils.bias.annotation import annotation_path, check_known, reveal_candidates, state_path
    from utils.bias.review import review, review_figure, train_features
    from utils.bias.steps import prepare_step
    from utils.errors import UserError

    config, artifact, options = audit_config(ctx), _artifact(ctx), ctx.config.annotation
    if not options.simulate:
        return _recorded_annotation(ctx, config, artifact)
    train = splits(ctx).train
    truth = dict(zip(train.sample_ids, train.artifact_labels(artifact)))
    if options.seed_from == "gt":
        candidates = [s for s, has in truth.items() if has]
    else:  # the audit's annotation_seeds, then what the reveal step shows a person: its top outliers and
        # examples of every cluster
        check_known("audit.annotation_seeds", config.annotation_seeds, train.sample_ids)
        candidates = list(dict.fromkeys([*config.annotation_seeds,
                                         *reveal_candidates(config, train.sample_ids, options.n_seeds)]))
    # the (simulated) reviewer looks at them and keeps those showing the artifact
    seeds = [s for s in candidates if truth[s]][:options.n_seeds]
    if not seeds:
        raise UserError(f"none of the {len(candidates)} samples the reveal step shows (top outliers, cluster "
                        f"examples) carries '{artifact}'; give annotation_seeds in the audit section instead")
    for stale in (state_path(config, artifact), annotation_path(config)):
        stale.unlink(missing_ok=True)  # this step's own earlier state: start the rounds afresh
    # retrieval and localization of the pipeline use what the review found, not the ground truth
    seeded = audit_config(ctx).model_copy(update={"annotation_seeds": seeds, "cav_labels": "annotations"})
    path = _config_file(ctx, "annotation", seeded)
    # the review records only a reviewer's decisions: the seeds enter as the simulated reviewer's first round
    step = prepare_step(_annotation_config(ctx, path), artifact, "sample_retrieval")
    train = train_features(step)
    # the simulated reviewer answers from the ground truth: only the last round's grid is drawn, for a person
    rounds, result = [], review(step, train, accept=seeds, reviewer="simulated", figure=False)
    n_artifact = int(sum(truth.values()))
    while result["to_review"] is not None and len(result["to_review"]):
        shown = list(result["to_review"]["sample_id"])
        accept, reject = [s for s in shown if truth[s]], [s for s in shown if not truth[s]]
        rounds.append({"round": len(rounds) + 1, "shown": len(shown), "accepted": len(accept)})
        result = review(step, train, accept, reject, reviewer="simulated", figure=False)
        if len(accept) < options.stop_precision * len(shown):  # the ranking has run dry: the reviewer stops
            break
    review_figure(step, train, result["to_review"])
    found = result["accepted"]
    inspected = len(seeds) + sum(r["shown"] for r in rounds)
    curve = _annotation_curve(ctx, seeds, rounds, np.array(list(truth.values())), artifact)
    text = [f"{len(seeds)} of the {len(candidates)} samples the reveal step shows (top outliers, the most "
            f"central examples of each SpRAy cluster) carry '{artifact}' and seed the annotation. "
            f"After {len(rounds)} review rounds, {found} of {n_artifact} training samples with '{artifact}' are "
            f"annotated, having inspected {inspected} samples; the reviewer stops when fewer than "
            f"{options.stop_precision:.0%} of a round carry it."]
    return {"text": text, "annotation_config": path, "tables": {"Review rounds": rounds},
            "figures": _figures([("Artifact samples found vs samples inspected (review rounds vs random order)",
                                  curve)]),
            "metrics": {"seeds": seeds, "rounds": rounds, "found": found, "n_artifact": n_artifact,
                        "inspected": inspected}}


def _annotation_curve(ctx, seeds, rounds, labels, artifact):
    """The review's own curve (found vs inspected, one point per round) against random order."""
    from utils.bias.annotation import random_order_curve
    from utils.bias.figures import annotation_curve_figure

    inspected = np.cumsum([len(seeds)] + [r["shown"] for r in rounds])
    found = np.cumsum([len(seeds)] + [r["accepted"] for r in rounds])
    random_found = random_order_curve(labels, len(seeds), inspected)
    return annotation_curve_figure(inspected, found, random_found, int(labels.sum()),
                                   ctx.root / "figures" / "annotation_curve.png",
                                   title=f"annotation of '{artifact}' from the reveal step's seeds")


def _recorded_annotation(ctx, config, artifact):
    """``simulate: false``: the annotations a person recorded (``refine --accept/--reject`` or by
    hand) in the audit's ``annotation_file`` are used as they are."""
    from utils.bias.annotation import read_annotations
    from utils.errors import UserError

    source = ctx.config._source_file
    if not config.annotation_file:
        raise UserError(f"config error in {source}: 'annotation.simulate': false needs 'audit.annotation_file' "
                        "(the annotations you recorded), got None")
    ids = read_annotations(config.annotation_file).get(artifact, [])
    if not ids:
        raise UserError(f"annotation file {Path(config.annotation_file).resolve()} lists no sample of '{artifact}'")
    path = _config_file(ctx, "annotation", config.model_copy(update={"cav_labels": "annotations"}))
    text = [f"{len(ids)} training samples annotated with '{artifact}' by hand ({config.annotation_file})."]
    return {"text": text, "annotation_config": path, "tables": {}, "figures": {},
            "metrics": {"recorded": len(ids), "found": len(ids), "n_artifact": None, "inspected": None}}


# --- 6. retrieval ------------------------------------------------------------------------------
@pipeline_step("retrieve", depends=("annotate",), title="Bias modelling: CAV and biased-sample retrieval",
               inputs=_reveal_inputs)
def retrieve_step(ctx):
    from utils.bias.retrieval import results_rows
    from utils.bias.steps import prepare_step, run_sample_ranking
    from utils.io import read_json

    step = prepare_step(_annotation_config(ctx), _artifact(ctx), "sample_retrieval")
    run_sample_ranking(step)
    out_dir = step.out_dir
    results = read_json(out_dir / "metrics.json")  # as written: JSON types, null where undefined
    return {"text": [f"A CAV fit on the annotated training samples ranks held-out samples by '{step.artifact}'."],
            "tables": {"Retrieval on held-out samples": results_rows(results)},
            "figures": _figures([("ROC and precision-recall curves", out_dir / "roc_pr.png"),
                                 ("Top-ranked samples", out_dir / "top_ranked.png")]),
            "metrics": results}


# --- 7. localization ---------------------------------------------------------------------------
@pipeline_step("localize", depends=("annotate",), title="Localization: CAV-conditioned LRP masks",
               inputs=_reveal_inputs)
def localize_step(ctx):
    from utils.bias.steps import prepare_step, run_localization, run_localization_evaluation
    from utils.io import read_json

    step = prepare_step(_annotation_config(ctx), _artifact(ctx), "localization")
    run_localization(step)
    out_dir, summary = step.out_dir, {}
    if splits(ctx).test.artifact_labels(step.artifact).any():
        run_localization_evaluation(step)
        summary = read_json(out_dir / "evaluation.json")  # as written
    rows = [{k: summary[k] for k in ("split", "layer", "n", "iou_mean", "iou_se", "artifact_relevance_mean")}] if summary else []
    return {"text": ["Heatmaps of the artifact concept (LRP started at the layer with the CAV) become pixel masks."],
            "localization_dir": str(out_dir), "trusted": [str(out_dir / "index.json")],
            "tables": {"Localization against ground-truth masks": rows},
            "figures": _figures([("Image | heatmap | predicted mask | ground truth", out_dir / "masks_overview.png")]),
            "metrics": summary}


# --- 8. mitigation and re-evaluation --------------------------------------------------------------
def mitigation_configs(ctx):
    """One config per configured correction (see :meth:`PipelineConfig.mitigation_configs`)."""
    if "mitigation_configs" not in ctx.cache:
        localization_dir = ctx.results["localize"]["localization_dir"] if "localize" in ctx.results else None
        ctx.cache["mitigation_configs"] = ctx.config.mitigation_configs(ctx.results["train"]["ckpt_path"],
                                                                       localization_dir)
    return ctx.cache["mitigation_configs"]


def _mitigation_inputs(ctx):
    return {"runs": ctx.config.mitigation, "common": ctx.config.mitigation_common}


@pipeline_step("mitigate", depends=("localize",), title="Mitigation", inputs=_mitigation_inputs)
def mitigate_step(ctx):
    import shutil

    from model_training.corrections.run import corrected_checkpoint_path
    from model_training.corrections.runs import expand, run_metrics, strength_key
    from model_training.corrections.selection import CRITERION
    from utils.evaluation.runner import correct_all

    folder = ctx.root / "configs" / "mitigation"
    shutil.rmtree(folder, ignore_errors=True)  # only this pipeline's own generated configs live here
    configs = mitigation_configs(ctx)
    for config in configs:
        _config_file(ctx, f"mitigation/{config.config_name}", config)
    correct_all(configs, log=lambda *_: None)
    rows, trusted = [], []
    for run in (run for config in configs for run in expand(config)):
        if corrected_checkpoint_path(run).is_file():
            trusted.append(str(corrected_checkpoint_path(run)))
        metrics, key = run_metrics(run), strength_key(run)
        rows.append({"method": run.method, "run": run.config_name, "layer": run.layer_name,
                     "strength": f"{key}={getattr(run, key):g}" if key else "-",
                     "seed": run.train_seed if run.train_seed is not None else run.seed,
                     "epochs": len(metrics["history"]), "epoch kept": metrics["selection"]["epoch"] or "-",
                     "validation status": metrics["selection"]["status"]})
    text = ["Each configured method corrects the original model; training-free methods (P-ClArC, rP-ClArC) add a "
            "projection at the layer. A method with a sweep is run at each strength (with sweep_epochs: that many "
            "epochs first, then the chosen strength continues), each run with every seed; a run keeps the epoch "
            "the selection rule prefers on the validation split (" + CRITERION + ")."]
    return {"text": text, "config_dir": str(folder), "tables": {"Correction runs": rows}, "figures": {},
            "metrics": {"runs": rows}, "trusted": trusted}


@pipeline_step("evaluate", depends=("mitigate",), title="Re-evaluation: did the fix work?", inputs=_mitigation_inputs)
def evaluate_step(ctx):
    from utils.evaluation.compare import BEST_RULE, best, display_rows, significance, write_comparison
    from utils.evaluation.runner import correct_and_evaluate
    from utils.paths import output_root, step_dir

    configs = mitigation_configs(ctx)
    result = correct_and_evaluate(configs)
    chosen, every_run = result.rows(), result.all_rows()
    # its own table name: the mitigation grid of the same model keeps its comparison.md
    first = configs[0]
    write_comparison(chosen, every_run, output_root(first) / "evaluation" / first.dataset_name / first.model_name,
                     f"pipeline_{ctx.config.config_name}")
    figures = [(f"Heatmaps before/after: {config.method} ({config.config_name})",
                step_dir(config, "evaluation", create=False) / "heatmaps.png") for config in result.chosen_runs()]
    winner = best(chosen)
    text = ["Test accuracy of the original and corrected models on the clean, attacked and training-distribution "
            "subsets, as mean ± sd over the seeds of each run. gap_closed is the share of the original clean-attacked "
            "gap a method closes; clean_change, beside it, what it costs in clean accuracy. Per method, the strength "
            "shown is chosen on the validation split (the sweep table lists every strength). status: ok, degraded "
            "(clean accuracy more than max_clean_drop below the original's on validation or test) or collapsed (at "
            "the majority-class rate; its improvement figures are not reported). p_clean, p_attacked: McNemar, "
            "p_auroc: DeLong on the attacked subset, each corrected vs original on the same test images (median over "
            "seeds; in brackets the seeds with p < 0.05, a significant difference).", *significance(chosen),
            f"Best correction ({BEST_RULE}): " + (f"{winner['method']} at {winner['strength']} ({winner['config']})."
                                                  if winner else "none: no correction stayed within the clean budget.")]
    return {"text": text, "tables": {"Mitigation comparison (test)": display_rows(chosen),
                                     "Every strength and configuration (sweep)": display_rows(every_run)},
            "figures": _figures(figures), "metrics": {"comparison": chosen, "all_runs": every_run, "best": winner,
                                                      "best_rule": BEST_RULE}}


# --- 9. the report -----------------------------------------------------------------------------
_SECTIONS = ("data", "train", "reveal", "annotate", "retrieve", "localize", "mitigate", "evaluate")


def _without_timings(value):
    """Metrics minus wall-clock times: the same config and seed must give the same metrics.json."""
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items()
                if k not in ("time", "training_time") and not k.startswith("seconds")}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def headline_rows(ctx):
    from utils.evaluation.compare import display_rows

    results, rows = ctx.results, []
    test = results["train"]["metrics"]["test"]
    rows.append({"step": "original model", "result": ", ".join(f"{s} {_number(m['accuracy'])}" for s, m in test.items())})
    quality = results["reveal"]["metrics"].get("quality")
    if quality:
        from utils.reveal.steps import reveal_verdicts

        found = {k: "yes" if v else "no" for k, v in reveal_verdicts(quality).items()}
        rows.append({"step": "reveal", "result": f"artifact cluster found by SpRAy: {found['spray']}; "
                                                 f"artifact neuron among top outliers: {found['neuron']}"})
    annotate = results["annotate"]["metrics"]
    if annotate["inspected"] is None:
        rows.append({"step": "annotation", "result": f"{annotate['found']} recorded annotations"})
    else:
        rows.append({"step": "annotation", "result": f"{annotate['found']} of {annotate['n_artifact']} found after "
                                                     f"inspecting {annotate['inspected']}"})
    for row in results["retrieve"]["tables"]["Retrieval on held-out samples"]:
        if row["split"] == "test":
            rows.append({"step": f"retrieval ({row['features']})",
                         "result": f"AUROC {_number(row['AUROC'])}, AP {_number(row['AP'])}"})
    loc = results["localize"]["metrics"]
    if loc:
        rows.append({"step": "localization", "result": f"IoU {_number(loc['iou_mean'])}, artifact relevance "
                                                       f"{_number(loc['artifact_relevance_mean'])}"})
    for row in results["evaluate"]["metrics"]["comparison"]:
        if row["method"] == "original":
            continue
        cells = display_rows([row])[0]
        rows.append({"step": f"mitigation: {row['method']}", "result": (
            f"{cells['status']}; clean {cells['clean']} (change {cells['clean_change']}), attacked {cells['attacked']} "
            f"(McNemar p {cells['p_attacked']}), gap closed {cells['gap_closed']}, artifact relevance "
            f"{cells['artifact_relevance']}; {row['strength']}, {row['seeds']} seed(s)")})
    winner = results["evaluate"]["metrics"].get("best")
    rows.append({"step": "best correction", "result": f"{winner['method']} ({winner['strength']})" if winner else
                 "none within the clean budget"})
    return rows


@pipeline_step("report", depends=("evaluate", "retrieve"), title="Report", inputs=lambda ctx: {})
def report_step(ctx):
    from utils.pipeline.report import write_report

    sections = [(ctx.results[name].get("title") or _title(name), ctx.results[name]) for name in _SECTIONS]
    headline = headline_rows(ctx)
    configs = {str(path.relative_to(ctx.root / "configs").with_suffix("")): _read_yaml(path)
               for path in sorted((ctx.root / "configs").rglob("*.yaml"))}
    metrics = {name: _without_timings(ctx.results[name]["metrics"]) for name in _SECTIONS}
    metrics["headline"] = headline
    path = write_report(ctx.root, f"Shortcut audit: {ctx.config.dataset_name} / {ctx.config.model_name}",
                        sections, headline, configs, metrics)
    return {"text": [], "tables": {}, "figures": {}, "metrics": {}, "headline": headline, "report": str(path)}


def _title(name):
    from utils.pipeline.runner import STEPS

    return STEPS[name].title


def _read_yaml(path):
    import yaml

    return yaml.safe_load(Path(path).read_text())
