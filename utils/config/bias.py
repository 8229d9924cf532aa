"""Config keys of bias modelling (CAVs), biased-sample retrieval and localization."""
from typing import Literal

from pydantic import Field

from utils.config.schemas import StrictModel


class BiasOptions(StrictModel):
    cav_type: Literal["svm", "ridge", "lasso", "logistic", "signal", "mean"] = "signal"
    cav_mode: Literal["cavs_max", "cavs_mean", "rel"] = Field("cavs_max", description="features the CAV is fit on")
