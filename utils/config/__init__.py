"""Typed configs: every step's YAML is validated by a pydantic schema with one-line errors."""
from utils.config.loader import load_config, save_resolved_config
from utils.config.audit import AuditConfig
from utils.config.schemas import BaseConfig, TrainingConfig

__all__ = ["load_config", "save_resolved_config", "AuditConfig", "BaseConfig", "TrainingConfig"]
