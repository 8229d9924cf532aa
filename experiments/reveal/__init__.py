"""Reveal entry points: SpRAy, DORA and CRP outlier plots and their evaluation."""
