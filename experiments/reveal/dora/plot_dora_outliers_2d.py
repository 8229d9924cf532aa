"""Plot DORA: the 2-D embedding of neurons with outlier neurons circled, and each outlier neuron's
reference signals (sAMS or real samples). Writes ``dora[_class<k>].json`` and ``.png`` in the
reveal folder; reference signals come from the cache of ``run_dora_preprocessing`` (computed if
missing).
"""

from utils.cli import config_parser, main_entry
from utils.config import AuditConfig, load_config
from utils.reveal.steps import outlier_neuron_rows, plot_dora
from utils.table import format_table


def build_parser():
    parser = config_parser(__doc__, "audit YAML config (utils.config.AuditConfig)")
    parser.add_argument("--class_id", type=int, default=None,
                        help="dora_reference real_act / real_rel only: take the references from this class "
                        "(refused with sams, which do not depend on a class)")
    return parser


@main_entry
def main(argv=None):
    args = build_parser().parse_args(argv)
    config = load_config(args.config_file, AuditConfig)
    path, json_path, result = plot_dora(config, args.class_id)
    print(format_table(outlier_neuron_rows(result, config, config.n_outliers)))
    print(f"figure: {path}\njson: {json_path}")


if __name__ == "__main__":
    main()
