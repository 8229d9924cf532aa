"""Where data and outputs live: from the config, ``config_files/local_config.yaml`` or the
environment; never from code. Outputs go to ``<root>/<step>/<dataset>/<model>/<config name>/``."""
import os
from functools import lru_cache
from pathlib import Path

import yaml

from utils.errors import ConfigError

LOCAL_CONFIG = Path(__file__).resolve().parent.parent / "config_files" / "local_config.yaml"
ENV_OUTPUT_DIR = "SHORTCUTLAB_OUTPUT_DIR"
ENV_LOCAL_CONFIG = "SHORTCUTLAB_LOCAL_CONFIG"


def local_config(path=None) -> dict:
    """Machine-specific settings (data roots, output root); empty when the file does not exist. Read
    from ``path``, else ``$SHORTCUTLAB_LOCAL_CONFIG``, else ``config_files/local_config.yaml``, as they
    are now: the parsed file is memoised by its path and modification time, so an edit or another
    environment variable is seen by the next call."""
    path = Path(path or os.environ.get(ENV_LOCAL_CONFIG) or LOCAL_CONFIG).resolve()
    if not path.is_file():
        return {}
    return _read_local_config(path, path.stat().st_mtime_ns)


@lru_cache(maxsize=8)
def _read_local_config(path, modified) -> dict:
    content = yaml.safe_load(path.read_text()) or {}
    if not isinstance(content, dict):
        raise ConfigError(path, "<top level>", "a mapping", type(content).__name__)
    return content


def output_root(config) -> Path:
    return Path(config.output_dir or os.environ.get(ENV_OUTPUT_DIR) or local_config().get("output_dir") or "outputs")


def step_dir(config, step, create=True) -> Path:
    """The output folder of ``step`` for this config."""
    path = output_root(config) / step / config.dataset_name / config.model_name / config.config_name
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def data_paths(config) -> list:
    """The config's ``data_paths``, else ``data_paths.<dataset>`` of the local config, as absolute paths.

    A relative path, in a config or in the local config, is relative to the current working directory
    (the repository root, where every command runs) and is resolved here, once: the data set loaders
    receive absolute roots and resolve their options' relative paths against those.
    """
    if config.data_paths:
        paths = list(config.data_paths)
    else:
        base = config.dataset_name.removesuffix("_attacked")
        paths = (local_config().get("data_paths") or {}).get(base, [])
        paths = [paths] if isinstance(paths, str) else list(paths)
    return [str(Path(p).expanduser().absolute()) for p in paths]
