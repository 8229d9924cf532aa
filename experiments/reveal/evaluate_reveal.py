"""Score the reveal results against a known artifact (controlled data): SpRAy cluster purity and
coverage of the artifact samples, AUROC of DORA/CRP top outlier neurons' pooled activations.

Reads every ``spray*/dora*/crp*.json`` of the config's reveal folder and writes ``quality.json``
beside them. ``passes`` of DORA/CRP is the literal criterion (AUROC of the pooled activation >= 0.9);
the AUROC in either direction and inside the artifact's class are reported beside it (see
:mod:`utils.reveal.evaluation`). A method without results is listed as not evaluated.
"""
import argparse

from utils.cli import main_entry
from utils.config import AuditConfig, load_config
from utils.errors import UserError
from utils.io import write_json
from utils.paths import step_dir
from utils.reveal.evaluation import evaluate_reveal
from utils.table import format_table


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config_file", required=True, help="audit YAML config (utils.config.AuditConfig)")
    parser.add_argument("--artifact", default=None, help="annotated artifact, e.g. band_aid; default: 'artifact' key")
    parser.add_argument("--top_k", type=int, default=5, help="outlier neurons checked per DORA/CRP result")
    return parser


def summary_rows(quality):
    rows = []
    for entry in quality["spray"]:
        best = entry["best_cluster"] or {}
        where = entry.get("layer") and f"{entry['layer']} {entry.get('feature')}" or "input heatmaps"
        rows.append({"method": "spray", "file": entry["file"], "measure": f"best cluster ({entry['best_clustering']}, {where})",
                     "value": f"purity {best.get('purity', float('nan')):.2f}, coverage {best.get('coverage', float('nan')):.2f}",
                     "passes": entry["passes"]})
    for method in ("dora", "crp"):
        for entry in quality[method]:
            rows.append({"method": method, "file": entry["file"],
                         "measure": f"best AUROC of top-{quality['top_k']} ({entry.get('layer')} {entry['feature']})",
                         "value": f"{entry['best_auroc']:.3f} (either direction {entry['best_separation']:.3f}; "
                                  f"within class {entry['best_auroc_within_class']:.3f}; "
                                  f"rels_max {entry['best_relevance_auroc']:.3f})", "passes": entry["passes"]})
    for method, hint in quality.get("missing", {}).items():
        rows.append({"method": method, "file": "-", "measure": "not evaluated", "value": hint, "passes": False})
    return rows


@main_entry
def main(argv=None):
    args = build_parser().parse_args(argv)
    config = load_config(args.config_file, AuditConfig)
    artifact = args.artifact or config.artifact
    if not artifact:
        raise UserError("--artifact is required (or set 'artifact' in the config)")
    quality = evaluate_reveal(config, artifact, args.top_k)
    path = step_dir(config, "reveal") / "quality.json"
    write_json(path, quality)
    print(format_table(summary_rows(quality)) if summary_rows(quality) else "no reveal results found")
    print(f"json: {path}")


if __name__ == "__main__":
    main()
