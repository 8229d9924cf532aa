"""Audit a model end to end and write a report: ``python -m experiments.run_pipeline --config_file F``.

Steps: data → train (or load ``ckpt_path``) → preprocess → reveal (SpRAy, DORA, CRP) → annotate
(seeded from reveal outliers) → retrieve (CAV ranking) → localize → mitigate (every configured
method) → evaluate → report. Each step is cached by a hash of the config parts and inputs it
depends on: a second run with the same config does no work again, and a stopped run continues.
Outputs: ``<output_dir>/pipeline/<dataset>/<model>/<config name>/report.html``, ``report.md`` and
``metrics.json``.
"""
import time

from utils.cli import config_parser, main_entry
from utils.config import load_config, save_resolved_config
from utils.locks import folder_lock
from utils.paths import step_dir
from utils.pipeline import steps as _steps  # noqa: F401  (registers the steps)
from utils.pipeline.config import PipelineConfig
from utils.pipeline.runner import STEPS, Context, run_steps
from utils.table import format_table


def build_parser():
    parser = config_parser(__doc__, "pipeline YAML (utils.pipeline.config.PipelineConfig)")
    parser.add_argument("--from_step", choices=list(STEPS), help="re-run this step and every later one")
    parser.add_argument("--only", choices=list(STEPS), help="re-run only this step (earlier ones must be cached)")
    parser.add_argument("--until", choices=list(STEPS), help="stop after this step (later ones are not run)")
    return parser


def run(config_file, from_step=None, only=None, until=None, log=print):
    config = load_config(config_file, PipelineConfig)
    config.check_steps()
    root = step_dir(config, "pipeline")
    with folder_lock(root):  # one pipeline per folder: a second one stops at once, naming this one
        save_resolved_config(config, root)
        ctx = Context(config=config, root=root)
        start = time.time()
        results = run_steps(ctx, from_step=from_step, only=only, until=until, log=log)
    if "report" not in results:  # stopped by --until
        log(f"\nstopped after step '{until}' in {time.time() - start:.0f} s; outputs: {root}")
        return root, results
    log(f"\nfinished in {time.time() - start:.0f} s; report: {root / 'report.html'}")
    headline = results.get("report", {}).get("headline", [])
    if headline:
        log(format_table(headline))
    return root, results


@main_entry
def main(argv=None):
    args = build_parser().parse_args(argv)
    run(args.config_file, args.from_step, args.only, args.until)


if __name__ == "__main__":
    main()
