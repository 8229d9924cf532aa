"""Config keys of bias modelling (CAVs), biased-sample retrieval, iterative annotation and localization."""
from typing import Literal

from pydantic import Field

from utils.config.schemas import StrictModel


class BiasOptions(StrictModel):
    # --- CAV ---------------------------------------------------------------------------------
    # defaults chosen by measuring the features on the demo: experiments/sample_retrieval/README.md
    cav_type: Literal["svm", "ridge", "lasso", "logistic", "signal", "mean"] = "svm"
    cav_mode: Literal["cavs_max", "cavs_mean", "rel"] = Field("cavs_mean", description="features the CAV is fit on")
    # annotations by default: on real data there is no ground truth, and a step-by-step audit must use
    # the reviewer's decisions as the pipeline does; ground_truth is a choice for controlled experiments
    cav_labels: Literal["annotations", "ground_truth"] = Field(
        "annotations", description="where the CAV's artifact labels come from: the annotation file that "
        "experiments.sample_retrieval.refine writes (or annotation_file), or the data set's ground truth "
        "(controlled experiments only)")
    cav_center_classes: bool = Field(
        False, description="fit the CAV on features with each class's mean removed (for artifacts tied to one class)")
    localization_cav_type: Literal["svm", "ridge", "lasso", "logistic", "signal", "mean"] | None = Field(
        None, description="CAV method of localization; default: cav_type")
    localization_composite: str | None = Field(
        None, description="LRP composite of localization (utils.lrp.composites); default: the model's own")
    localization_init: Literal["channelwise", "position_gated", "peak_region"] = Field(
        "channelwise", description="initial relevance at the layer: max(0, ReLU(a) * v) everywhere, only "
        "where the local projection on v passes the gate, or only in the connected gated region around the "
        "strongest position")
    localization_gate_quantile: float | None = Field(
        None, gt=0, lt=1, description="gate threshold of position_gated / peak_region: this quantile of the "
        "projection over all positions of training samples without the artifact; default: 0")
    localization_gate_samples: int = Field(
        256, ge=1, description="at most this many artifact-free training samples calibrate the gate")
    annotation_file: str | None = Field(
        None, description="JSON {artifact: [sample ids]}; default: <sample_retrieval step dir>/annotations.json")
    annotation_seeds: list[str] = Field(default_factory=list,
                                        description="sample ids refine shows for review first, before the reveal "
                                        "step's candidates; candidates, not annotations")

    # --- retrieval ---------------------------------------------------------------------------
    retrieval_eval_splits: list[Literal["train", "val", "test"]] = Field(
        ["val", "test"], min_length=1, description="held-out splits the ranking metrics are reported on")
    retrieval_top_k: int = Field(16, ge=1, description="top-ranked samples shown in grids / per annotation round")
    annotation_round_share: float = Field(
        0.006, ge=0, le=1, description="a review round shows max(retrieval_top_k, this share of the training split) "
        "samples: each round refits the CAV on the whole split, so with a fixed number per round the rounds, and the "
        "annotation's time, would grow with the square of the split's size (1 round per 16 artifact samples); a "
        "share keeps the number of rounds fixed. 0.006: up to 2,666 training samples (the demo's 2,000) a round is "
        "retrieval_top_k; 20,000 samples: 120 per round. 0: always retrieval_top_k")
    annotation_n_seeds: int = Field(5, ge=1, description="candidates refine takes from the reveal step (its 4 x n "
                                    "top outlier samples and the n most central samples of every SpRAy cluster) "
                                    "or, in a simulated annotation (--simulate), seeds from the ground truth")
    simulate_target_recall: float = Field(0.9, gt=0, le=1)

    # --- localization ------------------------------------------------------------------------
    localization_split: Literal["train", "val", "test"] = Field("test", description="split localize_artifacts masks")
    localization_samples: Literal["ground_truth", "annotations", "all"] = Field(
        "ground_truth", description="which samples get masks: artifact samples by ground truth or "
        "annotation, or every sample of the split")
    mask_threshold: Literal["otsu", "percentile", "relative"] = "otsu"
    mask_percentile: float = Field(90.0, gt=0, lt=100, description="for mask_threshold: percentile")
    mask_relative: float = Field(0.3, gt=0, lt=1, description="for mask_threshold: relative (fraction of the "
                                 "blurred heatmap's maximum)")
    mask_power: float = Field(1.0, gt=0, description="the heatmap is raised to this power before blur and "
                              "threshold (< 1 compresses relevance peaks)")
    mask_closing: float = Field(0.0, ge=0, description="radius of a morphological closing of the mask at 224 px "
                                "(scaled with image size); 0: none")
    mask_fill_holes: bool = Field(False, description="fill holes of the mask")
    mask_components: Literal["all", "most_relevant"] = Field(
        "all", description="keep every connected component of the mask, or the one with the most relevance")
    mask_blur_kernel: int = Field(7, ge=1, description="Gaussian kernel size at 224 px (scaled with image size)")
    mask_blur_sigma: float = Field(8.0, ge=0, description="Gaussian sigma at 224 px (scaled with image size)")
    max_localization_samples: int | None = Field(None, ge=1, description="cap on samples localized")
