"""Vanilla: plain fine-tuning with cross-entropy, the baseline every correction is compared to."""
from model_training.corrections.base import Correction, register_correction


@register_correction("Vanilla")
class Vanilla(Correction):
    """Same data, epochs and frozen layers as the corrections, no extra loss."""
