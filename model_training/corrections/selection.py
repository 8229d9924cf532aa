"""Which epoch and which strength a correction keeps, and whether its result is usable.

A corrected model is judged against the original model on the same split (validation for every
choice, test for reporting):

* ``collapsed``: its clean accuracy is at most the majority-class rate of the clean samples plus
  :data:`COLLAPSE_MARGIN`, while the original's was above it: it has lost what it knew, whatever
  else its numbers say;
* ``degraded``: its clean accuracy fell more than ``max_clean_drop`` below the original's;
* ``ok`` otherwise.

"Clean" is the ``clean`` subset where the data have one, else the data as they are (``ch``).

**The selection rule** (the same for the epochs of one run, the strengths of a sweep and the
configurations of a grid): among the candidates that are ``ok`` on validation, keep the one with
the highest validation ``attacked`` accuracy (``ch`` accuracy where there is no attacked subset);
if none is ``ok``, keep the one with the highest validation clean accuracy, and it keeps its
status. So a correction never returns a model beyond the clean budget without saying so, and a
degraded or collapsed candidate is never preferred to an ``ok`` one.
"""
from dataclasses import dataclass

import numpy as np

COLLAPSE_MARGIN = 0.05
STATUSES = ("ok", "degraded", "collapsed")  # best first


def accuracies(subsets) -> dict:
    """``{subset: accuracy}`` from the metrics of :func:`utils.metrics.evaluate_subsets`."""
    return {name: m["accuracy"] for name, m in subsets.items()}


def clean_subset(subsets) -> str:
    return "clean" if "clean" in subsets else "ch"


def target_subset(subsets) -> str:
    return "attacked" if "attacked" in subsets else "ch"


@dataclass(frozen=True)
class CleanBudget:
    """The original model's clean accuracy on a split, and how much of it a correction may lose.

    ``majority_rate``: share of the most frequent class among the clean samples of that split.
    """

    reference_clean: float
    max_clean_drop: float
    majority_rate: float

    @classmethod
    def from_original(cls, original_subsets, max_clean_drop):
        """From the original model's metrics on the split (:func:`utils.metrics.evaluate_subsets`)."""
        clean = original_subsets[clean_subset(original_subsets)]
        return cls(clean["accuracy"], max_clean_drop, clean.get("majority_rate", float("nan")))

    def at_chance(self, accuracy):
        return bool(np.isfinite(self.majority_rate) and accuracy <= self.majority_rate + COLLAPSE_MARGIN)

    def status(self, clean_accuracy) -> str:
        if self.at_chance(clean_accuracy) and not self.at_chance(self.reference_clean):  # nan: no original
            return "collapsed"
        if clean_accuracy < self.reference_clean - self.max_clean_drop - 1e-9:
            return "degraded"
        return "ok"

    def judge(self, subsets) -> dict:
        """Status and the numbers behind it for one model's metrics on the split."""
        acc = accuracies(subsets)
        clean = acc[clean_subset(subsets)]
        return {"status": self.status(clean), "clean": clean, "target": acc[target_subset(subsets)],
                "clean_change": clean - self.reference_clean}

    def key(self, clean, target):
        """Sort key of the selection rule: larger is better."""
        ok = self.status(clean) == "ok"
        return (1, target, clean) if ok else (0, clean, target)


def choose(candidates, budget: CleanBudget):
    """Index of the candidate the selection rule keeps; ``candidates`` are ``(clean, target)`` pairs
    of validation accuracies (means over seeds where a candidate has several)."""
    if not candidates:
        raise ValueError("nothing to choose from")
    keys = [budget.key(clean, target) for clean, target in candidates]
    return max(range(len(keys)), key=lambda i: keys[i])  # the first of equals: the earliest, the weakest


def worst(statuses):
    """The worst of several statuses (e.g. of a candidate's seeds)."""
    return max(statuses, key=STATUSES.index) if statuses else "ok"


CRITERION = ("highest validation attacked accuracy (ch where there is no attacked subset) among the candidates "
             "whose validation clean accuracy is within max_clean_drop of the original's and above the "
             f"majority-class rate + {COLLAPSE_MARGIN}; if none, the highest validation clean accuracy")


class SubsetValidation:
    """The Trainer's validation for corrections (see :class:`model_training.trainer.Validation`):
    accuracy on every validation subset, the status against ``budget``, and the selection rule's key."""

    criterion = CRITERION

    def __init__(self, budget: CleanBudget):
        self.budget = budget

    def __call__(self, model, split, config, device):
        from utils.metrics import evaluate_subsets

        # the subsets the rule reads (clean and attacked where they exist, else the data as they are)
        subsets = evaluate_subsets(model, split, config.batch_size, device, config.num_workers,
                                   subsets=("clean", "attacked"))
        verdict = self.budget.judge(subsets)
        values = {f"val_{name}": acc for name, acc in accuracies(subsets).items()}
        values["val_status"] = verdict["status"]
        return values, self.budget.key(verdict["clean"], verdict["target"])
