"""Which output an explanation or a per-sample penalty is about, for single- and multi-label tasks.

Single-label (labels ``(N,)`` of class indices): a sample's own class, as always.

Multi-label (multi-hot labels ``(N, K)``: PTB-XL, CheXpert with ``target: all``) has no single
"true class". One convention, used by every step that explains or penalises a sample's output (RRR
with LRP explanations, RR-ClArC ``target``, ISNet selective ``label``, artifact relevance, the
evaluation's heatmaps):

* the explained output of a sample is the **sum of the logits of its positive labels**,
  ``sum_k y_k f_k``. Under a sigmoid each logit is its label's log-odds ``log p_k - log(1 - p_k)``
  (the quantity ISNet's selective variant explains for one class), and LRP is linear in the
  relevance it starts from, so the heatmap of the sum is the sum of the per-label heatmaps: what
  the model uses to predict everything the sample is, whichever of its labels the artifact pushes,
  for the cost of one heatmap;
* a sample with **no positive label** (no finding) explains the **biased class**
  (:func:`biased_class_index`): the class the artifact is evidence for, so on such a sample the
  output a shortcut would raise (a false positive), not nothing.

The biased class is the class with the highest rate of the artifact among its training samples
(for multi-label: among the samples positive for it). Summaries that need one class (TCAV's
headline, the paired tests) use it too.

Preprocessing (``utils.preprocessing``) stores one class index per sample (SpRAy groups samples by
it) and keeps its own rule: the positive label with the highest logit.
"""
import numpy as np
import torch
import torch.nn.functional as F


def is_multi_hot(labels):
    """Whether ``labels`` (array or tensor) are multi-hot rows ``(N, K)`` rather than class indices ``(N,)``."""
    return np.ndim(labels) == 2


def class_members(labels, n_classes):
    """Boolean ``(N, K)``: which samples belong to (are positive for) each class."""
    labels = np.asarray(labels)
    return labels > 0 if is_multi_hot(labels) else labels[:, None] == np.arange(n_classes)


def class_rates(labels, has_artifact, n_classes, empty=0.0):
    """Per class: the share of its samples that carry the artifact (``empty`` for a class without samples)."""
    has = np.asarray(has_artifact, dtype=bool)
    members = class_members(labels, n_classes)
    return np.array([has[members[:, k]].mean() if members[:, k].any() else empty for k in range(n_classes)])


def biased_class_index(labels, has_artifact, n_classes):
    """The class the artifact is evidence for: the highest :func:`class_rates` (first on ties)."""
    return int(np.argmax(class_rates(labels, has_artifact, n_classes)))


def label_batch(dataset, indices):
    """The labels of ``indices`` of ``dataset`` as one tensor: ``(N,)`` class indices or ``(N, K)`` multi-hot."""
    return torch.stack([torch.as_tensor(dataset.label(int(i))) for i in indices])


def explained_labels(labels, fallback=None):
    """Labels with every sample's explained classes: class indices unchanged; multi-hot rows as they
    are, a row without a positive label set to the ``fallback`` class (the biased class, see the module
    docstring). The result is what :func:`explained_output` weighs the logits with, and what
    ``get_attributor(...).attribute(targets=...)`` accepts (a multi-hot row explains its classes' sum)."""
    labels = torch.as_tensor(labels)
    if not is_multi_hot(labels):
        return labels
    weights = (labels > 0).to(torch.float32)
    empty = weights.sum(1) == 0
    if bool(empty.any()):
        if fallback is None:
            raise ValueError("a multi-label sample without a positive label needs a fallback class to explain")
        weights[empty] = F.one_hot(torch.as_tensor(int(fallback)), weights.shape[1]).to(weights)
    return weights


def explained_output(logits, labels, fallback=None):
    """Per sample the output that is explained: ``f_y`` for a class index ``y``; for multi-hot labels the
    sum of the logits of the positive labels (the ``fallback`` class's where there is none)."""
    labels = torch.as_tensor(labels, device=logits.device)
    if not is_multi_hot(labels):
        return logits.gather(1, labels.view(-1, 1))[:, 0]
    return (logits * explained_labels(labels, fallback).to(logits)).sum(1)


def log_probabilities(logits, labels):
    """Log-probabilities of the model's outputs: softmax for one class per sample, a sigmoid per
    label for multi-hot labels (each label its own yes/no decision, as the ``bce`` loss trains it)."""
    return F.logsigmoid(logits) if is_multi_hot(labels) else F.log_softmax(logits, dim=1)


def label_names(label, class_names):
    """A sample's label as text: its class, or its positive labels joined by '+' ('none' without any)."""
    label = torch.as_tensor(label)
    if label.dim() == 0:
        return class_names[int(label)]
    return "+".join(class_names[k] for k in (label > 0).nonzero().flatten().tolist()) or "none"
