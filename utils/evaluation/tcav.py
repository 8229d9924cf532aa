"""TCAV: how the model's outputs react to moving a layer's activation along the artifact's CAV.

For each class k and sample: the directional derivative ``<mean_spatial(d f_k / d a_l), v>`` (the
mean over space or tokens, along the model's channel axis as every other step, :mod:`utils.layout`).
Reported per class: the share of samples where it is positive (the TCAV score; ~0.5 or below
when the concept does not push the class) and the mean ``|<grad, v>|`` (the sensitivity, ~0
when the model ignores the direction). The gradient is taken at the layer's own output, before a
P-ClArC projection hook, so a projection that removes the direction shows as zero sensitivity.
"""
import numpy as np
import torch
from tqdm import tqdm

from model_training.corrections.layers import ActivationCatcher, get_layer, pooled_activations
from model_training.corrections.cavs import fit_scoped_cav
from utils.labels import biased_class_index
from utils.layout import pool


def directional_derivatives(model, dataset, indices, layer_name, direction, batch_size=32, device="cpu", axis=1):
    """(N, K) array of ``<mean_spatial(d f_k / d a_l), v>``; ``axis``: the layer's channel axis."""
    v = torch.as_tensor(np.asarray(direction), dtype=torch.float32, device=device)
    catcher = ActivationCatcher(get_layer(model, layer_name), ensure_grad=True, prepend=True)
    rows = []
    try:
        model.eval()
        for start in tqdm(range(0, len(indices), batch_size), desc="tcav", leave=False):
            batch = indices[start:start + batch_size]
            x = torch.stack([dataset.normalize(dataset.load_raw(int(i))) for i in batch]).to(device)
            with torch.enable_grad():
                logits = model(x)
                per_class = []
                for k in range(logits.shape[1]):
                    (grad,) = torch.autograd.grad(logits[:, k].sum(), catcher.output, retain_graph=True)
                    per_class.append(pool(grad, "cavs_mean", axis) @ v)
            rows.append(torch.stack(per_class, 1).detach().cpu())
    finally:
        catcher.remove()
    return torch.cat(rows).numpy()


def tcav_scores(derivatives, class_names):
    """Per class: TCAV score (share positive) and mean |directional derivative|."""
    return {name: {"tcav": float((derivatives[:, k] > 0).mean()),
                   "sensitivity": float(np.abs(derivatives[:, k]).mean())}
            for k, name in enumerate(class_names)}


def refit_cav(model, train_set, artifact_labels, layer_name, cav_type, cav_mode, batch_size, device,
              scope="artifact_classes", axis=1):
    """The artifact CAV refit on ``model``'s own training activations (after any projection)."""
    features = pooled_activations(model, train_set, layer_name, cav_mode, batch_size, device,
                                  desc="activations for CAV", axis=axis)
    return fit_scoped_cav(features, train_set.labels, artifact_labels, cav_type, scope)


def biased_class(train_set, artifact):
    """The class the artifact co-occurs with most often in training (the class it is evidence for):
    the highest rate of the artifact among the class's samples (for multi-hot labels, among the
    samples positive for it), :func:`utils.labels.biased_class_index`."""
    has = train_set.artifact_labels(artifact)
    return train_set.class_names[biased_class_index(train_set.labels, has, train_set.n_classes)]
