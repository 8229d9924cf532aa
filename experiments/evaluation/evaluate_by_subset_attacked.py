"""Accuracy (± SE), macro-F1 and per-class AUROC of the original and the corrected model on the
clean / attacked / ch subsets of val and test, and the paired tests on the same samples (McNemar for
accuracy, DeLong for the AUROC of the class the artifact is evidence for):
``python -m experiments.evaluation.evaluate_by_subset_attacked --config_file F`` (a mitigation config)."""
from experiments.evaluation._common import parse_config
from utils.cli import main_entry
from utils.evaluation.steps import evaluate_by_subset, evaluation_dir, original_and_corrected_rows, paired_rows
from utils.table import format_table


@main_entry
def main(argv=None):
    config = parse_config(__doc__, argv)
    results = evaluate_by_subset(config)
    print(format_table(original_and_corrected_rows(results)))
    if results.get("paired_tests"):
        print("\nCorrected vs original on the same samples (p < 0.05: a significant difference):")
        print(format_table(paired_rows(results)))
    print(f"outputs: {evaluation_dir(config) / 'subsets.json'}")
    return results


if __name__ == "__main__":
    main()
