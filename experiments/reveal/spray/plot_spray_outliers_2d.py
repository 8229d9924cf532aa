"""Plot SpRAy for one class: the 2-D embedding coloured by cluster with outliers circled, and the
outlier samples with their heatmaps. Runs SpRAy first if its JSON is missing.

Writes ``spray_class<k>.png`` beside ``spray_class<k>.json`` in the reveal folder.
"""

from utils.cli import config_parser, main_entry
from utils.config import AuditConfig, load_config
from utils.reveal.steps import plot_spray
from utils.table import format_table


def build_parser():
    parser = config_parser(__doc__, "audit YAML config (utils.config.AuditConfig)")
    parser.add_argument("--class_id", type=int, required=True, help="class whose explanations are shown")
    return parser


@main_entry
def main(argv=None):
    args = build_parser().parse_args(argv)
    path, rows = plot_spray(load_config(args.config_file, AuditConfig), args.class_id)
    print(format_table(rows))
    print(f"figure: {path}")


if __name__ == "__main__":
    main()
