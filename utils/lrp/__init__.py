"""LRP for every model of the registry through one interface: :func:`get_attributor`."""
from utils.lrp.attribution import Attribution, get_attributor, list_backends, register_backend

__all__ = ["Attribution", "get_attributor", "list_backends", "register_backend"]
