"""Artifact inserters, each with an exact mask: RGB images (``image_artifacts``) and 12-lead
signals (``signal_artifacts``).

An inserter draws a colour layer and an opacity map ``alpha``; the sample is blended as
``(1 - alpha) * x + alpha * colour``. The artifact's mask is ``alpha > 0``: exactly the entries
the artifact changed. Inserters are pure functions of the sample and a seeded generator, so
which samples get an artifact, and where, is reproducible from (seed, index).
"""
from datasets.artifacts.registry import ARTIFACTS, insert_artifact, list_artifacts, register_artifact
from datasets.artifacts import image_artifacts, signal_artifacts  # noqa: F401  (registration)

__all__ = ["ARTIFACTS", "insert_artifact", "list_artifacts", "register_artifact"]
