"""Train a model: ``python -m model_training.start_training --config_file F [--resume | --overwrite]``.

``--resume`` continues a stopped run of the same settings; ``--overwrite`` starts again from epoch 1 in a
folder that already holds a run (without either, such a folder is refused).
"""
from model_training.trainer import run_training
from utils.cli import config_parser, main_entry
from utils.config import TrainingConfig, load_config
from utils.metrics import subset_rows
from utils.table import format_table


@main_entry
def main(argv=None):
    parser = config_parser(__doc__)
    parser.add_argument("--resume", action="store_true", help="continue a stopped run from its last checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="start again even if outputs exist")
    args = parser.parse_args(argv)
    config = load_config(args.config_file, TrainingConfig)
    out_dir, metrics = run_training(config, resume=args.resume, overwrite=args.overwrite)
    if "test" not in metrics:  # not rank 0 of a multi-process run: rank 0 reports
        return metrics
    print(format_table(subset_rows({"val": metrics["val"], "test": metrics["test"]}, auroc_columns=False)))
    print(f"outputs: {out_dir}")
    return metrics


if __name__ == "__main__":
    main()
