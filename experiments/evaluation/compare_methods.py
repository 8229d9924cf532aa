"""Compare every correction of one model: ``python -m experiments.evaluation.compare_methods
--config_dir config_files/bias_mitigation_controlled/synth_derm [--run] [--methods RRR ISNet]``.

With ``--run``, corrections and evaluations that are missing are computed first (finished ones are
reused). Writes ``<name>.csv/.md`` (one row per method, configuration chosen on validation)
and ``<name>_grid.csv/.md`` (every run) next to the evaluation outputs (``--name``, default
``comparison``).
"""
import argparse
from pathlib import Path

from model_training.corrections.run import corrected_checkpoint_path, run_correction
from utils.cli import main_entry
from utils.config import load_config
from utils.config.mitigation import MitigationConfig
from utils.errors import UserError
from utils.evaluation import steps
from utils.evaluation.compare import COLUMNS, comparison, write_comparison
from utils.paths import output_root, step_dir
from utils.table import format_table

EVALUATIONS = {"subsets.json": steps.evaluate_by_subset, "artifact_relevance.json": steps.compute_artifact_relevance,
               "tcav.json": steps.measure_tcav, "heatmaps.png": steps.plot_heatmaps}


def run_missing(config):
    if not corrected_checkpoint_path(config).is_file():
        run_correction(config)
    out = step_dir(config, "evaluation", create=False)
    for filename, evaluate in EVALUATIONS.items():
        if not (out / filename).is_file():
            evaluate(config)


@main_entry
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config_dir", required=True, help="folder of mitigation configs (one model, one data set)")
    parser.add_argument("--run", action="store_true", help="compute missing corrections and evaluations first")
    parser.add_argument("--methods", nargs="*", help="only these methods")
    parser.add_argument("--config_names", nargs="*", help="only these configs (file stems), run in this order")
    parser.add_argument("--max_clean_drop", type=float, default=0.03)
    parser.add_argument("--name", default="comparison",
                        help="file stem of the tables, so that several comparisons of one model can sit side by side")
    args = parser.parse_args(argv)
    if not args.name or Path(args.name).name != args.name or args.name.startswith("."):
        raise UserError(f"--name: a plain file stem such as 'comparison', got '{args.name}'")
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
        for i, config in enumerate(configs):
            print(f"[{i + 1}/{len(configs)}] {config.config_name}", flush=True)
            run_missing(config)
    rows, all_rows = comparison(configs, args.max_clean_drop)
    if not rows:
        raise UserError("no evaluated correction yet; pass --run")
    first = configs[0]
    out = output_root(first) / "evaluation" / first.dataset_name / first.model_name
    path = write_comparison(rows, all_rows, out, args.name)
    print(format_table(all_rows, COLUMNS))
    print("\nChosen on validation, test numbers:")
    print(format_table(rows, COLUMNS))
    print(f"outputs: {path}")
    return rows


if __name__ == "__main__":
    main()
