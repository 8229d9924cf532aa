"""Correct a model for an artifact: ``python -m experiments.mitigation_experiments.start_model_correction
--config_file F [--overwrite] [--resume]``.

Methods (config ``method``): Vanilla, RRR, RRClarc, PClarc, ReactivePClarc, ISNet. Writes
``<output_dir>/mitigation/<dataset>/<model>/<config name>/checkpoints/corrected.pt`` (the epoch the
selection rule keeps on the validation split; load it with
``model_training.corrections.load_corrected_model``), ``metrics.json`` (with the status: ok,
degraded or collapsed) and the resolved config. A config with ``sweep`` or ``seeds`` describes several
runs: correct and compare them with ``experiments.evaluation.compare_methods --run``. Test numbers
come from the evaluation steps (``evaluate_by_subset_attacked``).
Several processes: ``torchrun --nproc_per_node N -m experiments.mitigation_experiments.start_model_correction
--config_file F`` (see the README, "Scale out").
"""
from model_training.corrections.run import run_correction
from utils.cli import config_parser, main_entry
from utils.config import load_config
from utils.config.mitigation import MitigationConfig
from utils.errors import UserError
from utils.table import format_table


@main_entry
def main(argv=None):
    parser = config_parser(__doc__)
    parser.add_argument("--overwrite", action="store_true", help="correct again even if outputs exist")
    parser.add_argument("--resume", action="store_true", help="continue a stopped fine-tuning from last.pt")
    args = parser.parse_args(argv)
    config = load_config(args.config_file, MitigationConfig)
    if config.sweep or config.seeds:
        raise UserError(f"{args.config_file}: 'sweep' and 'seeds' describe several runs; run them with "
                        "python -m experiments.evaluation.compare_methods --config_dir <its folder> --run")
    out_dir, metrics = run_correction(config, overwrite=args.overwrite or args.resume, resume=args.resume)
    if "val" not in metrics:  # not rank 0 of a multi-process run: rank 0 reports
        return metrics
    selection = metrics["selection"]
    rows = [{"subset": subset, "n": m["n"], "accuracy": m["accuracy"], "± se": m["accuracy_se"],
             "original": selection["original_val"].get(subset, float("nan")), "macro_f1": m["macro_f1"]}
            for subset, m in metrics["val"].items()]
    print(f"\n{config.method} on {config.dataset_name}/{config.model_name} (layer {config.layer_name or 'default'}, "
          f"lambda {config.lamb}): validation accuracy of the corrected model (epoch {selection['epoch'] or '-'}), "
          f"{metrics['correction_seconds']:.0f} s; status {selection['status']}")
    print(format_table(rows))
    print(f"outputs: {out_dir}")
    return metrics


if __name__ == "__main__":
    main()
