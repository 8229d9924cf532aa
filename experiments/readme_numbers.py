"""Regenerate the numbers and figures the READMEs show, from outputs: ``python -m experiments.readme_numbers``.

    python -m experiments.readme_numbers [--config_file config_files/pipeline/synth_derm.yaml]
                                         [--benchmark_dir outputs/benchmarks/mitigation] [--check]

It runs the demo (the pipeline of ``--config_file``; steps already computed are cached and do no work),
then rewrites every generated block (``<!-- numbers:NAME -->`` ... ``<!-- /numbers:NAME -->``, see
:mod:`utils.readme_blocks`) of the files of :func:`required_blocks` and copies the figures of :data:`FIGURES`
into ``static/``:

* ``demo_headline``: the headline table the pipeline computed, its verdicts (found / not found, status,
  best correction) included, stamped with date, commit, CPU and "seed 0, one run";
* ``demo_timing``: the time of each step, as recorded when the outputs were computed;
* ``reveal_demo`` and ``localization_demo`` (in the step READMEs): the table the demo's reveal step
  (does it find the band-aid, checked against ground truth) and localization step (masks against
  ground-truth masks) computed, stamped like the headline;
* ``training_<name>``: test accuracy per subset of the embedded data sets' training configs of
  :data:`TRAININGS` (trained here unless already trained), with the training time and the record of the
  run that trained it;
* ``benchmark_<setting>``: a setting of ``python -m experiments.benchmarks.mitigation`` (mean ± sd over
  its seeds), stamped with the record the benchmark wrote; a setting not measured in ``--benchmark_dir``
  keeps its block, and the table printed at the end says so;
* ``scale_estimate``: the table of ``python -m experiments.benchmarks.scale`` (``--scale_json``: its
  output), seconds and store size per image and what they mean for ISIC 2019; kept when not given;
* ``demo_seeds``: the table of ``python -m experiments.benchmarks.headline_seeds`` (``--headline_seeds_json``:
  its output), the demo's headline over training seeds and memory layouts; kept when not given;
* ``scaling_audit``: the tables of ``python -m experiments.benchmarks.scaling`` (``--scaling_json``: its
  ``scaling.json``), time, memory and growth exponent of every audit step against N; kept when not given.

``--check`` writes nothing and exits with 1 when a file would change.
"""
import argparse
import shutil
import sys
from pathlib import Path

from experiments.benchmarks import headline_seeds, mitigation, scale, scaling
from model_training.trainer import run_training
from utils.cli import main_entry
from utils.config import TrainingConfig, load_config
from utils.errors import UserError
from utils.evaluation.compare import display_rows
from utils.io import read_json, write_text
from utils.pipeline import steps as _steps  # noqa: F401  (registers the steps)
from utils.pipeline.runner import recorded_seconds
from utils.provenance import stamp
from utils.readme_blocks import block_names, replace_blocks
from utils.table import format_table, markdown_table

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = "config_files/pipeline/synth_derm.yaml"
# static/<file>: (pipeline step, file name of the step's figure)
FIGURES = {"static/annotation_curve.png": ("annotate", "annotation_curve.png"),
           "static/localization_masks.png": ("localize", "masks_overview.png")}
# block: training config (its run's test accuracy per subset is what the block states)
TRAININGS = {"training_synth_shapes": "config_files/training/synth_shapes/tiny_vgg_adam_lr0.003.yaml",
             "training_synth_ecg": "config_files/training/synth_ecg/tiny_cnn1d_adam_lr0.003.yaml"}
# block: (pipeline step, start of the title of the step's table)
STEP_TABLES = {"reveal_demo": ("reveal", "Does the reveal step find the artifact"),
               "localization_demo": ("localize", "Localization against ground-truth masks")}
BENCHMARK_COLUMNS = ["method", "strength", "status", "clean", "attacked", "gap_closed", "gap_closed_attainable",
                     "clean_change", "p_attacked", "artifact_relevance"]


def required_blocks() -> dict:
    """Which generated blocks each file must hold (every benchmark setting in the mitigation README)."""
    settings = tuple(f"benchmark_{name}" for name in mitigation.SETTINGS)
    return {"README.md": ("demo_headline", "demo_seeds", "demo_timing", *TRAININGS, "benchmark_synth_derm_band_aid",
                          "scale_estimate", "scaling_audit"),
            "experiments/reveal/README.md": ("reveal_demo",),
            "experiments/localization/README.md": ("localization_demo",),
            "experiments/mitigation_experiments/README.md": settings}


def demo_blocks(root) -> dict:
    """The demo's blocks from the pipeline folder ``root`` (its metrics.json and step records)."""
    metrics = read_json(root / "metrics.json")
    headline = markdown_table(metrics["headline"], ["step", "result"])
    records = {path.stem: read_json(path) for path in sorted((root / "steps").glob("*.json"))}
    seconds = recorded_seconds(root)
    timing = ", ".join(f"{name} {value:.0f} s" for name, value in seconds.items())
    total = sum(seconds.values())
    # the record of the step that computed the comparison; a step cached from another commit is named
    record = records.get("evaluate", {}).get("provenance", {})
    others = sorted({r["provenance"].get("commit") or "?" for r in records.values() if "provenance" in r}
                    - {record.get("commit")})
    runs = "seed 0, one run" + (f"; some steps cached from commit {', '.join(others)}" if others else "")
    blocks = {"demo_headline": headline + "\n\n" + stamp(record, runs),
              "demo_timing": f"pipeline {total:.0f} s ({timing}), as recorded when these outputs were computed"}
    for name, (step, title) in STEP_TABLES.items():
        blocks[name] = step_table(root, records, step, title)
    return blocks


def step_table(root, records, step, title) -> str:
    """The table of ``step`` whose title starts with ``title``, as the pipeline recorded it, stamped."""
    tables = records.get(step, {}).get("result", {}).get("tables", {})
    found = [(key, rows) for key, rows in tables.items() if key.startswith(title)]
    if not found:
        raise UserError(f"{root / 'steps' / (step + '.json')}: no table titled '{title}...'")
    key, rows = found[0]
    cells = [{column: _number(value) for column, value in row.items()} for row in rows]
    record = records[step].get("provenance", {})
    return f"{key}:\n\n{markdown_table(cells, list(rows[0]))}\n\n{stamp(record, 'seed 0, one run')}"


def training_block(out_dir) -> str:
    """What a training run's ``metrics.json`` says: test accuracy per subset, epochs and time, its record."""
    metrics = read_json(out_dir / "metrics.json")
    accuracy = ", ".join(f"{mode} {m['accuracy']:.3f}" for mode, m in metrics["test"].items())
    seconds = sum(row.get("seconds", 0.0) for row in metrics["history"])
    return (f"Test accuracy: {accuracy} (best of {len(metrics['history'])} epochs: epoch {metrics['best_epoch']}; "
            f"{seconds / 60:.1f} min of training).\n{stamp(metrics.get('provenance', {}), 'seed 0, one run')}")


def training_blocks(base, trainings) -> dict:
    """Train each config of ``trainings`` (resumed: a finished run does no work) and state its numbers."""
    blocks = {}
    for name, relative in trainings.items():
        out_dir, _ = run_training(load_config(base / relative, TrainingConfig), resume=True)
        blocks[name] = training_block(out_dir)
    return blocks


def _number(value):
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def benchmark_block(result) -> str:
    rows = result["rows"]
    original = next(row for row in rows if row["method"] == "original")
    winner = result.get("best")
    seeds = ", ".join(map(str, result["seeds"]))
    reference = next((row for row in rows if row["method"] == mitigation.REFERENCE), None)
    about_reference = "" if reference is None else (
        f" The reference ({reference['strength']}) gets clean {reference['clean']:.3f}, attacked "
        f"{reference['attacked']:.3f}: it closes {reference['gap_closed']:.2f} of the gap" + (
            ", the part that is a learned shortcut; gap_closed_attainable is gap_closed as a share of it."
            if reference["gap_closed"] >= mitigation.MIN_ATTAINABLE else
            ": the artifact costs a model that never learned it as much as the original, so this gap is not a "
            "learned shortcut, and gap_closed_attainable is not defined."))
    lines = [f"Original model: clean {original['clean']:.3f}, attacked {original['attacked']:.3f}. "
             f"Mean ± sd over seeds {seeds}." + about_reference, "",
             markdown_table(display_rows(rows, BENCHMARK_COLUMNS), BENCHMARK_COLUMNS), "",
             "Best correction: " + (f"{winner['method']} ({winner['strength']})." if winner else
                                    "none within the clean budget."),
             stamp(result.get("provenance", {}), f"seeds {seeds}")]
    return "\n".join(lines)


def _check_benchmark_dir(benchmark_dir):
    if benchmark_dir is not None and not Path(benchmark_dir).is_dir():
        raise UserError(f"--benchmark_dir: {benchmark_dir} is not a folder; run python -m "
                        "experiments.benchmarks.mitigation --output_dir DIR first")


def benchmark_blocks(benchmark_dir) -> dict:
    if benchmark_dir is None:
        return {}
    _check_benchmark_dir(benchmark_dir)
    return {f"benchmark_{name}": benchmark_block(result) for name, result in mitigation.read_settings(benchmark_dir).items()}


def _json_block(path, option, benchmark, block, render) -> dict:
    """``{block: render(the JSON at path)}``; nothing when ``path`` is not given (the block is kept)."""
    if path is None:
        return {}
    if not Path(path).is_file():
        raise UserError(f"{option}: {path} is not a file; run python -m experiments.benchmarks.{benchmark} first")
    return {block: render(read_json(path))}


def scale_blocks(scale_json) -> dict:
    return _json_block(scale_json, "--scale_json", "scale", "scale_estimate", scale.markdown)


def scaling_blocks(scaling_json) -> dict:
    return _json_block(scaling_json, "--scaling_json", "scaling", "scaling_audit", scaling.markdown)


def demo_seeds_blocks(headline_seeds_json) -> dict:
    return _json_block(headline_seeds_json, "--headline_seeds_json", "headline_seeds", "demo_seeds",
                       headline_seeds.markdown)


def figure_sources(root) -> dict:
    """``static/<file>: the figure of the pipeline run to copy there``."""
    sources = {}
    for target, (step, name) in FIGURES.items():
        figures = read_json(root / "steps" / f"{step}.json")["result"].get("figures", {})
        found = [Path(p) for p in figures.values() if Path(p).name == name]
        if not found:
            raise UserError(f"{root / 'steps' / (step + '.json')}: no figure named {name} for {target}")
        sources[target] = found[0]
    return sources


def regenerate(root, benchmark_dir=None, base=ROOT, check=False, trainings=None, scale_json=None,
               scaling_json=None, headline_seeds_json=None) -> list:
    """Rewrite the blocks and figures under ``base`` from the pipeline folder ``root``; returns one row per
    block and figure saying what happened (``check``: what would). ``trainings``: the ``training_<name>``
    blocks to compute (block -> config path under ``base``); those not given are kept."""
    blocks = {**demo_blocks(root), **benchmark_blocks(benchmark_dir), **training_blocks(base, trainings or {}),
              **scale_blocks(scale_json), **scaling_blocks(scaling_json), **demo_seeds_blocks(headline_seeds_json)}
    rows = []
    for relative, required in required_blocks().items():
        path = base / relative
        text = path.read_text()
        present = set(block_names(text))
        lacking = [name for name in required if name not in present]
        if lacking:
            raise UserError(f"{path}: no block <!-- numbers:{lacking[0]} --> ... <!-- /numbers:{lacking[0]} -->")
        ours = {name: blocks[name] for name in required if name in blocks}
        new = replace_blocks(text, ours, source=str(path))
        for name in required:
            rows.append({"file": relative, "block": name, "state": "not measured: kept" if name not in ours else
                         "unchanged" if _body(text, name) == _body(new, name) else "rewritten"})
        if new != text and not check:
            write_text(path, new)
    for target, source in figure_sources(root).items():
        same = (base / target).is_file() and (base / target).read_bytes() == source.read_bytes()
        rows.append({"file": target, "block": f"figure {source}", "state": "unchanged" if same else "rewritten"})
        if not same and not check:
            shutil.copyfile(source, base / target)
    return rows


def _body(text, name):
    start = text.index(f"<!-- numbers:{name} -->")
    return text[start:text.index(f"<!-- /numbers:{name} -->", start)]


@main_entry
def main(argv=None):
    from experiments.run_pipeline import run

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config_file", default=DEMO_CONFIG, help="the demo's pipeline config")
    parser.add_argument("--benchmark_dir", help="output folder of python -m experiments.benchmarks.mitigation")
    parser.add_argument("--scale_json", help="output of python -m experiments.benchmarks.scale")
    parser.add_argument("--scaling_json", help="scaling.json of python -m experiments.benchmarks.scaling")
    parser.add_argument("--headline_seeds_json", help="output of python -m experiments.benchmarks.headline_seeds")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a file would change")
    args = parser.parse_args(argv)
    _check_benchmark_dir(args.benchmark_dir)  # before the demo runs: a typo must not cost its minutes
    scale_blocks(args.scale_json)
    scaling_blocks(args.scaling_json)
    demo_seeds_blocks(args.headline_seeds_json)
    root, _ = run(args.config_file)
    rows = regenerate(root, args.benchmark_dir, check=args.check, trainings=TRAININGS, scale_json=args.scale_json,
                      scaling_json=args.scaling_json, headline_seeds_json=args.headline_seeds_json)
    print(format_table(rows))
    if args.check and any(row["state"] == "rewritten" for row in rows):
        print("the READMEs differ from what these outputs give: run without --check to rewrite them", file=sys.stderr)
        sys.exit(1)
    return rows


if __name__ == "__main__":
    main()
