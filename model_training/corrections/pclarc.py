"""P-ClArC and reactive P-ClArC: training-free projection of the artifact direction out of a layer.

A forward hook at ``layer_name`` shifts the activation along the CAV ``v`` so that every sample's
projection ``<pool(a), v>`` equals ``mu``, the mean projection of clean training samples:
``a' = a + ((mu - <pool(a), v>) / <v, v>) * v`` broadcast over space (or tokens: ``pool`` and the
broadcast follow the model's channel axis, :mod:`utils.layout`). Adding a constant per channel
shifts that channel's spatial max and mean by the same constant, so the pooled projection lands on
``mu`` exactly while the orthogonal complement of ``v`` is untouched.

Reactive P-ClArC (rP-ClArC) applies the shift only where a detector CAV with a bias (``svm`` by
default) says the artifact is present: ``<pool(a), v_det> + b > 0``; other samples pass unchanged.

The corrected model is the original weights plus this hook; ``state()`` stores ``v``, ``mu``, the
detector and the channel axis so :func:`attach` rebuilds the same model from the checkpoint.
"""
import numpy as np
import torch

from model_training.corrections.base import Correction, register_correction
from model_training.corrections.cavs import fit_artifact_cav, training_features
from model_training.corrections.layers import get_layer
from utils.layout import along_channels, pool


class ProjectionHook:
    """Forward hook ``a -> a + ((mu - <pool(a), v>) / <v, v>) * v`` (optionally only where detected)."""

    def __init__(self, direction, mu, mode, detector=None, detector_bias=None, axis=1):
        self.direction = torch.as_tensor(direction, dtype=torch.float32)
        self.mu = float(mu)
        self.mode = mode
        self.axis = int(axis)  # where the layer's channels are (utils.layout)
        self.detector = None if detector is None else torch.as_tensor(detector, dtype=torch.float32)
        self.detector_bias = None if detector_bias is None else float(detector_bias)

    def __call__(self, module, inputs, output):
        v = self.direction.to(output)
        pooled = pool(output, self.mode, self.axis)
        shift = (self.mu - pooled @ v) / (v @ v)
        if self.detector is not None:
            detected = (pooled @ self.detector.to(output) + self.detector_bias) > 0
            shift = shift * detected.to(shift)
        return output + shift.view(-1, *([1] * (output.dim() - 1))) * along_channels(v, output, self.axis)

    def state(self):
        state = {"direction": self.direction.clone(), "mu": self.mu, "mode": self.mode, "axis": self.axis}
        if self.detector is not None:
            state.update(detector=self.detector.clone(), detector_bias=self.detector_bias)
        return state


@register_correction("PClarc")
class PClarc(Correction):
    trains = False
    reactive = False

    def prepare(self, ctx):
        cav = fit_artifact_cav(ctx, self.config.cav_type)
        direction = torch.as_tensor(np.asarray(cav.direction), dtype=torch.float32)
        clean = ~np.asarray(ctx.artifact_train, dtype=bool)
        # mu: where clean samples sit along v; artifact samples are moved there
        mu = float((training_features(ctx)[torch.from_numpy(clean)] @ direction).mean())
        detector = bias = None
        if self.reactive:
            detector_cav = fit_artifact_cav(ctx, self.config.reactive_cav_type)
            if detector_cav.bias is None:
                from utils.errors import UserError
                raise UserError(f"'reactive_cav_type': {self.config.reactive_cav_type} has no decision threshold")
            detector = torch.as_tensor(np.asarray(detector_cav.direction), dtype=torch.float32)
            bias = detector_cav.bias
        self.hook = ProjectionHook(direction, mu, self.config.cav_mode, detector, bias, ctx.channel_axis)
        self.attach(ctx.model, self.state(), ctx.layer_name)

    def finish(self, model):
        """The hook *is* the correction: it stays on the model."""

    def state(self):
        return self.hook.state()

    @classmethod
    def attach(cls, model, state, layer_name):
        # a state without an axis was written when every layer was pooled over axis 1: rebuilt as it was
        hook = ProjectionHook(state["direction"], state["mu"], state["mode"], state.get("detector"),
                              state.get("detector_bias"), state.get("axis", 1))
        get_layer(model, layer_name).register_forward_hook(hook)
        model.correction_hook = hook  # visible to callers (e.g. LRP backends that must honour it)
        return model


@register_correction("ReactivePClarc")
class ReactivePClarc(PClarc):
    reactive = True
