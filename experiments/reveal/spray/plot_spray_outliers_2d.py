"""Plot SpRAy for one class: the 2-D embedding coloured by cluster with outliers circled, and the
outlier samples with their heatmaps. Runs SpRAy first if its JSON is missing.

Writes ``spray_class<k>.png`` beside ``spray_class<k>.json`` in the reveal folder.
"""
import argparse

import numpy as np

from datasets import get_dataset_from_config
from utils.cli import main_entry
from utils.config import AuditConfig, load_config
from utils.reveal.plots import embedding_with_grid, show_heatmap, show_image
from utils.reveal.results import read_result, result_path
from utils.reveal.spray import run_spray
from utils.reveal.store_views import open_store
from utils.table import format_table


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config_file", required=True, help="audit YAML config (utils.config.AuditConfig)")
    parser.add_argument("--class_id", type=int, required=True, help="class whose explanations are shown")
    return parser


@main_entry
def main(argv=None):
    args = build_parser().parse_args(argv)
    config = load_config(args.config_file, AuditConfig)
    if not result_path(config, "spray", args.class_id).is_file():
        run_spray(config, args.class_id)
    result = read_result(config, "spray", args.class_id)
    outliers = result["outlier_samples"][:config.n_outliers]
    split = get_dataset_from_config(config).get(result["split"])
    position = {i: p for p, i in enumerate(result["sample_index"])}
    with open_store(config) as store:
        heatmaps = store.file["heatmaps"]
        panels = [[_image(split, o), _heat(heatmaps[o["sample_index"]], o)] for o in outliers]
    labels = result["clusterings"].get(result["default_clustering"])
    path = result_path(config, "spray", args.class_id).with_suffix(".png")
    embedding_with_grid(path, result["embedding_2d"], labels, [position[o["sample_index"]] for o in outliers],
                        panels, f"SpRAy class {args.class_id} ({result['default_clustering']})")
    print(format_table([{"rank": r + 1, "sample": o["sample_id"], "LOF": o["score"]} for r, o in enumerate(outliers)]))
    print(f"figure: {path}")


def _image(split, outlier):
    image = split.load_raw(outlier["sample_index"]).numpy()
    return lambda ax: show_image(ax, image, outlier["sample_id"])


def _heat(heatmap, outlier):
    heatmap = np.asarray(heatmap)
    return lambda ax: show_heatmap(ax, heatmap, f"LOF {outlier['score']:.2f}")


if __name__ == "__main__":
    main()
