"""Artifacts inserted into any data set (images or signals) at per-class rates, with evaluation subsets.

This one mechanism serves both the embedded data set's natural-looking artifacts and the
``<name>_attacked`` controlled setting of the published work. Which samples carry an artifact is
a deterministic function of (seed, split, index, artifact), so every run, process and step sees
the same data. Modes give the evaluation subsets:

* ``ch``: the training distribution (artifacts at the configured rates);
* ``clean``: no inserted artifact at all;
* ``attacked``: the target artifact in every sample (other artifacts as in ``ch``);
* ``confounding``: the target artifact in every sample of the classes whose rate of it is 0 (the
  classes that never had it in training) and in no sample of the classes that had it (other
  artifacts as in ``ch``): the shortcut now points to the wrong class, so a model that relies on it
  fails where ``attacked`` only adds it to the class it already points to. Single-label only: with
  multi-hot labels a sample belongs to several classes and "the classes that had it" is not a
  partition of the samples.

Artifacts the base split itself annotates (real ones, from annotation files) are reported
unchanged for every name the spec does not insert, so a wrapped split still exposes them; their
``clean``/``attacked`` subsets are made by pasting (``datasets.pasted_artifacts``).
"""
import functools
import zlib

import numpy as np
import torch

from datasets.artifacts import insert_artifact
from datasets.artifacts.registry import empty_mask
from datasets.base import BaseDataset, RenderMemo
from utils.errors import UserError

MODES = ("ch", "clean", "attacked", "confounding")
# samples with their inserted artifacts: (image, {artifact: mask}) under (base render key, seed, artifacts)
_RENDERED = RenderMemo(lambda rendered: rendered[0].nbytes + sum(m.nbytes for m in rendered[1].values()))


@functools.lru_cache(maxsize=64)
def _uniform_draws(seed, split, artifact, n):
    """One uniform draw per sample of a split for one artifact, each from its own seeded generator (whether
    sample i carries the artifact does not depend on the others). Kept for the process, read-only: every
    subset and every step opens the same splits again, and a generator per sample is slow to make."""
    draws = np.array([np.random.default_rng([seed, split, i, artifact]).random() for i in range(n)])
    draws.setflags(write=False)
    return draws


def _code(text):
    return zlib.crc32(text.encode())


class ArtifactDataset(BaseDataset):
    def __init__(self, base: BaseDataset, spec, seed=0, target=None, mode="ch"):
        """``spec``: artifact -> {class index: probability}; ``target``: the artifact of ``attacked``."""
        super().__init__(base.split, base.class_names, base.sample_ids, base.labels, base.mean, base.std,
                         base.augment, base.multi_label)
        if mode not in MODES:
            raise UserError(f"unknown evaluation subset '{mode}'; valid: {', '.join(MODES)}")
        self.base, self.spec, self.seed, self.mode = base, dict(spec), seed, mode
        self.modality = base.modality
        self.target = target if target is not None else next(iter(self.spec), None)
        if mode == "confounding":
            self._confounded = self._confounding_classes()
        self._drawn = {name: self._draw_all(name) for name in self.spec}
        # which samples carry which artifact, looked up whenever a sample is read (artifact_labels copies)
        self._carries = {name: self.artifact_labels(name) for name in self.spec}

    def with_mode(self, mode):
        """The same split as evaluation subset ``mode`` (``ch``, ``clean``, ``attacked`` or ``confounding``)."""
        return ArtifactDataset(self.base, self.spec, self.seed, self.target, mode)

    def _confounding_classes(self):
        """Boolean per class: whether ``confounding`` gives its samples the target artifact (its rate is 0).

        The rates are the spec's, i.e. the training split's (every split draws with the same rates), so
        the subset is defined the same way on validation and test."""
        if self.multi_label:
            raise UserError("evaluation subset 'confounding' needs single-label data (multi-hot labels do not "
                            "split the samples into classes with and without the artifact)")
        if self.target not in self.spec:
            raise UserError("evaluation subset 'confounding' needs an inserted target artifact ('artifact'); "
                            f"inserted: {', '.join(self.spec) or 'none'}")
        rates = np.array([self.spec[self.target].get(k, 0.0) for k in range(self.n_classes)])
        if (rates > 0).all() or not (rates > 0).any():
            raise UserError(f"evaluation subset 'confounding': artifact '{self.target}' must occur in some classes "
                            f"and not in others, its rates per class are {dict(zip(self.class_names, rates.tolist()))}")
        return rates == 0

    # --- which samples carry which artifact --------------------------------------------------
    def _draw_all(self, artifact):
        rates = self.spec[artifact]
        draws = _uniform_draws(self.seed, _code(self.split), _code(artifact), len(self))
        if self.multi_label:
            p = np.array([max([rates.get(c, 0.0) for c in np.flatnonzero(row)] or [0.0]) for row in self.labels])
        else:
            p = np.array([rates.get(int(y), 0.0) for y in self.labels])
        return draws < p

    @property
    def artifact_names(self):
        return list(self.spec) + [a for a in self.base.artifact_names if a not in self.spec]

    def artifact_labels(self, artifact):
        if artifact not in self.spec:
            # annotated in the data itself: no subset mode can add or remove it
            return np.asarray(self.base.artifact_labels(artifact), dtype=bool)
        if self.mode == "clean":
            return np.zeros(len(self), dtype=bool)
        if self.mode == "attacked" and artifact == self.target:
            return np.ones(len(self), dtype=bool)
        if self.mode == "confounding" and artifact == self.target:
            return self._confounded[np.asarray(self.labels, dtype=int)]
        return self._drawn[artifact].copy()

    def _present(self, idx):
        return tuple(a for a, carries in self._carries.items() if carries[idx])

    # --- rendering ------------------------------------------------------------------------------
    def render(self, idx):
        """Sample in the inserters' layout (image (H, W, 3), signal (C, T)) with its artifacts,
        and the visible mask of each inserted artifact.

        Kept for the process when the base sample is generated (:meth:`BaseDataset.render_key`): every
        epoch, subset and correction reads the same samples again, and drawing their artifacts anew cost
        as much as the model's passes over them (the demo's corrections: 26 of 226 s)."""
        return self._render(idx, self._present(idx))

    def _render(self, idx, present):
        key = self.base.render_key(idx) if present else None
        if key is None:
            return self._insert(idx, present)
        return _RENDERED.get((key, self.seed, present), lambda: self._insert(idx, present))

    def _insert(self, idx, present):
        image = self.base.load_raw(idx)
        image = (image.permute(1, 2, 0) if self.modality == "image" else image).numpy()
        masks = {}
        for artifact in present:
            rng = np.random.default_rng([self.seed, _code(self.split), idx, _code(artifact), 1])
            image, mask = insert_artifact(image, artifact, rng)
            for other in masks.values():  # a later artifact may cover an earlier one
                other &= ~mask
            masks[artifact] = mask
        return image, masks

    def load_raw(self, idx):
        present = self._present(idx)
        if not present:  # the base's sample as it is, without a round trip through the inserters' layout
            return self.base.load_raw(idx)
        x = torch.from_numpy(np.ascontiguousarray(self._render(idx, present)[0]))
        return x.permute(2, 0, 1) if self.modality == "image" else x

    def get_mask(self, idx, artifact):
        if artifact not in self.spec:
            # a real artifact's mask is kept whole: inserted ones may be translucent (white_color)
            return self.base.get_mask(idx, artifact)
        image, masks = self.render(idx)
        return torch.from_numpy(masks[artifact].copy() if artifact in masks else empty_mask(image, self.modality))

    def get_foreground_mask(self, idx):
        foreground = self.base.get_foreground_mask(idx)
        if foreground is None or not self._present(idx):
            return foreground
        _, masks = self.render(idx)
        for mask in masks.values():
            foreground = foreground & ~torch.from_numpy(mask)
        return foreground
