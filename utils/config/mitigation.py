"""Config of the mitigation step (``start_model_correction``) and of the re-evaluation steps.

Key names follow the original Reveal2Revise framework (``method``, ``lamb``, ``layer_name``,
``artifact``, ``ckpt_path``, ``criterion``, ``compute``, ``cav_type``, ...). ISNet keys follow the
Faster ISNet paper's symbols (``P``, ``d``, ``E``, ``A``, ``B``, ``epsilon``).
"""
from typing import Literal

from pydantic import Field, field_validator, model_validator

from utils.config.schemas import TrainingConfig


class MitigationConfig(TrainingConfig):
    """Correct the model of ``ckpt_path`` for ``artifact`` with ``method``; evaluate the result."""

    method: str = Field("RRR", description="correction method (registry in model_training.corrections)")
    lamb: float = Field(1.0, ge=0, description="weight of the correction loss (lambda)")
    artifact: str = Field(description="the artifact (bias concept) to unlearn")
    freeze: bool = Field(True, description="freeze every parameterised layer up to and including layer_name")
    max_clean_drop: float = Field(0.03, ge=0, le=1, description="clean accuracy a correction may lose against the "
                                  "original model (validation split) before it is 'degraded'; also bounds which "
                                  "epoch, strength and configuration are chosen")
    sweep: list[float] | None = Field(None, min_length=1, description="values of the method's strength (lamb for RRR "
                                      "and RRClarc, A for ISNet) to try; the one the selection rule prefers on the "
                                      "validation split is reported. None: the configured value only")
    sweep_epochs: int | None = Field(None, ge=1, description="with a sweep: epochs every strength is trained before "
                                     "one is chosen on validation; the chosen one then continues to num_epochs. None: "
                                     "every strength trains num_epochs")
    seeds: list[int] | None = Field(None, min_length=1, description="training seeds (train_seed) each run is repeated "
                                    "with; results are reported as mean ± sd. None: one run (train_seed)")

    # --- where artifact samples and their masks come from ----------------------------------------
    source_masks: Literal["gt", "localization"] = Field(
        "gt", description="artifact masks: ground truth of the data set, or the localization step's PNGs")
    localization_dir: str | None = Field(
        None, description="for source_masks: localization -- folder with index.json (or <artifact>/index.json)")

    # --- CAVs (P-ClArC, rP-ClArC, RR-ClArC, TCAV) ------------------------------------------------
    cav_type: Literal["svm", "ridge", "lasso", "logistic", "signal", "mean"] = Field(
        "signal", description="CAV whose direction is projected out / penalised")
    cav_mode: Literal["cavs_max", "cavs_mean"] = Field("cavs_max", description="spatial pooling of activations")
    cav_scope: Literal["artifact_classes", "all"] = Field(
        "artifact_classes", description="samples the CAV is fit on: only the classes in which the artifact occurs "
        "(the direction is not confounded with the label), or all samples")
    reactive_cav_type: Literal["svm", "ridge", "lasso", "logistic"] = Field(
        "svm", description="rP-ClArC: CAV with a bias that decides whether the artifact is present")

    # --- RRR --------------------------------------------------------------------------------
    rrr_penalty: Literal["squared", "cosine", "share", "positive_share"] = Field(
        "squared", description="RRR: squared sum of the masked input gradient, cosine(|grad|, mask), the "
                               "share of |grad| inside the mask (scale-free), or the share of positive "
                               "channel-summed relevance inside the mask (the artifact relevance metric)")
    rrr_explanation: Literal["gradient", "lrp", "lrp_composite"] = Field(
        "gradient", description="RRR: explanation penalised inside the mask: the input gradient of the "
                                "log-probabilities, the differentiable epsilon-LRP heatmap of the true "
                                "class (uses epsilon and input_rule), or the heatmap of the model's own LRP "
                                "composite (z+ on convolutions for the VGG/ResNet families: what the "
                                "evaluation measures; fast LRP backend, batch statistics)")

    # --- RR-ClArC ---------------------------------------------------------------------------
    criterion: Literal["all_logits_random", "logprobs", "target"] = Field(
        "all_logits_random", description="RR-ClArC: which output is differentiated w.r.t. the layer")
    compute: Literal["l2_mean"] = Field("l2_mean", description="RR-ClArC: gradient spatially averaged, squared")

    # --- ISNet ------------------------------------------------------------------------------
    variant: Literal["original", "selective", "stochastic"] = Field(
        "selective", description="ISNet: which outputs are explained: every class logit (original), the label's "
        "log-odds (selective) or one random logit per sample (stochastic); which heatmaps of them: 'heatmap'")
    heatmap: Literal["lrp", "dual", "grad_x_input"] = Field(
        "lrp", description="ISNet: the heatmaps the loss is applied to: the differentiable epsilon-LRP (lrp: "
        "epsilon, input_rule); dual (the Dual ISNet): that one and the model's own LRP composite (z+ on the "
        "convolutions, what the evaluation measures), loss = mean of the two, each with its own C1/C2; "
        "grad_x_input: gradient x input (the ablation without LRP; vision transformers too)")
    deep_supervision: bool = Field(False, description="ISNet: also penalise hidden-layer relevances")
    selective_class: Literal["label", "lowest_logit"] = "label"
    P: float = Field(0.7, ge=0, le=1, description="ISNet: weight of the heatmap loss vs cross-entropy")
    d: float = Field(0.996, ge=0, lt=1, description="ISNet: GWRP decay (0 = max pooling)")
    E: float = Field(1.0, gt=0, description="ISNet: background loss scale l_bkg = log(1 + b/E)")
    A: float = Field(1.0, ge=0, description="ISNet: weight of the background loss")
    B: float = Field(1.0, ge=0, description="ISNet: weight of the foreground loss")
    epsilon: float = Field(0.01, gt=0, description="ISNet and RRR with rrr_explanation lrp: epsilon of the differentiable LRP")
    input_rule: Literal["gradient", "zb"] = Field("zb", description="ISNet and RRR with rrr_explanation lrp: LRP rule of the input layer")
    C1: float | None = Field(None, gt=0, description="ISNet: lower foreground bound of the epsilon-LRP (or "
                             "grad_x_input) heatmap (None: tuned)")
    C2: float | None = Field(None, gt=0, description="ISNet: upper foreground bound (None: tuned)")
    C1_zplus: float | None = Field(None, gt=0, description="ISNet heatmap dual: lower foreground bound of the z+ "
                                   "heatmap (None: tuned on its own heatmaps; C1/C2 bound the epsilon-LRP one)")
    C2_zplus: float | None = Field(None, gt=0, description="ISNet heatmap dual: upper foreground bound of the z+ "
                                   "heatmap (None: tuned)")
    tune_epochs: int = Field(2, ge=0, description="ISNet: plain epochs whose heatmaps tune C1/C2")
    from_scratch: bool = Field(False, description="ISNet: train a fresh model instead of correcting ckpt_path")
    batchnorm_statistics: Literal["auto", "train", "frozen"] = Field(
        "auto", description="BatchNorm running statistics while correcting: updated (train), kept (frozen), or "
        "auto = frozen when a trained model is fine-tuned, train for ISNet from scratch")
    grad_clip: float | None = Field(None, gt=0, description="gradient-norm clipping (None: the method's default, "
                                     "1.0 for ISNet, none for the others)")

    # --- re-evaluation ----------------------------------------------------------------------
    eval_splits: list[Literal["val", "test"]] = Field(["val", "test"], description="splits of re-evaluation")
    eval_max_samples: int | None = Field(None, ge=1, description="cap on artifact samples for relevance/TCAV")
    mask_dilation: int = Field(1, ge=0, description="pixels the artifact mask is dilated for artifact relevance")
    n_heatmaps: int = Field(6, ge=1, description="samples shown by plot_heatmaps")

    @field_validator("method")
    @classmethod
    def _known_method(cls, name):
        from model_training.corrections import list_corrections

        if name not in list_corrections():
            raise ValueError(f"one of {', '.join(list_corrections())}")
        return name

    @field_validator("variant", mode="before")
    @classmethod
    def _dual_is_a_heatmap(cls, value):
        if value == "dual":  # the paper's "Dual ISNet" names which heatmaps, not which outputs are explained
            raise ValueError("'dual' is set by heatmap: dual (with variant original, selective or stochastic)")
        return value

    @model_validator(mode="after")
    def _needs(self):
        from model_training.corrections import get_correction_method

        method = get_correction_method(self.method)
        if self.source_masks == "localization" and not self.localization_dir:
            raise ValueError("source_masks: localization needs 'localization_dir'")
        refusal = method.refusal(self)  # e.g. a heatmap loss on a model family without differentiable LRP
        if refusal:
            raise ValueError(refusal)
        if self.sweep is not None and method.strength is None:
            raise ValueError(f"sweep: method {self.method} has no strength to sweep (training-free or plain "
                             "fine-tuning); remove 'sweep'")
        if self.sweep_epochs is not None and self.sweep is not None and self.sweep_epochs > self.num_epochs:
            raise ValueError(f"sweep_epochs: at most num_epochs ({self.num_epochs}), got {self.sweep_epochs}")
        if self.seeds is not None and len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds: each seed once, got {self.seeds}")
        if not self.ckpt_path and not method.starts_from_scratch(self):
            raise ValueError("'ckpt_path' (the model to correct) is required")
        for key, value in method.defaults.items():  # the method's own defaults for keys the user left unset
            if getattr(self, key) is None:
                setattr(self, key, value)
        return self
