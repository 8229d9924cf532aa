"""DORA (Data-agnOstic Representation Analysis): neurons with outlying activation patterns.

For each neuron ``i`` of a layer a set of reference signals that maximally activate it (a
registry: synthetic ``sams``, real top-activating samples ``real_act`` or top-relevance samples
``real_rel``). ``A[i, j]`` is the mean pooled activation of neuron ``j`` on neuron ``i``'s
references; the distance ``D_ij = sqrt((1 - cos(A_i, A_j)) / 2)`` between neurons is embedded in
2-D and ranked with LOF. A neuron that responds to a shortcut concept (a band-aid) has
references that activate an unusual set of neurons, so it stands out.

Aggregation: ``max`` pools activations by their spatial maximum, ``mean`` by their mean (the
published code used average pooling for both; here the option means what it says).
"""
from dataclasses import dataclass

import numpy as np
import torch

from models import get_model_spec, layer_for_config
from utils.errors import UserError
from utils.layout import channel_axis
from utils.registry import Registry
from utils.reveal.activations import pooled_activations
from utils.reveal.embedding import embed_2d
from utils.reveal.outliers import cosine_distance_matrix, lof, ranking
from utils.reveal.results import ranked_neurons, write_result
from utils.reveal.sams import optimise_sams
from utils.reveal.subsample import one_thread, top_rows
from utils.reveal.store_views import class_mask, open_store

REFERENCES = Registry("dora_reference")
_CLASS_AGNOSTIC = set()  # reference kinds that do not depend on a class (no --class_id)


def register_reference(name, per_class=True):
    """Register ``build(context) -> ReferenceSet`` under ``name``; ``per_class=False`` for kinds that
    ignore the class (synthetic signals), so that a class given with them is refused."""

    def decorate(func):
        if not per_class:
            _CLASS_AGNOSTIC.add(name)
        return REFERENCES.register(name)(func)

    return decorate


def check_class_id(config, class_id):
    """Refuse a class with a class-agnostic reference kind: it would change nothing but the file name."""
    if class_id is not None and config.dora_reference in _CLASS_AGNOSTIC:
        per_class = ", ".join(k for k in list_reference_kinds() if k not in _CLASS_AGNOSTIC)
        raise UserError(f"--class_id {class_id}: DORA's '{config.dora_reference}' references do not depend on a "
                        f"class (dora_reference in {config._source_file or 'the config'}); leave out --class_id, "
                        f"or set dora_reference to one of {per_class}")


def list_reference_kinds():
    return REFERENCES.names()


@dataclass
class ReferenceSet:
    activation_matrix: np.ndarray  # A (C, C): row i = mean pooled activation on neuron i's references
    references: dict  # neuron -> list of sample ids (real) or signal indices (sams)
    signals: torch.Tensor | None = None  # sams (C * n_refs, *input_shape), neuron-major


@dataclass
class DoraContext:
    """What a reference builder may use; the model and store are loaded only when needed."""

    config: object
    layer: str
    class_id: int | None
    loaders: dict  # "model" -> callable returning (model, input_shape, device); "store" -> callable

    def model(self):
        return self.loaders["model"]()

    def store_features(self):
        return self.loaders["store"]()


def _real_references(context, rank_kind):
    config, agg = context.config, context.config.dora_aggregation
    feats = context.store_features()
    activations = feats[f"cavs_{agg}"]
    ranking_values = feats[f"{rank_kind}_{agg}"]
    n = min(config.dora_n_refs, len(activations))
    top = top_rows(ranking_values, n)  # (n, C): per neuron, best rows first (linear in the samples)
    matrix = activations[top].mean(0)  # (C, C)
    ids = feats["sample_ids"]
    return ReferenceSet(matrix, {c: [str(ids[r]) for r in top[:, c]] for c in range(top.shape[1])})


@register_reference("real_act")
def _real_act(context):
    return _real_references(context, "cavs")


@register_reference("real_rel")
def _real_rel(context):
    return _real_references(context, "rels")


@register_reference("sams", per_class=False)
def _sams(context):
    config = context.config
    model, input_shape, device = context.model()
    spec = get_model_spec(config.model_name)
    axis = channel_axis(spec)
    n_channels = _n_channels(model, context.layer, input_shape, axis, device)
    neurons = np.repeat(np.arange(n_channels), config.dora_n_refs)
    # one seed per signal copy would be equivalent; one generator over the neuron-major batch is simpler
    signals = optimise_sams(model, context.layer, neurons, input_shape, steps=config.dora_sams_steps,
                            lr=config.dora_sams_lr, resolution=config.dora_sams_resolution,
                            transforms=config.dora_sams_transforms, aggregation=config.dora_aggregation,
                            axis=axis, seed=config.seed, batch=config.dora_neurons_batch, device=device)
    pooled = pooled_activations(model, context.layer, signals, config.dora_aggregation, axis, device=device)
    matrix = pooled.view(n_channels, config.dora_n_refs, -1).mean(1).numpy()
    refs = {c: list(range(c * config.dora_n_refs, (c + 1) * config.dora_n_refs)) for c in range(n_channels)}
    return ReferenceSet(matrix, refs, signals)


def _n_channels(model, layer, input_shape, axis, device):
    probe = torch.zeros((1, *input_shape), device=device)
    return pooled_activations(model, layer, probe, "mean", axis, device=device).shape[1]


def reference_set(context) -> ReferenceSet:
    return REFERENCES.get(context.config.dora_reference)(context)


@dataclass
class DoraResult:
    layer: str
    channels: np.ndarray  # neurons analysed (dead neurons dropped)
    distance: np.ndarray
    view_2d: np.ndarray
    scores: np.ndarray
    flags: np.ndarray
    references: dict

    def payload(self, config):
        order = ranking(self.scores)
        return {"split": config.reveal_split, "layer": self.layer, "reference": config.dora_reference,
                "aggregation": config.dora_aggregation, "channels": self.channels.tolist(),
                "embedding_2d": self.view_2d.tolist(),
                "references": {str(c): self.references.get(int(c), []) for c in self.channels},
                "outlier_neurons": ranked_neurons(self.layer, self.channels, self.scores, self.flags, order)}


def analyse(matrix, config):
    """Distances, 2-D view and LOF of neurons from the activation matrix ``A``.

    Neurons whose references activate nothing, or not themselves, are dropped and not reported.
    """
    # a neuron its own references do not activate (dead, or the optimiser never woke it) has no
    # concept to compare; left in, such neurons become the "outliers" by default
    own = np.diag(matrix)
    alive = np.flatnonzero((np.abs(matrix).sum(1) > 1e-12) & (own > 1e-3 * max(float(own.max()), 1e-12)))
    if len(alive) < 3:
        raise UserError(f"only {len(alive)} neurons respond to their references; DORA needs at least 3")
    with one_thread():  # a few hundred neurons: threads would only wait for each other
        distance = cosine_distance_matrix(matrix[np.ix_(alive, alive)], half_angle=True)
        view = embed_2d(distance, config.embedding_2d, precomputed=True, seed=config.seed)
        scores, flags = lof(distance, config.lof_n_neighbors, precomputed=True)
    return alive, distance, view, scores, flags


def run_dora(config, class_id=None, references: ReferenceSet | None = None, loaders=None):
    """DORA on the configured layer; writes ``dora.json`` or ``dora_class<k>.json``.

    ``class_id`` restricts real reference samples to that class (refused with sAMS, which do not
    depend on it).
    """
    check_class_id(config, class_id)
    layer = layer_for_config(config, "neuron_layer_name")
    if references is None:
        context = DoraContext(config, layer, class_id, loaders or default_loaders(config, layer, class_id))
        references = reference_set(context)
    alive, distance, view, scores, flags = analyse(references.activation_matrix, config)
    result = DoraResult(layer, alive, distance, view, scores, flags, references.references)
    return result, write_result(config, "dora", class_id, result.payload(config)), references


def default_loaders(config, layer, class_id):
    def store():
        with open_store(config) as handle:
            mask = class_mask(handle.array("labels"), class_id)
            feats = {kind: handle.features(layer, kind)[mask] for kind in ("cavs_max", "cavs_mean", "rels_max", "rels_mean")}
            feats["sample_ids"] = np.asarray(handle.sample_ids)[mask]
        return feats

    def model():
        return load_model_and_shape(config)

    return {"store": store, "model": model}


def load_model_and_shape(config):
    """The audited model (eval mode, on the config's device) and its input shape."""
    from datasets import get_dataset_from_config
    from models import get_model_for_config
    from utils.device import resolve_device

    data = get_dataset_from_config(config)
    sample = data.train.load_raw(0)
    device = resolve_device(config.device)
    model = get_model_for_config(config, data.n_classes, in_channels=sample.shape[0]).to(device).eval()
    return model, tuple(sample.shape), device


# --- cached reference sets (sAMS are expensive; plots and evaluation reuse them) ---------------
def _cache_key(config, layer, class_id):
    import hashlib
    import json

    from utils.preprocessing import _file_digest

    keys = {k: v for k, v in config.model_dump(mode="json").items() if k.startswith("dora_")}
    keys.update(layer=layer, class_id=class_id, seed=config.seed, ckpt=_file_digest(config.ckpt_path),
                model=config.model_name, img_size=config.img_size, split=config.reveal_split)
    return hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:12]


def reference_cache_path(config, class_id=None):
    """Where :func:`cached_reference_set` keeps the reference set of the configured layer (it may not
    exist yet); readers that must not compute one (the explorer) look here."""
    from utils.paths import step_dir

    layer = layer_for_config(config, "neuron_layer_name")
    name = f"dora_{layer}_{config.dora_reference}_{config.dora_aggregation}_{_cache_key(config, layer, class_id)}.pt"
    return step_dir(config, "preprocessing", create=False) / name


def cached_reference_set(config, class_id=None, force=False):
    """The reference set of the configured layer, from the preprocessing folder if computed before.

    Real references of one class (``class_id``) are cached per class; sAMS refuse a class.
    """
    from utils.io import atomic_path

    check_class_id(config, class_id)
    layer = layer_for_config(config, "neuron_layer_name")
    path = reference_cache_path(config, class_id)
    if path.is_file() and not force:
        saved = torch.load(path, weights_only=True)
        refs = {int(k): v for k, v in saved["references"].items()}
        return ReferenceSet(saved["matrix"].numpy(), refs, saved.get("signals")), path
    context = DoraContext(config, layer, class_id, default_loaders(config, layer, class_id))
    refs = reference_set(context)
    payload = {"matrix": torch.as_tensor(refs.activation_matrix),
               "references": {str(k): v for k, v in refs.references.items()}}
    if refs.signals is not None:
        payload["signals"] = refs.signals
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return refs, path
