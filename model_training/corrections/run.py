"""Run one correction: load the model, freeze, prepare the method, fine-tune with the shared
Trainer (unless training-free), keep the epoch the selection rule chooses on the validation split
(:mod:`model_training.corrections.selection`), save the corrected checkpoint with its status
(``ok``, ``degraded``, ``collapsed``) and a first evaluation.

Under ``torchrun`` every rank loads the same model and prepares the method (each computing a share
of the activations / heatmaps it needs, with rank 0's CAV or C1/C2 used by all, see
``model_training.corrections.cavs`` and ``isnet``); fine-tuning is the Trainer's multi-process
loop; rank 0 alone writes files and evaluates.
"""
import time
from pathlib import Path

import torch

from datasets import DataSplits
from model_training.corrections.base import CorrectionContext, get_correction_method
from model_training.corrections.data import (MaskedTrainingSet, correction_splits, load_localization_masks,
                                             localization_identity)
from model_training.corrections.layers import freeze_up_to
from model_training.corrections.loading import load_corrected_model
from model_training.corrections.selection import CleanBudget, SubsetValidation, accuracies
from model_training.trainer import Trainer, TrainingHooks, training_seed
from models import get_model, get_model_spec, layer_for_config
from utils.checkpoint import load_checkpoint, save_checkpoint
from utils.config import save_resolved_config
from utils.distributed import get_context, training_device
from utils.errors import UserError
from utils.evaluation.cache import cached_original, data_key
from utils.identity import file_identity
from utils.io import nan_for_null, write_json
from utils.layout import channel_axis
from utils.locks import folder_lock
from utils.metrics import evaluate_subsets
from utils.paths import step_dir

CORRECTED = "corrected.pt"


def mitigation_dir(config, create=True) -> Path:
    return step_dir(config, "mitigation", create=create)


def corrected_checkpoint_path(config) -> Path:
    """Where the corrected model of ``config`` is saved (read by every re-evaluation step)."""
    return mitigation_dir(config, create=False) / "checkpoints" / CORRECTED


def correction_inputs(config) -> dict:
    """The identities of the files a correction starts from besides its data: the original checkpoint and,
    with ``source_masks: localization``, the localization masks. A finished or stopped run is reused only
    while they are unchanged (:func:`model_training.corrections.runs.run_metrics`, ``Trainer.resume``)."""
    from_scratch = get_correction_method(config.method).starts_from_scratch(config)
    inputs = {"original": None if from_scratch else file_identity(config.ckpt_path)}
    if config.source_masks == "localization":
        inputs["localization"] = localization_identity(config)
    return inputs


def build_context(config, model, splits, device):
    localized = load_localization_masks(config) if config.source_masks == "localization" else None
    train_set = MaskedTrainingSet(splits.train, config.artifact, localized)
    return CorrectionContext(config=config, model=model, splits=splits, train_set=train_set,
                             layer_name=layer_for_config(config), device=device,
                             artifact_train=train_set.has_mask.copy(),
                             channel_axis=channel_axis(get_model_spec(config.model_name)))


def batchnorm_kept_in_eval(config, model, from_scratch=False):
    """BatchNorm layers whose running statistics stay fixed while correcting.

    ``auto`` keeps them fixed whenever a trained model is fine-tuned (every method; a model trained
    from scratch must learn them): the network that is trained is then the one that is evaluated. With
    training-mode BatchNorm a heatmap loss moves the batch statistics faster than the running ones
    follow, and the eval-mode network falls behind the trained one; with frozen statistics training
    and validation accuracy agree (measurements: experiments/mitigation_experiments/README.md, "Why
    RRR and ISNet collapsed, and what changed"). Heatmap losses in training mode are still
    differentiated exactly, through the batch statistics (:mod:`utils.lrp.differentiable`).
    """
    mode = config.batchnorm_statistics
    if mode == "auto":
        mode = "train" if from_scratch else "frozen"
    if mode == "train":
        return []
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def original_validation(config, model, splits, device):
    """The original model's metrics on the validation subsets (cached per checkpoint: every correction
    of one model shares them); an untrained model's (ISNet from scratch) are computed."""
    evaluate = lambda: evaluate_subsets(model, splits.val, config.batch_size, device, config.num_workers)  # noqa: E731
    if get_correction_method(config.method).starts_from_scratch(config):
        return evaluate()
    # read back from strict JSON, a missing number (a multi-label majority rate) is null: NaN again
    return nan_for_null(cached_original(config, "val_subsets", {"data": data_key(config, splits)}, evaluate))


def run_correction(config, overwrite=False, resume=False, strict_resume=True):
    """Correct ``config.ckpt_path``'s model with ``config.method``; returns (out_dir, metrics).

    The folder is locked for the run. ``resume`` continues a stopped fine-tuning from ``last.pt`` if it was
    run with the same settings and inputs; otherwise ``strict_resume`` stops with one line naming the
    differences, else the correction starts afresh."""
    out_dir = mitigation_dir(config)
    with folder_lock(out_dir, enabled=get_context().is_main):
        return _run_correction(config, out_dir, overwrite, resume, strict_resume)


def _run_correction(config, out_dir, overwrite, resume, strict_resume):
    target = out_dir / "checkpoints" / CORRECTED
    if target.exists() and not overwrite:
        raise UserError(f"{out_dir} already holds a corrected model; pass --overwrite to correct again")
    if config.artifact is None:
        raise UserError("'artifact': the mitigation step needs the artifact to unlearn")
    context = get_context()
    device = training_device(context, config.device)
    torch.manual_seed(training_seed(config))
    splits = correction_splits(config)
    in_channels = splits.in_channels
    inputs = {**correction_inputs(config), "data": splits.identity()}
    method = get_correction_method(config.method)(config)
    from_scratch = method.starts_from_scratch(config)
    model = get_model(config.model_name, splits.n_classes, ckpt_path=None if from_scratch else config.ckpt_path,
                      img_size=config.img_size, in_channels=in_channels).to(device)
    # the clean budget: the original model on the validation split, before anything is attached to it
    reference = original_validation(config, model, splits, device) if context.is_main else None
    budget = CleanBudget.from_original(context.broadcast_object(reference), config.max_clean_drop)
    if from_scratch:  # no original model: only a collapse can be judged
        budget = CleanBudget(float("nan"), config.max_clean_drop, budget.majority_rate)
    ctx = build_context(config, model, splits, device)
    ctx.extras["out_dir"] = out_dir
    frozen = []
    if config.freeze and not from_scratch:
        example = splits.train.normalize(splits.train.load_raw(0))[None].to(device)
        frozen = freeze_up_to(model, ctx.layer_name, example)
    if context.is_main:
        save_resolved_config(config, out_dir)

    start = time.time()
    method.prepare(ctx)
    history, epoch = [], None
    if method.trains:
        hooks = TrainingHooks(extra_loss=method.extra_loss, forward=method.forward,
                              input_requires_grad=method.input_requires_grad,
                              frozen_modules=frozen + batchnorm_kept_in_eval(config, model, from_scratch),
                              grad_clip=config.grad_clip, validation=SubsetValidation(budget),
                              generators=method.generators())
        trainer = Trainer(config, out_dir, model=model, splits=DataSplits(ctx.train_set, splits.val, splits.test),
                          inputs=inputs, hooks=hooks)
        last = out_dir / "checkpoints" / "last.pt"
        if resume and context.same_on_all_ranks(last.exists(), f"whether {last} exists"):
            trainer.resume(strict=strict_resume)
        history = trainer.fit()
        epoch = trainer.best_epoch
        if context.is_main:  # the epoch the selection rule chose, not the last one
            model.load_state_dict(load_checkpoint(out_dir / "checkpoints" / "best.pt")["model_state_dict"])
        method.finish(model)
    seconds = time.time() - start
    if not context.is_main:  # rank 0 saves and evaluates the corrected model
        return out_dir, {"method": config.method, "correction_seconds": seconds, "history": history}

    save_checkpoint(target, model, config.model_name, splits.n_classes, config.model_dump(mode="json"),
                    correction={"method": config.method, "layer_name": ctx.layer_name, "state": method.state()},
                    in_channels=int(in_channels), img_size=config.img_size, correction_seconds=seconds,
                    original_ckpt=config.ckpt_path, inputs=inputs, epoch=epoch)
    # evaluate the model as every later step will see it: reloaded from its checkpoint
    corrected = load_corrected_model(target, device)
    # the mitigation step decides on validation only; test numbers come from the evaluation steps
    val = evaluate_subsets(corrected, splits.val, config.batch_size, device, config.num_workers)
    verdict = budget.judge(val)
    selection = {"status": verdict["status"], "epoch": epoch,
                 "criterion": SubsetValidation.criterion if method.trains else "training-free: the one model",
                 "max_clean_drop": config.max_clean_drop, "val": accuracies(val), "original_val": accuracies(reference),
                 "clean_change": verdict["clean_change"], "majority_rate": budget.majority_rate}
    if verdict["status"] != "ok":
        print(f"{config.config_name}: status {verdict['status']}: validation clean accuracy {verdict['clean']:.3f} "
              f"against the original's {budget.reference_clean:.3f} (max_clean_drop {config.max_clean_drop}, "
              f"majority-class rate {budget.majority_rate:.3f})")
    metrics = {"method": config.method, "correction_seconds": seconds, "frozen_modules": len(frozen),
               "selection": selection, "val": val, "history": history, "inputs": inputs,
               "corrected": file_identity(target)}
    write_json(out_dir / "metrics.json", metrics)
    return out_dir, metrics
