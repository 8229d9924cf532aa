"""Score the reveal results against a known artifact (controlled data): SpRAy cluster purity and
coverage of the artifact samples, AUROC of DORA/CRP top outlier neurons' pooled activations.

Reads every ``spray*/dora*/crp*.json`` of the config's reveal folder and writes ``quality.json``
beside them. ``passes`` of DORA/CRP is the literal criterion (AUROC of the pooled activation >= 0.9);
the AUROC in either direction and inside the artifact's class are reported beside it (see
:mod:`utils.reveal.evaluation`). A method without results is listed as not evaluated.
"""

from utils.cli import config_parser, main_entry
from utils.config import AuditConfig, load_config
from utils.errors import UserError
from utils.reveal.steps import TOP_K, quality_rows, reveal_quality_step
from utils.table import format_table


def build_parser():
    parser = config_parser(__doc__, "audit YAML config (utils.config.AuditConfig)")
    parser.add_argument("--artifact", default=None, help="annotated artifact, e.g. band_aid; default: 'artifact' key")
    parser.add_argument("--top_k", type=int, default=TOP_K, help="outlier neurons checked per DORA/CRP result")
    return parser


@main_entry
def main(argv=None):
    args = build_parser().parse_args(argv)
    config = load_config(args.config_file, AuditConfig)
    artifact = args.artifact or config.artifact
    if not artifact:
        raise UserError("--artifact is required (or set 'artifact' in the config)")
    quality, path = reveal_quality_step(config, artifact, args.top_k)
    rows = quality_rows(quality)
    print(format_table(rows) if rows else "no reveal results found")
    print(f"json: {path}")


if __name__ == "__main__":
    main()
