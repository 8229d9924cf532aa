"""Bias modelling: concept activation vectors, sample retrieval, iterative annotation, localization."""
