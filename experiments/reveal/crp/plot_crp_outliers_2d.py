"""Plot CRP relevance patterns of one class: neurons of ``neuron_layer_name`` (default
``layer_name``) embedded by the cosine distance of their ``rels_max`` across the class's samples,
LOF outliers circled, and each outlier
neuron's RelMax reference samples (cropped when ``crp_crop``). Writes ``crp_class<k>.json`` and
``.png`` in the reveal folder. References come from ``run_crp_preprocessing`` when it has run, else
they are computed for the shown neurons only.
"""

from utils.cli import config_parser, main_entry
from utils.config import AuditConfig, load_config
from utils.reveal.steps import plot_crp
from utils.table import format_table


def build_parser():
    parser = config_parser(__doc__, "audit YAML config (utils.config.AuditConfig)")
    parser.add_argument("--class_id", type=int, required=True, help="class whose relevance patterns are analysed")
    return parser


@main_entry
def main(argv=None):
    args = build_parser().parse_args(argv)
    path, json_path, rows = plot_crp(load_config(args.config_file, AuditConfig), args.class_id)
    print(format_table(rows))
    print(f"figure: {path}\njson: {json_path}")


if __name__ == "__main__":
    main()
