"""Explore an audit in the browser: ``python -m experiments.explore --config_file F [--port 8050]``.

F is an audit config (the step-by-step commands) or a pipeline config (``make demo``) whose
preprocessing and reveal steps have run. The app (local only: 127.0.0.1 unless --host says otherwise)
has five tabs: Samples (the SpRAy embedding of each class, coloured by cluster, label, prediction,
annotation, CAV score; hover shows a sample's image and heatmap, a lasso lists samples), Neurons
(DORA / CRP outlier neurons with their reference samples; a click colours the samples by the
neuron's activation), Review (the next round ``refine`` would show, with accept / reject buttons
and keys a / r, written to the same annotation state as ``refine``), Localization and Mitigation
(read-only, when those steps have run). Thumbnails are drawn once and cached under
``<output>/explore/``. ``--screenshots DIR`` writes a PNG of each tab, taken by headless Chromium,
and exits.
"""
import time

from experiments.sample_retrieval.common import add_artifact_argument
from utils.cli import config_parser, main_entry


def build_parser():
    parser = add_artifact_argument(config_parser(__doc__, "audit or pipeline YAML whose preprocessing and reveal "
                                                          "steps have run"))
    parser.add_argument("--port", type=int, default=8050, help="port to serve on (default 8050)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: only this machine can connect)")
    parser.add_argument("--reviewer", default="user", help="who makes the decisions, recorded in the history")
    parser.add_argument("--screenshots", metavar="DIR", help="write a screenshot of each tab to DIR and exit")
    return parser


@main_entry
def main(argv=None):
    from utils.explore.app import create_app, open_audit
    from utils.explore.server import start_server, url_of

    args = build_parser().parse_args(argv)
    start = time.time()
    data, session = open_audit(args.config_file, args.artifact, args.reviewer)
    app = create_app(data, session)
    if args.screenshots:
        from utils.explore.screenshots import take_screenshots

        for path in take_screenshots(app, args.screenshots):
            print(f"wrote {path}")
        return
    server = start_server(app, args.host, args.port)
    print(f"{data.n_samples} samples of the {data.split} split read in {time.time() - start:.1f} s; explorer at "
          f"{url_of(server)} (Ctrl+C stops it)")
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
