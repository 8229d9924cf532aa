"""Compare every correction of one model: ``python -m experiments.evaluation.compare_methods
--config_dir config_files/bias_mitigation_controlled/synth_derm [--run] [--methods RRR ISNet]``.

With ``--run``, corrections and evaluations that are missing are computed first (finished ones are
reused): every run of each config (each value of its ``sweep``, each of its ``seeds``), its accuracy
by subset and paired tests; artifact relevance, TCAV and heatmaps for the candidate chosen per method
(``--all_evaluations``: for every run). Writes ``<name>.csv/.md`` (the original model and, per
method, the candidate chosen on validation, test numbers as mean ± sd over seeds) and
``<name>_grid.csv/.md`` (every candidate) next to the evaluation outputs (``--name``, default
``comparison``), and prints which correction is best by the stated rule.
"""
import argparse
from pathlib import Path

from utils.cli import main_entry
from utils.config import load_config
from utils.config.mitigation import MitigationConfig
from utils.errors import UserError
from utils.evaluation.compare import BEST_RULE, COLUMNS, Comparison, best, display_rows, write_comparison
from utils.evaluation.runner import correct_and_evaluate
from utils.paths import output_root
from utils.table import format_table


@main_entry
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config_dir", required=True, help="folder of mitigation configs (one model, one data set)")
    parser.add_argument("--run", action="store_true", help="compute missing corrections and evaluations first")
    parser.add_argument("--all_evaluations", action="store_true",
                        help="with --run: artifact relevance, TCAV and heatmaps for every run, not only the chosen")
    parser.add_argument("--methods", nargs="*", help="only these methods")
    parser.add_argument("--config_names", nargs="*", help="only these configs (file stems), run in this order")
    parser.add_argument("--max_clean_drop", type=float, default=None,
                        help="clean budget of the choice and the status (default: each config's max_clean_drop)")
    parser.add_argument("--name", default="comparison",
                        help="file stem of the tables, so that several comparisons of one model can sit side by side")
    args = parser.parse_args(argv)
    if not args.name or Path(args.name).name != args.name or args.name.startswith("."):
        raise UserError(f"--name: a plain file stem such as 'comparison', got '{args.name}'")
    if args.max_clean_drop is not None and not 0 <= args.max_clean_drop <= 1:
        raise UserError(f"--max_clean_drop: a share of accuracy in [0, 1], got {args.max_clean_drop}")
    files = sorted(Path(args.config_dir).glob("*.yaml"))
    if not files:
        raise UserError(f"--config_dir: no YAML files in {Path(args.config_dir).resolve()}")
    configs = [load_config(f, MitigationConfig) for f in files]
    configs = [c for c in configs if not args.methods or c.method in args.methods]
    if args.config_names:
        by_name = {c.config_name: c for c in configs}
        unknown = [n for n in args.config_names if n not in by_name]
        if unknown:
            raise UserError(f"--config_names: no config {', '.join(unknown)} in {args.config_dir}")
        configs = [by_name[n] for n in args.config_names]
    if len({(c.dataset_name, c.model_name) for c in configs}) > 1:
        raise UserError("--config_dir: configs of one data set and one model only")
    if args.run:
        result = correct_and_evaluate(configs, args.all_evaluations, args.max_clean_drop)
    else:
        result = Comparison(configs, args.max_clean_drop)
    rows, all_rows = result.rows(), result.all_rows()
    if not all_rows:
        raise UserError("no evaluated correction yet; pass --run")
    first = configs[0]
    out = output_root(first) / "evaluation" / first.dataset_name / first.model_name
    path = write_comparison(rows, all_rows, out, args.name)
    print(format_table(display_rows(all_rows), COLUMNS))
    print("\nChosen on validation, test numbers (mean ± sd over seeds; p: median over seeds, "
          "(k/n) seeds with p < 0.05):")
    print(format_table(display_rows(rows), COLUMNS))
    winner = best(rows)
    print(f"\nbest correction ({BEST_RULE}): {winner['method'] + ' (' + winner['config'] + ')' if winner else 'none'}")
    print(f"outputs: {path}")
    return rows


if __name__ == "__main__":
    main()
