"""The audit config: one YAML drives preprocessing, reveal, bias modelling and localization.

As in the original framework the same file is given to every step of an audit; each step's keys
live in their own mixin module (``reveal.py``, ``bias.py``) so the steps evolve independently.
"""
from utils.config.bias import BiasOptions
from utils.config.reveal import RevealOptions
from utils.config.schemas import BaseConfig


class AuditConfig(BaseConfig, RevealOptions, BiasOptions):
    """Keys of every audit step before mitigation."""
