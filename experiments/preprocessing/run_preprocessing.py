"""Preprocess a data set for the audit: activations, relevances, heatmaps and outputs in HDF5.

For every sample of the requested split(s): one forward and one LRP backward pass (relevance of
the true label, or the prediction with ``relevance_target: prediction``) recording every
inspectable layer of the model. Results go to
``<output_dir>/preprocessing/<dataset>/<model>/<config>/<split>.h5`` (format: ``utils.feature_store``).
An interrupted run continues where it stopped; a finished store of the same settings is reused.
Several processes: ``torchrun --nproc_per_node N -m experiments.preprocessing.run_preprocessing
--config_file F`` (each rank computes a shard; rank 0 merges them into the same file).
"""

from utils.cli import config_parser, main_entry
from utils.config import AuditConfig, load_config, save_resolved_config
from utils.distributed import get_context
from utils.paths import step_dir
from utils.preprocessing import preprocess
from utils.table import format_table

SPLITS = ("train", "val", "test")


def build_parser():
    parser = config_parser(__doc__, "audit YAML config (utils.config.AuditConfig)")
    parser.add_argument("--split", choices=SPLITS + ("all",), default=None,
                        help="split to preprocess; 'all' = train, val and test; default: the config's 'splits'")
    parser.add_argument("--force_recompute", action="store_true",
                        help="discard existing stores of these splits and compute them again")
    return parser


@main_entry
def main(argv=None):
    args = build_parser().parse_args(argv)
    config = load_config(args.config_file, AuditConfig)
    splits = None if args.split is None else (list(SPLITS) if args.split == "all" else [args.split])
    context = get_context()
    if context.is_main:
        save_resolved_config(config, step_dir(config, "preprocessing"))
    results = preprocess(config, splits=splits, force=args.force_recompute)
    if not context.is_main:  # rank 0 reports
        return
    print(format_table([{"split": r.split, "samples": r.n_samples, "computed now": r.n_computed,
                         "accuracy": "-" if r.accuracy is None else r.accuracy,
                         "seconds": round(r.seconds, 1), "store": str(r.path)} for r in results]))


if __name__ == "__main__":
    main()
