"""Evaluate artifact localization against ground-truth masks: IoU and artifact relevance.

    python -m experiments.localization.eval_localization_quantitatively --config_file F --artifact band_aid

Uses the results of ``localize_artifacts`` for this config (runs it first if they are missing).
Writes ``evaluation.json`` (means, medians, standard errors) and ``evaluation.csv`` (per sample)
beside them.
"""
from experiments.sample_retrieval.common import add_artifact_argument, prepare
from utils.bias.steps import run_localization_evaluation
from utils.cli import config_parser, main_entry
from utils.table import format_table


@main_entry
def main(argv=None):
    parser = add_artifact_argument(config_parser(__doc__.splitlines()[0]))
    parser.add_argument("--relocalize", action="store_true", help="compute heatmaps and masks again first")
    args = parser.parse_args(argv)
    ctx = prepare(args, "localization")
    summary = run_localization_evaluation(ctx, relocalize_first=args.relocalize)
    print(format_table([{k: summary[k] for k in ("artifact", "split", "layer", "n", "iou_mean", "iou_median",
                                                 "artifact_relevance_mean", "artifact_relevance_median")}]))
    print(f"outputs: {ctx.out_dir}")
    return summary


if __name__ == "__main__":
    main()
