"""Run every correction a comparison needs and the evaluations it reports (used by
``compare_methods --run``, by the pipeline's mitigation and re-evaluation steps and by the
mitigation benchmark).

Every run (each strength of a sweep, each seed; :func:`model_training.corrections.runs.correct`) is
corrected and its accuracy by subset evaluated, with the paired tests against the original;
artifact relevance, TCAV and the heatmap figure, which cost more, are measured for the candidates
the selection rule keeps (``everything`` measures them for every run). Finished runs and
evaluations are reused; the evaluations of a run trained anew are redone.
"""
from model_training.corrections import runs as correction_runs
from utils.evaluation import steps
from utils.evaluation.compare import EVALUATED, EVALUATIONS, Comparison, evaluation_dir, missing_evaluations
from utils.registry import Registry

# each evaluation by the file it writes
STEPS = Registry("evaluation", {"subsets.json": steps.evaluate_by_subset,
                                "artifact_relevance.json": steps.compute_artifact_relevance,
                                "tcav.json": steps.measure_tcav, "heatmaps.png": steps.plot_heatmaps})


def correct_all(configs, log=print):
    """Train whatever the configs still need; stale evaluations of runs trained anew are removed."""
    for i, config in enumerate(configs):
        log(f"[{i + 1}/{len(configs)}] {config.config_name}")
        for run in correction_runs.correct(config, log=log):
            for name in (*EVALUATIONS, EVALUATED):
                (evaluation_dir(run) / name).unlink(missing_ok=True)


def correct_and_evaluate(configs, everything=False, max_clean_drop=None, log=print) -> Comparison:
    correct_all(configs, log)
    every_run = [run for config in configs for run in correction_runs.expand(config)]
    data = steps.SplitCache()  # the runs evaluate one model's corrections: their data is loaded once
    for run in every_run:
        for name in missing_evaluations(run, everything=False):
            STEPS[name](run, data)
    comparison = Comparison(configs, max_clean_drop)
    for run in every_run if everything else comparison.chosen_runs():
        for name in missing_evaluations(run, everything=True):
            STEPS[name](run, data)
    return Comparison(configs, max_clean_drop)
