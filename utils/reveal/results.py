"""The JSON files of the reveal step: ranked outlier samples and/or neurons.

Written to ``<output_root>/reveal/<dataset>/<model>/<config>/<name>.json``; later steps (seed samples
of the annotation, suspicious neurons) read them with :func:`read_result` and never hard-code ids.

Every file has ``method``, ``split``, ``class_id`` (or null) and one or both of

* ``outlier_samples``: ``[{sample_id, sample_index, score, is_outlier}]`` ranked by score;
* ``outlier_neurons``: ``[{layer, channel, score, is_outlier}]`` ranked by score;

plus method-specific fields (clusterings, 2-D embedding, ...).
"""
from pathlib import Path

from utils.errors import UserError
from utils.io import read_json, write_json
from utils.paths import step_dir


def result_name(method, class_id=None):
    return f"{method}.json" if class_id is None else f"{method}_class{class_id}.json"


def result_path(config, method, class_id=None) -> Path:
    return step_dir(config, "reveal", create=False) / result_name(method, class_id)


def write_result(config, method, class_id, payload) -> Path:
    path = result_path(config, method, class_id)
    write_json(path, {"method": method, "class_id": class_id, **payload})
    return path


def read_result(config, method, class_id=None) -> dict:
    path = result_path(config, method, class_id)
    if not path.is_file():
        raise UserError(f"no {method} results at {path}; run the {method} reveal step for this config first")
    return read_json(path)


def ranked_samples(sample_ids, sample_index, scores, flags, order):
    return [{"sample_id": str(sample_ids[i]), "sample_index": int(sample_index[i]), "score": float(scores[i]),
             "is_outlier": bool(flags[i])} for i in order]


def ranked_neurons(layer, channels, scores, flags, order):
    return [{"layer": layer, "channel": int(channels[i]), "score": float(scores[i]), "is_outlier": bool(flags[i])}
            for i in order]
