"""Config schemas, one per step. Key names follow the original Reveal2Revise framework.

Every schema forbids unknown keys (a typo must not be silently ignored) and validates
registry names (datasets, models) so a wrong name fails before any work starts.
"""
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

Probability = float
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+=@,-]*")


def check_path_name(name):
    """Raise ``ValueError`` unless ``name`` can name one folder or file of the outputs: letters, digits and
    ``_ . + = @ , -``, not starting with a dot (no separators, no ``..``, no hidden names)."""
    if not _NAME.fullmatch(str(name)) or len(str(name)) > 200:
        raise ValueError("a name usable as one folder name (letters, digits and _ . + = @ , -; no path separators, "
                         "not starting with '.', at most 200 characters)")


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class BaseConfig(StrictModel):
    """Keys shared by every step: what data, what model, where outputs go."""

    config_name: str = Field(description="name of the run; defaults to the config file's stem")
    seed: int = 0
    output_dir: str | None = Field(None, description="output root; default from local_config.yaml, "
                                   "$SHORTCUTLAB_OUTPUT_DIR or 'outputs'")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_workers: int = Field(0, ge=0)

    dataset_name: str = "synth_derm"
    data_paths: list[str] = Field(default_factory=list)
    img_size: int = Field(64, ge=8)
    dataset_options: dict[str, Any] = Field(default_factory=dict,
                                            description="options specific to the data set")
    artifacts: dict[str, dict[str, Probability]] | None = Field(
        None, description="artifact -> {class name: probability}; None keeps the data set's default")
    artifact_type: str | None = Field(None, description="artifact inserted by a *_attacked data set")
    attacked_classes: list[str | int] = Field(default_factory=list)
    p_artifact: Probability = Field(0.0, ge=0.0, le=1.0)
    artifact: str | None = Field(None, description="the artifact (bias concept) under study")

    model_name: str = "tiny_vgg"
    ckpt_path: str | None = Field(None, description="checkpoint of the model under audit")
    layer_name: str | None = Field(None, description="layer to analyse/correct; default: the model's default layer")
    batch_size: int = Field(64, ge=1)
    lrp_backend: Literal["auto", "fast", "zennit", "conservative"] = Field(
        "auto", description="LRP implementation; auto picks the fastest that supports the model")

    wandb_enabled: bool = False
    wandb_offline: bool = True
    wandb_project_name: str | None = None
    wandb_api_key: str | None = None

    _source_file: str | None = PrivateAttr(None)

    @field_validator("config_name", "artifact")
    @classmethod
    def _usable_in_paths(cls, name):
        # both name folders of the outputs: a separator or '..' would put them outside the output root
        if name is not None:
            check_path_name(name)
        return name

    @field_validator("dataset_name")
    @classmethod
    def _known_dataset(cls, name):
        from datasets import list_datasets

        if name not in list_datasets():
            raise ValueError(f"one of {', '.join(list_datasets())}")
        return name

    @field_validator("model_name")
    @classmethod
    def _known_model(cls, name):
        from models import list_models

        if name not in list_models():
            raise ValueError(f"one of {', '.join(list_models())}")
        return name

    @field_validator("artifacts")
    @classmethod
    def _probabilities(cls, spec):
        for artifact, per_class in (spec or {}).items():
            for cls_name, p in per_class.items():
                if not 0.0 <= p <= 1.0:
                    raise ValueError(f"probabilities in [0, 1] (artifact {artifact}, class {cls_name})")
        return spec


class TrainingConfig(BaseConfig):
    """``model_training.start_training``."""

    optimizer: Literal["sgd", "adam", "adamw"] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    num_epochs: int = Field(10, ge=1)
    milestones: list[int] = Field(default_factory=list, description="epochs at which lr *= gamma")
    gamma: float = Field(0.1, gt=0)
    loss: Literal["cross_entropy", "weighted_cross_entropy", "bce"] = "cross_entropy"
    eval_every: int = Field(1, ge=1)
    train_seed: int | None = Field(None, description="seed of the training's own randomness (initial weights, batch "
                                   "order, augmentation); default: seed. seed alone decides the data")
    augment: bool = True
    pretrained_weights: str | None = Field(None, description="local state dict to start from")
    mixed_precision: bool = Field(False, description="bfloat16 autocast of the training forward pass on CUDA; "
                                  "ignored with a warning on a CPU")
    memory_format: Literal["contiguous", "channels_last"] = Field(
        "contiguous", description="memory layout of the model's 4-D weights while training and correcting: "
        "'channels_last' runs convolutions faster on a CPU, with other rounding, so its results differ from the "
        "default layout's (README, 'Memory layout')")

    @field_validator("milestones", mode="before")
    @classmethod
    def _parse_milestones(cls, value):
        # the original framework wrote milestones as a string "30,40"
        if isinstance(value, str):
            return [int(v) for v in value.split(",") if v.strip()]
        return value
