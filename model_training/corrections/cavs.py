"""CAVs of the artifact on the model being corrected (the CAV library is ``utils.bias.cav``).

**ours**: by default the CAV is fit only on samples of the classes in which the artifact occurs.
When an artifact appears in one class only (band-aids on benign lesions), artifact vs all other
samples also separates the classes, and the "artifact" direction then carries class evidence:
projecting it out (P-ClArC) or penalising it (RR-ClArC) removes genuine features too.
"""
import numpy as np

from model_training.corrections.layers import pooled_activations
from model_training.corrections.shared import computed_once
from utils.bias.cav import fit_cav
from utils.distributed import get_context


def cav_sample_mask(labels, artifact, scope):
    """Which samples a CAV is fit on: all, or those of classes that contain the artifact."""
    artifact = np.asarray(artifact, dtype=bool)
    if scope == "all":
        return np.ones_like(artifact)
    labels = np.asarray(labels)
    if labels.ndim == 2:  # multi-label: samples sharing a label with some artifact sample
        classes = labels[artifact].any(0)
        return (labels[:, classes] > 0).any(1) | artifact
    return np.isin(labels, np.unique(labels[artifact]))


def fit_scoped_cav(features, labels, artifact, method, scope):
    keep = cav_sample_mask(labels, artifact, scope)
    return fit_cav(features[np.flatnonzero(keep)], np.asarray(artifact, dtype=bool)[keep], method)


def training_features(ctx):
    """Pooled activations of ``layer_name`` on the training split, computed once per context.

    Under ``torchrun`` each rank computes a contiguous share and every rank receives all rows in
    sample order, so the ranks fit the same CAV on the same features.
    """
    if "train_features" not in ctx.extras:
        config, context = ctx.config, get_context()

        def compute():
            share = context.shard(range(len(ctx.splits.train))) if context.enabled else None
            local = pooled_activations(
                ctx.model, ctx.splits.train, ctx.layer_name, config.cav_mode, config.batch_size, ctx.device,
                desc=f"activations {ctx.layer_name}" if context.is_main else None, indices=share,
                num_workers=config.num_workers, axis=ctx.channel_axis)
            return context.gather_rows(local)

        # every run of a sweep and every CAV-based method of one model reads the same features
        settings = {"layer": ctx.layer_name, "cav_mode": config.cav_mode, "batch_size": config.batch_size,
                    "axis": ctx.channel_axis, "device": str(ctx.device), "ranks": context.world_size}
        ctx.extras["train_features"] = computed_once("CAV training features", ctx, settings, compute)
    return ctx.extras["train_features"]


def fit_artifact_cav(ctx, method):
    """CAV of the artifact (labels ``ctx.artifact_train``) on the training features (rank 0's under
    ``torchrun``, so every rank corrects along exactly the same direction)."""
    cav = fit_scoped_cav(training_features(ctx), ctx.splits.train.labels, ctx.artifact_train, method,
                         ctx.config.cav_scope)
    return get_context().broadcast_object(cav)
