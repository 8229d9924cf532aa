"""Share of positive LRP relevance (true label) inside the dilated artifact mask, original vs corrected:
``python -m experiments.evaluation.compute_artifact_relevance --config_file F`` (a mitigation config).

Also the share the same region gets on the same samples without the artifact (``without artifact``,
the floor no correction can go below) and the difference (``excess``, what the artifact draws)."""
from experiments.evaluation._common import parse_config
from utils.cli import main_entry
from utils.evaluation.steps import compute_artifact_relevance, evaluation_dir
from utils.table import format_table


@main_entry
def main(argv=None):
    config = parse_config(__doc__, argv)
    results = compute_artifact_relevance(config)
    print(format_table([{"model": model, "artifact relevance": r["artifact_relevance"],
                         "without artifact": r.get("without_artifact", float("nan")),
                         "excess": r.get("excess", float("nan")), "n": r["n"]} for model, r in results.items()]))
    print(f"outputs: {evaluation_dir(config) / 'artifact_relevance.json'}")
    return results


if __name__ == "__main__":
    main()
