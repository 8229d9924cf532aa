"""LRP for every model of the registry through one interface: :func:`get_attributor`."""
from utils.lrp.attribution import Attribution, get_attributor, list_backends, register_backend
# the backends register themselves when imported; they import attribution, never the other way round
from utils.lrp import fast, vit, zennit_backend  # noqa: E402,F401  (isort: after attribution)

__all__ = ["Attribution", "get_attributor", "list_backends", "register_backend"]
