"""CAVs of the artifact on the model being corrected (the CAV library is ``utils.bias.cav``)."""
from model_training.corrections.layers import pooled_activations
from utils.bias.cav import fit_cav


def training_features(ctx):
    """Pooled activations of ``layer_name`` on the training split, computed once per context."""
    if "train_features" not in ctx.extras:
        config = ctx.config
        ctx.extras["train_features"] = pooled_activations(
            ctx.model, ctx.splits.train, ctx.layer_name, config.cav_mode, config.batch_size, ctx.device,
            desc=f"activations {ctx.layer_name}")
    return ctx.extras["train_features"]


def fit_artifact_cav(ctx, method):
    """CAV of the artifact (labels ``ctx.artifact_train``) on the training features."""
    return fit_cav(training_features(ctx), ctx.artifact_train, method)
