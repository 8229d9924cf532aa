"""The whole headline of a pipeline config over training seeds: what a user gets, not what one run gave.

    python -m experiments.benchmarks.headline_seeds [--config_file config_files/pipeline/synth_derm.yaml]
        [--train_seeds 0 1 2 3] [--memory_formats contiguous channels_last] [--output_dir DIR]

For each memory layout and training seed (``training.train_seed``; the data stay those of ``seed``) it runs
the whole pipeline of ``--config_file`` (cached like any pipeline run), with training and every correction
in that layout, and collects the headline's numbers: the original model's accuracies, the two reveal
verdicts, annotation, retrieval, localization, and for each correction its status, gap closed and clean
change, and the correction ranked best. It prints one row per number: each seed's value, mean ± sd (or
"k of n" for a verdict), and, with two layouts, the paired difference per seed (second minus first) with
a paired t-test. The pipeline time of each run is the sum of its steps' recorded times, so it stays right
when a later call finds the run cached. Not a test: about 5-6 minutes per run for the demo on two cores.

Writes ``<output_dir>/headline_seeds_<config>.json`` (every run's values and the table) and the pipeline
outputs of each run under ``<output_dir>``.
"""
from pathlib import Path

import numpy as np
import yaml
from scipy import stats

from experiments.benchmarks.reveal_seeds import seed_config, seed_row, seeds_parser
from experiments.run_pipeline import run
from utils.cli import main_entry
from utils.config import load_config
from utils.device import MEMORY_FORMATS
from utils.evaluation.stats import format_mean_sd
from utils.io import write_json
from utils.pipeline.config import PipelineConfig
from utils.pipeline.runner import recorded_seconds
from utils.provenance import provenance, stamp
from utils.table import format_table, markdown_table

# one benchmark process's times share its warm caches and whatever else ran: the README states the times of
# fresh-clone demos instead
NOT_IN_README = {"pipeline seconds"}
VERDICTS = ("reveal: SpRAy cluster found", "reveal: artifact neuron found")


def headline_values(results, root, train_seed, memory_format) -> dict:
    """One run's headline as numbers (verdicts as booleans, the best correction as its method's name)."""
    reveal = seed_row(results, train_seed, memory_format)
    test = results["train"]["metrics"]["test"]
    annotate = results["annotate"]["metrics"]
    values = {"pipeline seconds": round(sum(recorded_seconds(root).values()), 1),
              **{f"original: {split} accuracy": m["accuracy"] for split, m in test.items()},
              VERDICTS[0]: reveal["spray"] == "yes", VERDICTS[1]: reveal["neuron"] == "yes",
              "reveal: best cluster coverage": reveal["coverage"], "reveal: best neuron AUROC": reveal["neuron_auroc"],
              "annotation: share found": annotate["found"] / annotate["n_artifact"] if annotate["n_artifact"] else None}
    for row in results["retrieve"]["tables"]["Retrieval on held-out samples"]:
        if row["split"] == "test":
            values[f"retrieval AUROC ({row['features']})"] = row["AUROC"]
    localize = results["localize"]["metrics"]
    if localize:
        values["localization IoU"] = localize["iou_mean"]
    for row in results["evaluate"]["metrics"]["comparison"]:
        if row["method"] != "original":
            values[f"{row['method']}: ok"] = row["status"] == "ok"
            if row["strength"] != "-":  # a swept method: which strength the selection rule kept
                values[f"{row['method']}: strength kept"] = row["strength"]
            values[f"{row['method']}: gap closed"] = row["gap_closed"]
            values[f"{row['method']}: clean change"] = row["clean_change"]
    best = results["evaluate"]["metrics"].get("best")
    values["best correction"] = best["method"] if best else "none"
    return values


def _cell(value):
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _summary(values):
    if all(isinstance(v, bool) for v in values):
        return f"{sum(values)} of {len(values)}"
    if all(isinstance(v, (int, float)) for v in values):
        return format_mean_sd(values)
    return ", ".join(f"{name} {values.count(name)}" for name in sorted(set(values), key=values.index))


def _paired(first, second):
    """Mean of the per-seed differences (second minus first) and the paired t-test's p, for numbers only."""
    pairs = [(a, b) for a, b in zip(first, second) if isinstance(a, (int, float)) and isinstance(b, (int, float))
             and a is not None and b is not None]
    if len(pairs) < 2 or any(isinstance(a, bool) for a, _ in pairs):
        return "", ""
    a, b = np.array(pairs, dtype=float).T
    diff = b - a
    p = float("nan") if np.allclose(diff, diff[0]) else stats.ttest_rel(b, a).pvalue  # no spread: no test
    return f"{diff.mean():+.3f}", "" if np.isnan(p) else f"{p:.2g}"


def table(runs, train_seeds, memory_formats) -> list:
    """One row per headline number: each seed's value and the summary per layout, then the paired difference."""
    names = list(dict.fromkeys(name for run_values in runs.values() for values in run_values for name in values))
    rows = []
    for name in names:
        per_layout = {layout: [values.get(name) for values in runs[layout]] for layout in memory_formats}
        for layout, values in per_layout.items():
            row = {"number": name, "layout": layout,
                   **{f"seed {s}": "—" if v is None else _cell(v) for s, v in zip(train_seeds, values)},
                   "over seeds": _summary([v for v in values if v is not None])}
            rows.append(row)
        if len(memory_formats) == 2:
            rows[-1]["paired diff"], rows[-1]["p"] = _paired(*per_layout.values())
    return rows


def markdown(summary) -> str:
    """The table for a README: per number, the summary of each layout over seeds and the paired difference."""
    layouts, seeds = summary["memory_formats"], ", ".join(map(str, summary["train_seeds"]))
    merged = {}
    for row in summary["table"]:
        if row["number"] in NOT_IN_README:
            continue
        entry = merged.setdefault(row["number"], {"number": row["number"]})
        entry[row["layout"]] = row["over seeds"]
        if "paired diff" in row:
            entry[f"paired diff ({layouts[-1]} - {layouts[0]})"], entry["p (paired t)"] = row["paired diff"], row["p"]
    rows = list(merged.values())
    columns = list(dict.fromkeys(column for row in rows for column in row))
    return (f"{markdown_table(rows, columns)}\n\n"
            f"{stamp(summary.get('provenance', {}), f'training seeds {seeds}, one run each')}")


def measure(config_file, train_seeds, memory_formats, output_dir, log=print) -> dict:
    load_config(config_file, PipelineConfig)  # a bad file stops here, in one line, before any training
    raw, stem = yaml.safe_load(Path(config_file).read_text()), Path(config_file).stem
    runs = {layout: [] for layout in memory_formats}
    for seed in train_seeds:  # seed by seed: a stopped benchmark has paired runs so far
        for layout in memory_formats:
            log(f"--- train_seed {seed} ({layout}) ---")
            root, results = run(seed_config(raw, stem, seed, layout, output_dir), log=log)
            runs[layout].append(headline_values(results, root, seed, layout))
    summary = {"config_file": str(config_file), "train_seeds": list(train_seeds),
               "memory_formats": list(memory_formats), "runs": runs,
               "table": table(runs, train_seeds, memory_formats), "provenance": provenance()}
    write_json(Path(output_dir) / f"headline_seeds_{stem}.json", summary)
    return summary


@main_entry
def main(argv=None):
    parser = seeds_parser(__doc__.splitlines()[0], "outputs/benchmarks/headline_seeds")
    parser.add_argument("--memory_formats", choices=list(MEMORY_FORMATS), nargs="+", default=["contiguous"])
    args = parser.parse_args(argv)
    summary = measure(args.config_file, args.train_seeds, list(dict.fromkeys(args.memory_formats)), args.output_dir)
    print(format_table(summary["table"]))
    return summary


if __name__ == "__main__":
    main()
