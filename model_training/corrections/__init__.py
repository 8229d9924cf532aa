"""Bias mitigation methods, one module each, registered by name (the config's ``method``).

``get_correction_method(name)`` returns the class; ``load_corrected_model(path)`` loads any
checkpoint written by the mitigation step (or by training) as the model it was.
"""
from model_training.corrections.base import (Correction, CorrectionContext, get_correction_method,
                                             list_corrections, register_correction)
from model_training.corrections import vanilla, rrr, rrclarc, pclarc, isnet  # noqa: F401  (registration)
from model_training.corrections.loading import load_corrected_model

__all__ = ["Correction", "CorrectionContext", "get_correction_method", "list_corrections", "load_corrected_model",
           "register_correction"]
