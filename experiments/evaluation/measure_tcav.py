"""TCAV of the artifact concept for the original and the corrected model (against the original
model's CAV and against a CAV refit on the corrected model):
``python -m experiments.evaluation.measure_tcav --config_file F`` (a mitigation config)."""
from experiments.evaluation._common import parse_config
from utils.cli import main_entry
from utils.evaluation.steps import evaluation_dir, measure_tcav, tcav_rows
from utils.table import format_table


@main_entry
def main(argv=None):
    config = parse_config(__doc__, argv)
    results = measure_tcav(config)
    print(f"layer {results['layer']}; the artifact co-occurs with class '{results['biased_class']}'; "
          f"cosine(original CAV, refit CAV) = {results['cav_cosine_original_vs_refit']:.3f}")
    print(format_table(tcav_rows(results)))
    print(f"outputs: {evaluation_dir(config) / 'tcav.json'}")
    return results


if __name__ == "__main__":
    main()
