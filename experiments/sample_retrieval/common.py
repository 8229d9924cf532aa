"""What the retrieval and annotation entry points share: config, artifact, data, output folder."""
from dataclasses import dataclass
from pathlib import Path

from datasets.registry import get_dataset_from_config
from models import layer_for_config
from utils.config.audit import AuditConfig
from utils.config.loader import load_config, save_resolved_config
from utils.errors import UserError
from utils.paths import step_dir


@dataclass
class StepContext:
    config: AuditConfig
    artifact: str
    layer: str
    splits: object
    out_dir: Path


def add_artifact_argument(parser):
    parser.add_argument("--artifact", default=None, help="artifact to model (default: the config's 'artifact')")
    return parser


def prepare(args, step) -> StepContext:
    """Load the config, resolve artifact and layer, build the data, create ``<step dir>/<artifact>``."""
    config = load_config(args.config_file, AuditConfig)
    artifact = args.artifact or config.artifact
    if not artifact:
        raise UserError("no artifact given: pass --artifact or set 'artifact' in the config")
    if not artifact.replace("_", "").replace("-", "").isalnum():
        raise UserError(f"--artifact '{artifact}': use letters, digits, '_' or '-' only")
    layer = layer_for_config(config)
    splits = get_dataset_from_config(config)
    out_dir = step_dir(config, step) / artifact
    out_dir.mkdir(parents=True, exist_ok=True)
    save_resolved_config(config, out_dir)
    return StepContext(config, artifact, layer, splits, out_dir)
