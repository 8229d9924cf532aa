"""Dataset registry: ``@register_dataset`` adds a builder, ``get_dataset`` builds all splits.

Every data set registered as attackable also gets ``<name>_attacked``: the same data with
``artifact_type`` inserted into ``attacked_classes`` at rate ``p_artifact`` (the controlled setting).
"""
import inspect
from dataclasses import dataclass, field
from typing import Callable

from datasets.artifacts.registry import get_artifact
from datasets.base import DataSplits
from datasets.pasted_artifacts import with_pasted_subsets
from datasets.with_artifacts import ArtifactDataset
from utils.errors import UserError
from utils.registry import Registry

ATTACKED_SUFFIX = "_attacked"


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    builder: Callable  # builder(img_size, seed, data_paths?, **options) -> {split: BaseDataset}
    modality: str = "image"
    default_artifacts: dict = field(default_factory=dict)  # artifact -> {class name: p}
    # artifact_type, attacked_classes, p_artifact; optionally dataset_options the setting needs
    attacked_default: dict = field(default_factory=dict)
    attackable: bool = True


DATASETS = Registry("dataset")


def register_dataset(name, modality="image", default_artifacts=None, attacked_default=None, attackable=True):
    def decorate(builder):
        DATASETS.register(name, DatasetEntry(name, builder, modality, default_artifacts or {},
                                             attacked_default or {}, attackable))
        return builder

    return decorate


def list_datasets():
    names = set(DATASETS)
    names |= {n + ATTACKED_SUFFIX for n, e in DATASETS.items() if e.attackable}
    return sorted(names)


def get_dataset_entry(name) -> DatasetEntry:
    if name not in list_datasets():  # <name>_attacked of every attackable data set too
        raise UserError(DATASETS.unknown(name, valid=list_datasets()))
    return DATASETS.get(name.removesuffix(ATTACKED_SUFFIX))


def get_dataset(name, img_size=64, seed=0, data_paths=(), artifacts=None, artifact_type=None,
                attacked_classes=(), p_artifact=None, artifact=None, dataset_options=None,
                mask_provider=None) -> DataSplits:
    """Build the train/val/test splits of data set ``name`` with its artifacts.

    ``artifacts`` (artifact -> {class name or index: probability}) replaces the data set's
    default artifacts; for ``<name>_attacked`` the controlled artifact is given by
    ``artifact_type``/``attacked_classes``/``p_artifact`` (defaults: the published setting).
    ``artifact`` names the artifact of the ``clean``/``attacked`` evaluation subsets: an inserted
    one is drawn in or left out (``with_artifacts``); one the image data set annotates itself is
    cut out of masked training samples and pasted into the samples without it
    (``pasted_artifacts``). ``mask_provider`` (``sample_id -> mask or None``) supplies masks of
    annotated training samples that have no mask file, for pasting only.
    """
    entry = get_dataset_entry(name)
    options = dict(dataset_options or {})
    if name.endswith(ATTACKED_SUFFIX):
        # the published setting may need a data set option (e.g. PTB-XL subclasses for 'LVH')
        options = {**entry.attacked_default.get("dataset_options", {}), **options}
    splits = _call_builder(entry, img_size=img_size, seed=seed, data_paths=list(data_paths), **options)
    class_names = splits["train"].class_names
    if name.endswith(ATTACKED_SUFFIX):
        defaults = entry.attacked_default
        artifact_type = artifact_type or defaults.get("artifact_type")
        if not artifact_type:
            raise UserError(f"dataset '{name}' needs 'artifact_type' (the artifact to insert)")
        classes = list(attacked_classes) or defaults.get("attacked_classes", [])
        rate = p_artifact if p_artifact else defaults.get("p_artifact", 0.0)
        spec = {artifact_type: {c: rate for c in classes}, **(artifacts or {})}
        target = artifact_type
    else:
        spec = entry.default_artifacts if artifacts is None else artifacts
        target = artifact
    for artifact_name in spec:
        get_artifact(artifact_name, entry.modality)  # fails early with the list of valid names
    spec = {a: _class_indices(rates, class_names, a) for a, rates in spec.items()}
    annotated = splits["train"].artifact_names
    if target is not None and target not in spec and target not in annotated:
        raise UserError(f"'artifact': '{target}' is not inserted in dataset '{name}'; "
                        f"inserted: {', '.join(spec) or 'none'}; annotated: {', '.join(annotated) or 'none'}")
    annotated_target = target if target is not None and target not in spec else None
    target = target if target in spec else None  # inserted: drawn in or left out by ArtifactDataset
    wrapped = {s: ArtifactDataset(d, spec, seed=seed, target=target) for s, d in splits.items()}
    if annotated_target is not None and entry.modality == "image":
        # annotated: its subsets are pasted from masked training samples (none masked: no subsets)
        wrapped = with_pasted_subsets(wrapped, annotated_target, seed=seed, mask_provider=mask_provider)
    return DataSplits(wrapped["train"], wrapped["val"], wrapped["test"])


def get_dataset_from_config(config, mask_provider=None) -> DataSplits:
    """The splits ``config`` describes; ``mask_provider``: see :func:`get_dataset`."""
    from utils.paths import data_paths

    return get_dataset(config.dataset_name, img_size=config.img_size, seed=config.seed,
                       data_paths=data_paths(config), artifacts=config.artifacts,
                       artifact_type=config.artifact_type, attacked_classes=config.attacked_classes,
                       p_artifact=config.p_artifact, artifact=config.artifact,
                       dataset_options=config.dataset_options, mask_provider=mask_provider)


def _call_builder(entry, **kwargs):
    params = inspect.signature(entry.builder).parameters
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    for key in kwargs:
        if key not in params and not accepts_any:
            if key == "data_paths":
                continue
            valid = sorted(k for k in params if k not in ("img_size", "seed", "data_paths"))
            raise UserError(f"dataset '{entry.name}' has no option '{key}'; valid dataset_options: "
                            f"{', '.join(valid) or 'none'}")
    return entry.builder(**{k: v for k, v in kwargs.items() if k in params or accepts_any})


def _class_indices(rates, class_names, artifact):
    resolved = {}
    for cls, p in rates.items():
        if isinstance(cls, int) or (isinstance(cls, str) and cls.isdigit()):
            index = int(cls)
            if not 0 <= index < len(class_names):
                raise UserError(f"artifact '{artifact}': class index {index} out of range 0..{len(class_names) - 1}")
        elif cls in class_names:
            index = class_names.index(cls)
        else:
            raise UserError(f"artifact '{artifact}': unknown class '{cls}'; classes: {', '.join(class_names)}")
        resolved[index] = float(p)
    return resolved
