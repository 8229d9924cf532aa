"""DORA: reference signals per neuron of ``neuron_layer_name`` (default ``layer_name``) and the
neurons with outlying activation patterns.

``dora_reference: sams`` optimises synthetic activation-maximisation signals (gradient ascent on
each neuron's pooled activation, with jitter/scale/rotation, at ``dora_sams_resolution``);
``real_act`` / ``real_rel`` take the top ``dora_n_refs`` samples of the store by activation /
relevance. The reference set is cached in the preprocessing folder; the ranked outlier neurons go
to ``<output_dir>/reveal/<dataset>/<model>/<config>/dora.json`` (``--class_id``: real references
from that class only, ``dora_class<k>.json``; refused with ``sams``, which do not depend on a class).
"""

from utils.cli import config_parser, main_entry
from utils.config import AuditConfig, load_config
from utils.reveal.steps import dora_step, outlier_neuron_rows
from utils.table import format_table


def build_parser():
    parser = config_parser(__doc__, "audit YAML config (utils.config.AuditConfig)")
    parser.add_argument("--class_id", type=int, default=None,
                        help="dora_reference real_act / real_rel only: take the references from this class "
                        "(refused with sams, which do not depend on a class)")
    parser.add_argument("--force_recompute", action="store_true", help="recompute cached reference signals")
    return parser


@main_entry
def main(argv=None):
    args = build_parser().parse_args(argv)
    config = load_config(args.config_file, AuditConfig)
    result, path, cache = dora_step(config, args.class_id, args.force_recompute)
    print(format_table(outlier_neuron_rows(result, config, config.n_outliers)))
    print(f"neurons analysed: {len(result.channels)}  references: {cache}\njson: {path}")


if __name__ == "__main__":
    main()
