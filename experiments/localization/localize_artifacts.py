"""Localize an artifact: CAV-conditioned LRP heatmaps and binary masks for its samples.

    python -m experiments.localization.localize_artifacts --config_file F --artifact band_aid

Writes ``<output>/localization/<dataset>/<model>/<config>/<artifact>/``: ``masks/<id>.png``
(uint8 0/255; signals ``.npy``), ``heatmaps/<id>.npy``, ``index.json``, ``cav.json``,
``masks_overview.png``, ``config.yaml``.
"""
from experiments.sample_retrieval.common import add_artifact_argument, prepare
from utils.bias.steps import run_localization
from utils.cli import config_parser, main_entry
from utils.table import format_table


@main_entry
def main(argv=None):
    parser = add_artifact_argument(config_parser(__doc__.splitlines()[0]))
    ctx = prepare(parser.parse_args(argv), "localization")
    index = run_localization(ctx)
    print(format_table([{"artifact": ctx.artifact, "layer": ctx.layer, "split": index["split"],
                         "samples": len(index["samples"]), "threshold": index["threshold"]}]))
    print(f"outputs: {ctx.out_dir}")
    return index


if __name__ == "__main__":
    main()
