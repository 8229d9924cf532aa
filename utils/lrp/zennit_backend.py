"""Reference backend: zennit composites with zennit-crp's ``CondAttribution``."""
from crp.attribution import CondAttribution

from utils.lrp.attribution import Attribution, conditions_from, frozen_parameters, register_backend
from utils.lrp.composites import make_composite


class _FullHeatmap(CondAttribution):
    """``CondAttribution`` that keeps the per-channel input relevance (crp sums channels)."""

    def heatmap_modifier(self, data, on_device=None):
        heatmap = data.grad.detach()
        return heatmap.to(on_device) if on_device else heatmap


@register_backend("zennit")
class ZennitBackend:
    sees_forward_hooks = True  # zennit's rules are autograd hooks on the model's own forward pass

    def __init__(self, model, spec, composite=None):
        self.model, self.spec = model, spec
        self.composite_name = composite or spec.composite

    @staticmethod
    def supports(model, spec):
        return "zennit" in spec.explanation.backends

    def attribute(self, x, targets=None, record_layers=(), conditions=None, start_layer=None, init_rel=None):
        conditions = conditions_from(targets, conditions, n=len(x))
        if start_layer is not None:
            conditions = [{k: v for k, v in c.items() if k != "y"} for c in conditions]
        composite = make_composite(self.composite_name, self.spec.canonizer)
        with frozen_parameters(self.model):
            attributor = _FullHeatmap(self.model, no_param_grad=False)
            x = x.detach().clone().requires_grad_(True)
            result = attributor(x, conditions, composite, record_layer=list(record_layers),
                                start_layer=start_layer, init_rel=init_rel)
        return Attribution(result.heatmap, result.prediction.detach(),
                           {k: v.detach() for k, v in result.relevances.items()},
                           {k: v.detach() for k, v in result.activations.items()})
