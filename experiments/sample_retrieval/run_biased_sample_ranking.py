"""Rank samples by a CAV fit on the train split; report AUROC / AP / Kendall tau on held-out splits.

    python -m experiments.sample_retrieval.run_biased_sample_ranking --config_file F --artifact band_aid

Outputs in ``<output>/sample_retrieval/<dataset>/<model>/<config>/<artifact>/``: ``metrics.json``,
``scores_<features>.csv``, ``cav_<features>.json``, ``roc_pr.png``, ``top_ranked.png``, ``config.yaml``.
"""
from experiments.sample_retrieval.common import add_artifact_argument, prepare
from utils.bias.retrieval import results_rows
from utils.bias.steps import run_sample_ranking
from utils.cli import config_parser, main_entry
from utils.table import format_table


@main_entry
def main(argv=None):
    parser = add_artifact_argument(config_parser(__doc__.splitlines()[0]))
    ctx = prepare(parser.parse_args(argv), "sample_retrieval")
    results = run_sample_ranking(ctx)
    print(f"CAV '{ctx.config.cav_type}' for '{ctx.artifact}' at {ctx.layer}, fit on train; held-out metrics:")
    print(format_table(results_rows(results)))
    print(f"outputs: {ctx.out_dir}")
    return results


if __name__ == "__main__":
    main()
