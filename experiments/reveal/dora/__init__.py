"""DORA plots."""
