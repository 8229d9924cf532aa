"""What the retrieval, annotation and localization entry points share: the ``--artifact`` option and
the step context built from the command line (:func:`utils.bias.steps.prepare_step`)."""
from utils.bias.steps import StepContext, prepare_step
from utils.config.audit import AuditConfig
from utils.config.loader import load_config


def add_artifact_argument(parser):
    parser.add_argument("--artifact", default=None, help="artifact to model (default: the config's 'artifact')")
    return parser


def prepare(args, step) -> StepContext:
    """Load the config of ``--config_file`` and prepare ``step`` for ``--artifact``."""
    return prepare_step(load_config(args.config_file, AuditConfig), args.artifact, step)
