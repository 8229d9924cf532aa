"""The pipeline config: shared keys at the top, one section per step.

Each section is validated by that step's own schema after the shared keys are merged in, so a
pipeline config can say anything a single step's config can, and errors name the section
(e.g. ``'training.lr'``).
"""
import hashlib
import json
from typing import Any

import pydantic
from pydantic import Field

from utils.config.audit import AuditConfig
from utils.config.loader import config_error_from
from utils.config.mitigation import MitigationConfig
from utils.config.schemas import BaseConfig, StrictModel, TrainingConfig
from utils.secrets import without_secrets


class AnnotationOptions(StrictModel):
    seed_from: str = Field("spray", description="reveal result whose outlier samples seed the annotation: "
                                                "spray, or gt (ground truth, for a control)")
    n_seeds: int = Field(5, ge=1, description="seed samples taken from the reveal step")
    simulate: bool = Field(True, description="answer the review questions from ground-truth annotations; "
                           "false: use the annotations recorded in audit.annotation_file as they are")
    stop_precision: float = Field(0.25, ge=0, le=1, description="the reviewer stops after a round in which fewer "
                                  "than this share of the shown samples carry the artifact")


class PipelineConfig(BaseConfig):
    training: dict[str, Any] = Field(default_factory=dict, description="keys of start_training")
    audit: dict[str, Any] = Field(default_factory=dict, description="keys of preprocessing, reveal, CAV, localization")
    annotation: AnnotationOptions = Field(default_factory=AnnotationOptions)
    mitigation: list[dict[str, Any]] = Field(default_factory=list,
                                             description="one entry per correction run, e.g. {method: RRR, lamb: 10}")
    mitigation_common: dict[str, Any] = Field(default_factory=dict, description="keys shared by every correction")
    report_examples: int = Field(6, ge=1, description="samples shown per figure of the report")

    _shared_keys = tuple(BaseConfig.model_fields)

    def shared(self) -> dict:
        values = self.model_dump(include=set(BaseConfig.model_fields))
        values.pop("config_name")
        return values

    def step_config(self, schema, section_name, section, config_name, **extra):
        """Validate ``section`` (plus the shared keys and ``extra``) with a step's schema."""
        raw = {**self.shared(), **section, **extra, "config_name": config_name}
        try:
            config = schema.model_validate(raw)
        except pydantic.ValidationError as err:
            raise config_error_from(self._source_file, schema, err, prefix=section_name) from None
        config._source_file = self._source_file
        return config

    def check_steps(self):
        """Validate every step's section now (the checkpoint is not known yet: a placeholder), so a
        section a later step would refuse, e.g. a correction the model family cannot run, stops the
        pipeline before its first step instead of after the training."""
        placeholder = "<the trained model>"
        self.training_config()
        self.audit_config(placeholder)
        self.mitigation_configs(placeholder)

    def training_config(self) -> TrainingConfig:
        return self.step_config(TrainingConfig, "training", self.training, self.config_name)

    def audit_config(self, ckpt_path) -> AuditConfig:
        return self.step_config(AuditConfig, "audit", self.audit, self.config_name, ckpt_path=str(ckpt_path))

    def mitigation_configs(self, ckpt_path, localization_dir=None) -> list[MitigationConfig]:
        """One config per configured correction; the name carries a hash of its settings, so a changed
        lambda gets a fresh run while unchanged corrections are reused. ``localization_dir``: the
        localization step's masks, for runs with ``source_masks: localization``."""
        configs = []
        for i, run in enumerate(self.mitigation):
            settings = {**self.mitigation_common, **run}
            if "loss" in self.training:  # a correction fine-tunes on the task loss the model was trained with
                settings.setdefault("loss", self.training["loss"])
            if settings.get("source_masks") == "localization" and "localization_dir" not in settings:
                settings["localization_dir"] = localization_dir
            # secrets are not settings: a new API key must not start new corrections
            digest = hashlib.sha256(json.dumps(without_secrets({**self.shared(), **settings}), sort_keys=True,
                                               default=str).encode()).hexdigest()[:8]
            name = f"{self.config_name}_{settings.get('method', 'run')}_{digest}"
            configs.append(self.step_config(MitigationConfig, f"mitigation.{i}", settings, name, ckpt_path=str(ckpt_path)))
        return configs
