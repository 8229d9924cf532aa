"""Artifact localization with CAV-conditioned LRP (``localize_artifacts``, ``eval_localization_quantitatively``)."""
