"""Does the reveal find the artifact for every model a config trains, or only for the one seed shown?

    python -m experiments.benchmarks.reveal_seeds [--config_file config_files/pipeline/synth_derm.yaml]
        [--train_seeds 0 1 2 3] [--memory_format contiguous|channels_last] [--output_dir DIR]

For each training seed (``training.train_seed``: initial weights, batch order, augmentation; the data
stay those of ``seed``) it runs the pipeline of ``--config_file`` up to the reveal step (cached like any
pipeline run) and prints the headline's two reveal verdicts against ground truth, with their margins:
the best SpRAy cluster's purity and coverage, and the best DORA/CRP neuron's AUROC (thresholds:
``experiments/reveal/README.md``), beside the model's test accuracy on attacked images (how much it
relies on the artifact). A verdict that holds for one seed and not for another is one run's luck, not
a result. ``--memory_format`` trains in that layout (README, "Memory layout"): other rounding, so other
models from the same seeds. Not a test: about 2.5 minutes a seed for the demo on two cores.

Writes ``<output_dir>/reveal_seeds_<config>_<memory_format>.json`` (rows and counts) and the pipeline
outputs of each seed under ``<output_dir>``.
"""
import argparse
from pathlib import Path

import yaml

from experiments.run_pipeline import run
from utils.cli import main_entry
from utils.config import load_config
from utils.device import MEMORY_FORMATS
from utils.io import write_json, write_text
from utils.pipeline.config import PipelineConfig
from utils.provenance import provenance
from utils.reveal.steps import reveal_verdicts
from utils.table import format_table

DEMO_CONFIG = "config_files/pipeline/synth_derm.yaml"


def _best(entries, key):
    values = [e[key] for e in entries if e.get(key) is not None]
    return max(values) if values else None


def seed_row(results, train_seed, memory_format) -> dict:
    """One model's reveal verdicts (as the headline states them) and their margins, from the results of a
    pipeline run up to the reveal step."""
    quality = results["reveal"]["metrics"].get("quality") or {"spray": [], "dora": [], "crp": []}
    spray = max(quality["spray"], key=lambda e: e["best_cluster"]["f1"], default=None)
    neurons = quality["dora"] + quality["crp"]
    found = {k: "yes" if v else "no" for k, v in reveal_verdicts(quality).items()}
    test = results["train"]["metrics"]["test"]
    return {"train_seed": train_seed, "memory_format": memory_format,
            "attacked": test["attacked"]["accuracy"] if "attacked" in test else None,
            "spray": found["spray"],
            "purity": spray["best_cluster"]["purity"] if spray else None,
            "coverage": spray["best_cluster"]["coverage"] if spray else None,
            "neuron": found["neuron"], "neuron_auroc": _best(neurons, "best_auroc")}


def seed_config(raw, stem, train_seed, memory_format, output_dir) -> Path:
    """Write the pipeline config of one seed (its own config name, so its outputs sit beside the others')."""
    name = f"{stem}_train_seed{train_seed}_{memory_format}"
    training = {**(raw.get("training") or {}), "train_seed": train_seed, "memory_format": memory_format}
    corrections = {**(raw.get("mitigation_common") or {}), "memory_format": memory_format}  # they train too
    path = Path(output_dir) / "configs" / f"{name}.yaml"
    write_text(path, yaml.safe_dump({**raw, "training": training, "mitigation_common": corrections,
                                     "config_name": name, "output_dir": str(output_dir)}, sort_keys=False))
    return path


def measure(config_file, train_seeds, memory_format, output_dir, log=print) -> dict:
    load_config(config_file, PipelineConfig)  # a bad file stops here, in one line, before any training
    raw, stem = yaml.safe_load(Path(config_file).read_text()), Path(config_file).stem
    rows = []
    for seed in train_seeds:
        log(f"--- train_seed {seed} ({memory_format}) ---")
        _, results = run(seed_config(raw, stem, seed, memory_format, output_dir), until="reveal", log=log)
        rows.append(seed_row(results, seed, memory_format))
    counts = {verdict: sum(row[verdict] == "yes" for row in rows) for verdict in ("spray", "neuron")}
    summary = {"config_file": str(config_file), "memory_format": memory_format, "models": len(rows),
               "spray_found": counts["spray"], "neuron_found": counts["neuron"], "rows": rows,
               "provenance": provenance()}
    write_json(Path(output_dir) / f"reveal_seeds_{stem}_{memory_format}.json", summary)
    return summary


def seeds_parser(description, output_dir) -> argparse.ArgumentParser:
    """The options of a benchmark over training seeds: the pipeline config, the seeds, the output folder."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config_file", default=DEMO_CONFIG, help="pipeline YAML (default: the demo's)")
    parser.add_argument("--train_seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--output_dir", default=output_dir)
    return parser


@main_entry
def main(argv=None):
    parser = seeds_parser(__doc__.splitlines()[0], "outputs/benchmarks/reveal_seeds")
    parser.add_argument("--memory_format", choices=list(MEMORY_FORMATS), default="contiguous")
    args = parser.parse_args(argv)
    summary = measure(args.config_file, args.train_seeds, args.memory_format, args.output_dir)
    print(format_table(summary["rows"]))
    n = summary["models"]
    print(f"\nSpRAy found the artifact's cluster for {summary['spray_found']} of {n} models; "
          f"an artifact neuron was among the top outliers for {summary['neuron_found']} of {n}")
    return summary


if __name__ == "__main__":
    main()
