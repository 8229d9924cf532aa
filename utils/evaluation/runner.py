"""Run every correction a comparison needs and the evaluations it reports (used by
``compare_methods --run`` and by the pipeline's mitigation and re-evaluation steps).

Every run (each strength of a sweep, each seed) is corrected and its accuracy by subset evaluated,
with the paired tests against the original; artifact relevance, TCAV and the heatmap figure, which
cost more, are measured for the candidates the selection rule keeps (``everything`` measures them
for every run). Finished runs and evaluations are reused.
"""
from model_training.corrections.run import corrected_checkpoint_path, run_correction
from model_training.corrections.runs import expand
from utils.evaluation import steps
from utils.evaluation.compare import Comparison, missing_evaluations

STEPS = {"subsets.json": steps.evaluate_by_subset, "artifact_relevance.json": steps.compute_artifact_relevance,
         "tcav.json": steps.measure_tcav, "heatmaps.png": steps.plot_heatmaps}


def correct_and_evaluate(configs, everything=False, max_clean_drop=None, log=print) -> Comparison:
    runs = [run for config in configs for run in expand(config)]
    for i, run in enumerate(runs):
        log(f"[{i + 1}/{len(runs)}] {run.config_name}")
        if not corrected_checkpoint_path(run).is_file():
            run_correction(run)
        for name in missing_evaluations(run, everything=False):
            STEPS[name](run)
    comparison = Comparison(configs, max_clean_drop)
    for run in runs if everything else comparison.chosen_runs():
        for name in missing_evaluations(run, everything=True):
            STEPS[name](run)
    return Comparison(configs, max_clean_drop)
