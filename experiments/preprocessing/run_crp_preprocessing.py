"""CRP: RelMax reference samples for every neuron of ``neuron_layer_name`` (default ``layer_name``), per class.

For class ``k`` and neuron ``c``: the ``crp_n_refs`` samples of class ``k`` with the highest stored
``rels_max[:, c]``; with ``crp_crop: true`` each is cropped to where the concept-conditional
heatmap (relevance of class ``k`` flowing through neuron ``c``) exceeds ``crp_crop_fraction`` of its
maximum. Writes ``crp_refs_class<k>.json`` in the preprocessing folder (the CRP plot step uses it)
and the class's relevance-pattern outlier neurons, ``crp_class<k>.json``, in the reveal folder (as
the SpRAy and DORA steps write theirs, so ``evaluate_reveal`` finds all three after these steps).
"""

from utils.cli import config_parser, main_entry
from utils.config import AuditConfig, load_config
from utils.reveal.steps import crp_step
from utils.table import format_table


def build_parser():
    parser = config_parser(__doc__, "audit YAML config (utils.config.AuditConfig)")
    return parser


@main_entry
def main(argv=None):
    args = build_parser().parse_args(argv)
    print(format_table(crp_step(load_config(args.config_file, AuditConfig))))


if __name__ == "__main__":
    main()
