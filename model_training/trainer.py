"""Supervised training with evaluation, best/last checkpoints, metrics files and resume.

Used by ``start_training`` and reused by the mitigation step, which plugs extra loss terms in
through ``Trainer.extra_loss`` (a callable ``(model, batch, logits) -> tensor or None``; ``batch[0]``
is the input tensor the logits were computed from, on the training device), can replace the forward
pass (``Trainer.forward``, a callable ``(model, x) -> logits``), can ask for input
gradients (``input_requires_grad``), keep frozen modules in eval mode (``frozen_modules``), clip
gradient norms (``grad_clip``) and choose what "best" means (``validation``: a
:class:`Validation`, by default the highest validation accuracy). With the defaults, training is
plain supervised training.

``train_seed`` (default ``seed``) seeds what varies between repeats of one training (initial
weights, batch order, augmentation); ``seed`` alone decides the data.

Under ``torchrun`` each rank trains on its slice of every global batch (``utils.distributed``);
with ``mixed_precision`` on CUDA the forward pass and the losses run under bfloat16 autocast.
"""
import csv
import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from datasets import get_dataset_from_config
from model_training.losses import build_loss
from model_training.resume import resume_mismatch
from models import get_model, get_model_spec
from utils.checkpoint import load_checkpoint, load_weights, save_checkpoint
from utils.config import save_resolved_config
from utils.device import autocast, differentiable_attention, mixed_precision_enabled, use_memory_format
from utils.distributed import RankBatchSampler, get_context, global_batches, training_device
from utils.errors import UserError
from utils.identity import file_identity
from utils.io import read_json, write_json, write_text
from utils.locks import folder_lock
from utils.metrics import evaluate, evaluate_subsets
from utils.paths import step_dir
from utils.provenance import provenance
from utils.wandb_logging import RunLogger
from utils.registry import Registry

OPTIMIZERS = Registry("optimizer", {
    "sgd": lambda params, c: torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay),
    "adam": lambda params, c: torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay),
    "adamw": lambda params, c: torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay),
})


def training_dir(config):
    return step_dir(config, "training")


def best_checkpoint_path(config) -> Path:
    return step_dir(config, "training", create=False) / "checkpoints" / "best.pt"


# what a last.pt must hold to be continued
RESUME_KEYS = ("optimizer_state_dict", "scheduler_state_dict", "history", "epoch", "torch_rng_state")


def training_inputs(config, splits) -> dict:
    """The identities of what a training run reads besides its settings: the data's content (files on disk;
    ``None`` for generated data, which the settings decide) and the ``pretrained_weights`` file."""
    inputs = {"data": splits.identity()}
    if getattr(config, "pretrained_weights", None):
        inputs["pretrained_weights"] = file_identity(config.pretrained_weights)
    return inputs


def resume_problems(config, splits, out_dir=None, inputs=None):
    """``None`` when ``out_dir`` (default: the config's training folder) holds no stopped run, else the
    list of reasons why ``config`` cannot continue it (empty: it can). ``inputs``: see :class:`Trainer`."""
    last = Path(out_dir or training_dir(config)) / "checkpoints" / "last.pt"
    if not last.is_file():
        return None
    checkpoint = load_checkpoint(last)
    return resume_mismatch(checkpoint, config, {**training_inputs(config, splits), **(inputs or {})})


def training_seed(config) -> int:
    """The seed of a training's own randomness (``train_seed``, else the data's ``seed``)."""
    seed = getattr(config, "train_seed", None)
    return config.seed if seed is None else seed


class Validation:
    """What the Trainer measures on the validation split after an epoch, and which epoch is best.

    ``__call__(model, split, config, device)`` returns the values added to the epoch's row and a sort key: the epoch with the largest key is kept as ``best.pt``. This
    default keeps the highest validation accuracy.
    """

    criterion = "highest validation accuracy"

    def __call__(self, model, split, config, device):
        val = evaluate(model, split, config.batch_size, device, config.num_workers)
        return {"val_accuracy": val["accuracy"], "val_macro_f1": val["macro_f1"]}, (val["accuracy"],)


@dataclass(frozen=True)
class TrainingHooks:
    """How a correction changes the training loop; the defaults are plain training."""

    extra_loss: Callable | None = None  # (model, batch, logits) -> loss added to the task loss, or None
    forward: Callable | None = None  # (model, x) -> logits instead of model(x)
    input_requires_grad: bool = False  # losses on input gradients (RRR) need x in the graph
    frozen_modules: Sequence = ()  # stay in eval mode: frozen BatchNorm layers must keep their statistics
    grad_clip: float | None = None  # max gradient norm, or None
    validation: Validation = field(default_factory=Validation)
    # random generators of the loss's own (RR-ClArC's signs, ISNet's sampled classes): their states are saved
    # in every checkpoint and restored on resume, so a continued run draws what an uninterrupted one would
    generators: Sequence = ()


class Trainer:
    """``inputs``: identities of what the run reads besides its settings and its data (e.g. a correction's
    original checkpoint); they are stored in every checkpoint, and :meth:`resume` refuses a run whose
    settings or inputs differ (:mod:`model_training.resume`). ``hooks``: what a correction changes in
    the loop (:class:`TrainingHooks`)."""

    def __init__(self, config, out_dir=None, model=None, splits=None, inputs=None, hooks=None):
        self.config = config
        self.hooks = hooks or TrainingHooks()
        self.dist = get_context()
        self.device = training_device(self.dist, config.device)
        self.mixed_precision = mixed_precision_enabled(config.mixed_precision, self.device, warn=self.dist.is_main)
        self.seed = training_seed(config)
        torch.manual_seed(self.seed)
        np.random.seed(self.seed)
        self.splits = splits or get_dataset_from_config(config)
        self.splits.train.augment = config.augment
        self.inputs = {**training_inputs(config, self.splits), **(inputs or {})}
        self.model = model or get_model(config.model_name, self.splits.n_classes, img_size=config.img_size,
                                        in_channels=self.splits.in_channels,
                                        pretrained_weights=config.pretrained_weights)
        use_memory_format(self.model.to(self.device), config.memory_format)
        self.dist.broadcast_parameters(self.model)
        self.out_dir = Path(out_dir or training_dir(config))
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.criterion = build_loss(config.loss, self.splits.train.class_counts(),
                                    self.splits.train.multi_label).to(self.device)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = OPTIMIZERS[config.optimizer](trainable, config)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, config.milestones, config.gamma)
        self.history, self.start_epoch, self.best_key, self.best_epoch = [], 0, None, None

    # --- state ---------------------------------------------------------------------------------
    def _save(self, name, epoch):
        if not self.dist.is_main:
            return
        save_checkpoint(self.ckpt_dir / name, self.model, self.config.model_name, self.splits.n_classes,
                        self.config.model_dump(mode="json"), epoch=epoch,
                        optimizer_state_dict=self.optimizer.state_dict(),
                        scheduler_state_dict=self.scheduler.state_dict(), history=self.history,
                        best_key=self.best_key, best_epoch=self.best_epoch, torch_rng_state=torch.get_rng_state(),
                        generator_states=[g.get_state() for g in self.hooks.generators], inputs=self.inputs)

    def resume(self, strict=True):
        """Continue the run saved in ``last.pt``. When it was run with other settings or inputs: with
        ``strict``, stop with one line naming every difference; else return ``False`` (start afresh)."""
        path = self.ckpt_dir / "last.pt"
        checkpoint = load_checkpoint(path, required=RESUME_KEYS,
                                     what="a last.pt written by training (optimizer, scheduler, history, epoch)")
        problems = resume_mismatch(checkpoint, self.config, self.inputs)
        if problems:
            if not strict:
                return False
            raise UserError(f"cannot resume {self.out_dir}: it holds a run of other settings or inputs: "
                            f"{'; '.join(problems)}; pass --overwrite to start again, or choose another config_name")
        load_weights(self.model, checkpoint["model_state_dict"], path)
        try:
            self.optimizer.load_state_dict(checkpoint["optimizer_state_dict"])
            self.scheduler.load_state_dict(checkpoint["scheduler_state_dict"])
        except (ValueError, KeyError, TypeError) as err:
            raise UserError(f"checkpoint {path}: its optimizer or scheduler state does not fit this run "
                            f"({str(err).splitlines()[0]}); pass --overwrite to start again") from None
        self.history = list(checkpoint["history"])
        self.start_epoch = int(checkpoint["epoch"])
        self.best_key, self.best_epoch = checkpoint.get("best_key"), checkpoint.get("best_epoch")
        if self.best_key is None and "best_val_accuracy" in checkpoint:  # written before keys were general
            self.best_key = [float(checkpoint["best_val_accuracy"])]
        torch.set_rng_state(checkpoint["torch_rng_state"])
        # a checkpoint of an older version holds none: its generators start afresh, as they did then
        for generator, state in zip(self.hooks.generators, checkpoint.get("generator_states") or []):
            generator.set_state(state)
        return True

    # --- loop ----------------------------------------------------------------------------------
    def _loader(self, epoch):
        # a per-epoch seed makes the sample order reproducible across resumes and processes
        batches = global_batches(len(self.splits.train), self.config.batch_size, self.seed * 10_000 + epoch,
                                 drop_last=len(self.splits.train) > self.config.batch_size)
        return torch.utils.data.DataLoader(self.splits.train, batch_sampler=RankBatchSampler(batches, self.dist),
                                           num_workers=self.config.num_workers,
                                           pin_memory=self.device.type == "cuda")

    def train_epoch(self, epoch):
        self.model.train()
        hooks = self.hooks
        for module in hooks.frozen_modules:
            module.eval()
        total, correct, loss_sum = 0, 0, 0.0
        progress = tqdm(self._loader(epoch), desc=f"epoch {epoch + 1}/{self.config.num_epochs}", leave=False,
                        disable=not self.dist.is_main)
        for batch in progress:
            x, y = batch[0].to(self.device), batch[1].to(self.device)
            if hooks.input_requires_grad:
                x.requires_grad_(True)
            # a correction's loss may differentiate through gradients of this forward pass
            with autocast(self.device, self.mixed_precision), differentiable_attention(hooks.extra_loss is not None):
                logits = hooks.forward(self.model, x) if hooks.forward else self.model(x)
                loss = self.criterion(logits, y)
                if hooks.extra_loss is not None:
                    extra = hooks.extra_loss(self.model, (x, y, *batch[2:]), logits)
                    if extra is not None:
                        loss = loss + extra
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.dist.average_gradients(self.model.parameters())
            if hooks.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), hooks.grad_clip)
            self.optimizer.step()
            total += len(x)
            loss_sum += loss.item() * len(x)
            if y.dim() == 1:
                correct += (logits.argmax(1) == y).sum().item()
            progress.set_postfix(loss=f"{loss_sum / total:.4f}")
        self.scheduler.step()
        loss_sum, correct, total = self.dist.sum([loss_sum, correct, total])
        return {"train_loss": loss_sum / total, "train_accuracy": correct / total if correct else float("nan")}

    def fit(self):
        logger = RunLogger(self.config, self.out_dir, enabled=self.dist.is_main)
        for epoch in range(self.start_epoch, self.config.num_epochs):
            start = time.time()
            row = {"epoch": epoch + 1, **self.train_epoch(epoch)}
            if (epoch + 1) % self.config.eval_every == 0 or epoch + 1 == self.config.num_epochs:
                # rank 0 evaluates; every rank must agree on the result to keep the same state
                values, key = self.hooks.validation(self.model, self.splits.val, self.config, self.device) \
                    if self.dist.is_main else (None, None)
                values, key = self.dist.broadcast_object((values, list(key) if key is not None else None))
                self.dist.broadcast_rng_state()
                row.update(values)
                if self.best_key is None or key > list(self.best_key):
                    self.best_key, self.best_epoch = key, epoch + 1
                    self._save("best.pt", epoch + 1)
            row["seconds"] = time.time() - start
            self.history.append(row)
            logger.log(row, step=epoch + 1)
            self._save("last.pt", epoch + 1)
            if self.dist.is_main:
                self._write_history()
            self.dist.barrier()
        logger.finish()
        return self.history

    def _write_history(self):
        keys = list(dict.fromkeys(k for row in self.history for k in row))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=keys)
        writer.writeheader()
        writer.writerows(self.history)
        write_text(self.out_dir / "metrics.csv", buffer.getvalue())


def run_training(config, resume=False, overwrite=False):
    """Train ``config``'s model; returns the output folder and the test metrics per subset.

    The folder is locked for the run (:mod:`utils.locks`): a second run on it stops at once. ``resume``
    continues a stopped run of the same settings and inputs only (epochs may grow)."""
    out_dir = training_dir(config)
    with folder_lock(out_dir, enabled=get_context().is_main):
        return _run_training(config, out_dir, resume, overwrite)


def _run_training(config, out_dir, resume, overwrite):
    last = out_dir / "checkpoints" / "last.pt"
    has_last = get_context().same_on_all_ranks(last.exists(), f"whether {last} exists")
    if has_last and not (resume or overwrite):
        raise UserError(f"{out_dir} already holds a training run; pass --resume to continue it, "
                        "--overwrite to start again, or choose another config_name")
    trainer = Trainer(config, out_dir)
    if resume and has_last:
        trainer.resume()
    if trainer.dist.is_main:
        save_resolved_config(config, out_dir)
    trained_now = trainer.start_epoch < config.num_epochs
    trainer.fit()
    if not trainer.dist.is_main:  # rank 0 evaluates and writes the results
        return out_dir, {"history": trainer.history}
    best = load_checkpoint(out_dir / "checkpoints" / "best.pt")
    trainer.model.load_state_dict(best["model_state_dict"])
    test = evaluate_subsets(trainer.model, trainer.splits.test, config.batch_size, trainer.device, config.num_workers)
    val = evaluate_subsets(trainer.model, trainer.splits.val, config.batch_size, trainer.device, config.num_workers)
    # where the weights come from: the run that trained the last epoch (a resumed, finished run keeps it)
    previous = read_json(out_dir / "metrics.json") if (out_dir / "metrics.json").is_file() else {}
    record = provenance() if trained_now or "provenance" not in previous else previous["provenance"]
    metrics = {"best_epoch": best.get("epoch"), "test": test, "val": val, "history": trainer.history,
               "default_layer": get_model_spec(config.model_name).default_layer, "provenance": record}
    write_json(out_dir / "metrics.json", metrics)
    from utils.plots import plot_training_curves

    plot_training_curves(trainer.history, out_dir / "training_curves.png")
    return out_dir, metrics
