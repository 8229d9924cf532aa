"""SpRAy: spectral clustering and outliers of each class's explanations.

Reads the preprocessing store of ``reveal_split``; ``spray_space: input`` uses the stored input
heatmaps, ``latent`` the stored ``spray_feature`` (e.g. ``rel``) of ``layer_name``. Per class it
writes ``<output_dir>/reveal/<dataset>/<model>/<config>/spray_class<k>.json`` with the spectral
embedding's clusterings (k-means, DBSCAN, HDBSCAN, agglomerative), a t-SNE view and the samples
ranked by Local Outlier Factor.
"""

from utils.cli import config_parser, main_entry
from utils.config import AuditConfig, load_config
from utils.reveal.steps import spray_step
from utils.table import format_table


def build_parser():
    parser = config_parser(__doc__, "audit YAML config (utils.config.AuditConfig)")
    parser.add_argument("--class_indices", default=None, help="comma-separated classes, e.g. '0,1'; default: all")
    return parser


@main_entry
def main(argv=None):
    args = build_parser().parse_args(argv)
    print(format_table(spray_step(load_config(args.config_file, AuditConfig), args.class_indices)))


if __name__ == "__main__":
    main()
