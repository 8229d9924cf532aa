"""Which audit the explorer shows, and what to run when a step it needs has not run.

The explorer takes the config a user already has: an audit config (the step-by-step commands) or a
pipeline config (``make demo``). A pipeline writes the audit config each of its steps used to
``<pipeline folder>/configs/``; the explorer reads the annotation step's (the audit config plus the
seeds the review started from) or, before that step, the audit section's, so it sees exactly the
files the pipeline wrote, and ``refine`` with that file edits the same annotation state.
"""
from dataclasses import dataclass
from pathlib import Path

import yaml

from utils.config.audit import AuditConfig
from utils.config.loader import load_config
from utils.errors import ConfigError, UserError
from utils.feature_store import FeatureStore, store_path
from utils.paths import step_dir
from utils.reveal.results import result_path

# keys only a pipeline config has: a file with any of them is read as one
PIPELINE_KEYS = ("training", "audit", "annotation", "mitigation", "mitigation_common", "report_examples")

# the entry point that writes each step's files, when the audit runs step by step
STEP_MODULES = {
    "preprocessing": "experiments.preprocessing.run_preprocessing",
    "spray": "experiments.preprocessing.run_spray_preprocessing",
    "dora": "experiments.preprocessing.run_dora_preprocessing",
    "crp": "experiments.preprocessing.run_crp_preprocessing",
    "annotation": "experiments.sample_retrieval.refine",
    "localization": "experiments.localization.localize_artifacts",
}


@dataclass
class Source:
    """An audit to explore: its config and where it came from."""

    config: AuditConfig
    config_file: str  # the file the user gave
    audit_file: str  # the audit config the steps read (the same file, or the pipeline's derived one)
    pipeline_root: Path | None = None  # the pipeline's folder, when a pipeline config was given
    pipeline_name: str | None = None

    @property
    def is_pipeline(self):
        return self.pipeline_root is not None

    def command(self, step, artifact=None):
        """The command that writes ``step``'s files for this audit."""
        if self.is_pipeline:
            return f"python -m experiments.run_pipeline --config_file {self.config_file}"
        extra = f" --artifact {artifact}" if artifact and step in ("annotation", "localization") else ""
        return f"python -m {STEP_MODULES[step]} --config_file {self.config_file}{extra}"


def resolve(config_file) -> Source:
    """The audit of ``config_file`` (an audit or a pipeline config); a one-line error otherwise."""
    path = Path(config_file)
    if not path.is_file():
        raise ConfigError(path.resolve(), "--config_file", "an existing YAML file", "missing file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        raw = None  # load_config below names the line
    if isinstance(raw, dict) and any(key in raw for key in PIPELINE_KEYS):
        return _pipeline_source(path)
    return Source(load_config(path, AuditConfig), str(config_file), str(config_file))


def _pipeline_source(path) -> Source:
    from utils.pipeline.config import PipelineConfig

    pipeline = load_config(path, PipelineConfig)
    root = step_dir(pipeline, "pipeline", create=False)
    configs = root / "configs"
    # the annotation step's config once it ran (it adds the seeds the review started from)
    derived = next((configs / name for name in ("annotation.yaml", "audit.yaml") if (configs / name).is_file()), None)
    if derived is None:
        raise UserError(f"the pipeline of {path} has not run its preprocess and reveal steps (no {configs / 'audit.yaml'});"
                        f" run `python -m experiments.run_pipeline --config_file {path}` first")
    return Source(load_config(derived, AuditConfig), str(path), str(derived), root, pipeline.config_name)


def require_outputs(source: Source) -> None:
    """Refuse, in one line naming the step and its command, an audit without a finished preprocessing
    store of the reveal split or without any SpRAy result."""
    config = source.config
    path = store_path(config, config.reveal_split)
    if not path.is_file():
        raise UserError(f"preprocessing has not run for {source.config_file}: no store at {path}; run "
                        f"`{source.command('preprocessing')}` first")
    FeatureStore(path).close()  # refuses an unfinished store in one line
    folder = result_path(config, "spray", 0).parent
    if not any(folder.glob("spray_class*.json")):
        raise UserError(f"the reveal step (SpRAy) has not run for {source.config_file}: no spray_class<k>.json in "
                        f"{folder}; run `{source.command('spray')}` first")
