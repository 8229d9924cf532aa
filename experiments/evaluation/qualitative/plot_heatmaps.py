"""Heatmaps of artifact samples for the original and the corrected model, shared colour scale, and
their difference: ``python -m experiments.evaluation.qualitative.plot_heatmaps --config_file F``."""
from experiments.evaluation._common import parse_config
from utils.cli import main_entry
from utils.evaluation.steps import plot_heatmaps


@main_entry
def main(argv=None):
    config = parse_config(__doc__, argv)
    path = plot_heatmaps(config)
    print(f"outputs: {path}")
    return path


if __name__ == "__main__":
    main()
