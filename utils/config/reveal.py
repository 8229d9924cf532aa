"""Config keys of preprocessing and the reveal step (SpRAy, DORA, CRP relevance patterns)."""
from typing import Literal

from pydantic import Field

from utils.config.schemas import StrictModel


class RevealOptions(StrictModel):
    splits: list[Literal["train", "val", "test"]] = Field(["train", "val", "test"],
                                                          description="splits preprocessing covers")
    relevance_target: Literal["label", "prediction"] = "label"
    heatmap_size: int | None = Field(None, ge=4, description="downsample stored input heatmaps to this size")
