"""The steps of the audit pipeline. Each calls the same library code as its ``python -m`` entry point.

A step returns ``{"text": [...], "tables": {...}, "figures": {...}, "metrics": {...}}`` plus any
values later steps need (e.g. the checkpoint path). ``inputs`` lists the config parts it reads:
together with its dependencies' keys they decide whether a cached result is still valid.
"""
from pathlib import Path

import numpy as np

from datasets import get_dataset_from_config
from utils.pipeline.runner import pipeline_step


def _dump(config, include=None, exclude=("config_name", "output_dir", "wandb_api_key")):
    values = config.model_dump(mode="json", include=include)
    return {k: v for k, v in values.items() if k not in exclude}


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
@pipeline_step("data", title="Data set", inputs=lambda ctx: _dump(training_config(ctx), include={
    "dataset_name", "img_size", "seed", "data_paths", "dataset_options", "artifacts", "artifact_type",
    "attacked_classes", "p_artifact", "artifact"}))
def data_step(ctx):
    from utils.pipeline.figures import example_grid

    data = splits(ctx)
    rows, rates = [], []
    for name, split in data.items():
        counts = split.class_counts()
        rows.append({"split": name, "samples": len(split), **{c: int(n) for c, n in zip(data.class_names, counts)}})
        for artifact in split.artifact_names:
            has = split.artifact_labels(artifact)
            rates.append({"split": name, "artifact": artifact, **{
                f"rate in {c}": float(has[split.labels == k].mean()) if (split.labels == k).any() else float("nan")
                for k, c in enumerate(data.class_names)}})
    figure = example_grid(data.train, ctx.root / "figures" / "data_examples.png")
    text = [f"Data set '{ctx.config.dataset_name}' with classes {', '.join(data.class_names)}."]
    return {"text": text, "tables": {"Samples per class": rows, "Artifact rates per class": rates},
            "figures": {"Examples per artifact (training split)": str(figure)},
            "metrics": {"classes": data.class_names, "counts": rows, "artifact_rates": rates}}


# --- 2. the model -----------------------------------------------------------------------------
@pipeline_step("train", depends=("data",), title="Model training",
               inputs=lambda ctx: {"ckpt_path": ctx.config.ckpt_path, **_dump(training_config(ctx))})
def train_step(ctx):
    from model_training.start_training import subset_rows
    from model_training.trainer import run_training

    if ctx.config.ckpt_path:  # audit an existing model
        from models import get_model_for_config
        from utils.device import resolve_device
        from utils.metrics import evaluate_subsets

        config = training_config(ctx)
        model = get_model_for_config(ctx.config, splits(ctx).n_classes, splits(ctx).train.load_raw(0).shape[0])
        device = resolve_device(config.device)
        test = evaluate_subsets(model.to(device), splits(ctx).test, config.batch_size, device)
        return {"ckpt_path": ctx.config.ckpt_path, "text": [f"Audited checkpoint: {ctx.config.ckpt_path}."],
                "tables": {"Original model: test accuracy by subset": subset_rows({"test": test})},
                "figures": {}, "metrics": {"test": test}}
    out_dir, metrics = run_training(training_config(ctx), resume=True)
    test = metrics["test"]
    text = ["The model is trained on the training distribution (artifacts at their configured rates) and "
            "tested on three subsets: clean (no artifact), attacked (the artifact in every image) and ch "
            "(the training distribution)."]
    return {"ckpt_path": str(out_dir / "checkpoints" / "best.pt"), "text": text,
            "tables": {"Original model: test accuracy by subset": subset_rows({"test": test}),
                       "Per-class test accuracy": [{"subset": s, **m["per_class_accuracy"]} for s, m in test.items()]},
            "figures": {"Training curves": str(out_dir / "training_curves.png")},
            "metrics": {"test": test, "best_epoch": metrics["best_epoch"]}}


# --- 3. preprocessing -------------------------------------------------------------------------
@pipeline_step("preprocess", depends=("train",), title="Preprocessing (activations and relevances)",
               inputs=lambda ctx: ctx.config.audit | {"lrp_backend": ctx.config.lrp_backend})
def preprocess_step(ctx):
    from utils.preprocessing import preprocess

    results = preprocess(audit_config(ctx))
    rows = [{"split": r.split, "samples": r.n_samples, "accuracy": r.accuracy} for r in results]
    return {"text": ["Activations and LRP relevances of every inspectable layer, for every sample."],
            "tables": {"Preprocessed splits": rows}, "figures": {}, "metrics": {"splits": rows}}
