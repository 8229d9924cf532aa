"""A fast LRP engine for conv nets: zennit's rules, evaluated in closed form without autograd
(and differentiable through autograd when a training loss needs the heatmap's gradient).

``nodes``: the tree a model is walked as; ``rules``: one module and its rule; ``graph``: the
declarative description of the supported families; ``backend``: the ``"fast"`` backend of
``utils.lrp.attribution``.
"""
from utils.lrp.fast.backend import FastBackend
from utils.lrp.fast.graph import register_block, register_family

__all__ = ["FastBackend", "register_block", "register_family"]
