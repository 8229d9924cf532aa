"""Shared by the re-evaluation entry points: parse ``--config_file`` into a mitigation config."""
from utils.cli import config_parser
from utils.config import load_config
from utils.config.mitigation import MitigationConfig


def parse_config(doc, argv=None):
    args = config_parser(doc).parse_args(argv)
    return load_config(args.config_file, MitigationConfig)
