"""A config's ``ckpt_path`` that does not exist yet: say which command writes it.

A newcomer who runs the audit steps before training gets the training command in the error,
not only the missing path. The command is read off the checkpoint's own path: a run of
``start_training`` writes ``<output root>/training/<dataset>/<model>/<config name>/checkpoints/*.pt``,
so ``<config name>`` names the committed config that trains it, when there is one.
"""
from pathlib import Path

import yaml

from utils.errors import ConfigError, UserError

CONFIG_FILES = Path(__file__).resolve().parent.parent / "config_files"


def require_checkpoint(config, key="ckpt_path"):
    """Raise a one-line error naming the training command if the config's checkpoint is missing."""
    path = getattr(config, key)
    if not path or Path(path).is_file():
        return
    missing, hint = f"checkpoint not found: {Path(path).resolve()}", f"train the model first: {training_command(path)}"
    if config._source_file:
        raise ConfigError(config._source_file, key, missing, hint=hint)
    raise UserError(f"'{key}': {missing} ({hint})")


def _training_config(dataset, name):
    """The committed training config named ``name`` that trains ``dataset``: in the data set's own folder,
    or in another one (``isic_attacked`` runs are configured beside ``isic``'s), told by its ``dataset_name``."""
    own = CONFIG_FILES / "training" / dataset / f"{name}.yaml"
    if own.is_file():
        return own
    for path in sorted((CONFIG_FILES / "training").glob(f"*/{name}.yaml")):
        if (yaml.safe_load(path.read_text()) or {}).get("dataset_name") == dataset:
            return path
    return None


def training_command(ckpt_path) -> str:
    """The command that writes ``ckpt_path``, as well as its path tells."""
    parts = Path(ckpt_path).parts
    if len(parts) >= 6 and parts[-2] == "checkpoints" and parts[-6] == "training":
        dataset, name = parts[-5], parts[-3]
        training = _training_config(dataset, name)
        if training is not None:
            return f"python -m model_training.start_training --config_file {_shown(training)}"
        pipeline = CONFIG_FILES / "pipeline" / f"{name}.yaml"
        if pipeline.is_file():  # the pipeline trains into a folder named after its own config
            return f"python -m experiments.run_pipeline --config_file {_shown(pipeline)}"
    return ("python -m model_training.start_training --config_file <training config>, whose run writes "
            "<output_dir>/training/<dataset>/<model>/<config name>/checkpoints/best.pt")


def _shown(path) -> str:
    # relative to the working directory when below it: the form the README's commands use
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return str(path)
