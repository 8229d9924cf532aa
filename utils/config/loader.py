"""Read a YAML file into a typed config; turn every validation problem into one line.

The line has the form ``config error in <file>: '<key>': <what was expected>, got <value>``
so a user can fix the file without reading a traceback.
"""
import difflib
from pathlib import Path

import pydantic
import yaml

from utils.errors import ConfigError
from utils.io import write_yaml


def load_config(path, schema, overrides=None):
    """Load ``path`` (YAML) and validate it against ``schema`` (a pydantic model class).

    ``overrides`` (a dict) is applied on top of the file, e.g. values from command-line flags.
    ``config_name`` defaults to the file's stem so outputs of different configs never collide.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(path.resolve(), "--config_file", "an existing YAML file", "missing file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "file"
        raise ConfigError(path, where, "valid YAML", getattr(err, "problem", "unparsable")) from None
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(path, "<top level>", "a mapping of keys to values", type(raw).__name__)
    raw = {**raw, **(overrides or {})}
    raw.setdefault("config_name", path.stem)
    try:
        config = schema.model_validate(raw)
    except pydantic.ValidationError as err:
        raise config_error_from(path, schema, err) from None
    config._source_file = str(path)
    return config


def save_resolved_config(config, out_dir) -> Path:
    """Write the fully resolved config next to a step's outputs, for reproducibility."""
    target = Path(out_dir) / "config.yaml"
    write_yaml(target, config.model_dump(mode="json"))
    return target


def config_error_from(path, schema, err: pydantic.ValidationError, prefix="") -> ConfigError:
    """One-line :class:`ConfigError` for the first problem of a validation error.

    ``prefix`` names the section of a larger file the schema validated (e.g. ``training``).
    """
    first = err.errors()[0]
    loc = [str(part) for part in first["loc"]]
    key = ".".join(([prefix] if prefix else []) + loc) or "<top level>"
    if first["type"] == "extra_forbidden":
        known = _field_names_at(schema, loc[:-1])
        close = difflib.get_close_matches(loc[-1], known, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(sorted(known))}"
        return ConfigError(path, key, "unknown key", hint=hint)
    if first["type"] == "missing":
        return ConfigError(path, key, "a required key is missing")
    expected = first["msg"].removeprefix("Value error, ").removeprefix("Input should be ")
    # a check across keys (no loc) names its keys itself; its input is the whole config, secrets included
    got = first.get("input") if loc else None
    return ConfigError(path, key, expected, got)


def _field_names_at(schema, loc):
    model = schema
    for part in loc:
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)
