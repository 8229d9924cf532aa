"""Artifact inserters for RGB images, each with an exact pixel mask.

An inserter draws a colour layer and an opacity map ``alpha`` (H x W, in [0, 1]); the image is
blended as ``(1 - alpha) * image + alpha * colour``. The artifact's mask is ``alpha > 0``: exactly the
pixels the artifact changed. Inserters are pure functions of the image and a seeded generator, so
which samples get an artifact, and where, is reproducible from (seed, index).
"""
from datasets.artifacts.registry import ARTIFACTS, insert_artifact, list_artifacts, register_artifact
from datasets.artifacts import image_artifacts  # noqa: F401  (registration)

__all__ = ["ARTIFACTS", "insert_artifact", "list_artifacts", "register_artifact"]
