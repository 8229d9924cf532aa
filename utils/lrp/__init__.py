"""LRP for every model of the registry through one interface: :func:`get_attributor`; heatmaps of any
supported ``nn.Module`` in one call: :func:`explain` (LRP-Flex, :mod:`utils.lrp.explain`)."""
from utils.lrp.attribution import Attribution, get_attributor, list_backends, register_backend
# the backends register themselves when imported; they import attribution, never the other way round
from utils.lrp import fast, vit, zennit_backend  # noqa: E402,F401  (isort: after attribution)
# the function shadows its module's name in this package: ``from utils.lrp import explain`` is the function
from utils.lrp.explain import Explanation, explain  # noqa: E402

__all__ = ["Attribution", "Explanation", "explain", "get_attributor", "list_backends", "register_backend"]
