"""DORA placeholder registry (filled below)."""
_REFERENCES = {}


def list_reference_kinds():
    return ["real_act", "real_rel", "sams"]
