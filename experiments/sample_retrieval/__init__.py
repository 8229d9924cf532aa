"""Biased-sample retrieval and iterative annotation (``run_biased_sample_ranking``, ``refine``)."""
