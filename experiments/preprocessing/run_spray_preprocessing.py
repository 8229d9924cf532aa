"""SpRAy: spectral clustering and outliers of each class's explanations.

Reads the preprocessing store of ``reveal_split``; ``spray_space: input`` uses the stored input
heatmaps, ``latent`` the stored ``spray_feature`` (e.g. ``rel``) of ``layer_name``. Per class it
writes ``<output_dir>/reveal/<dataset>/<model>/<config>/spray_class<k>.json`` with the spectral
embedding's clusterings (k-means, DBSCAN, HDBSCAN, agglomerative), a t-SNE view and the samples
ranked by Local Outlier Factor.
"""
import argparse

import numpy as np

from utils.cli import main_entry
from utils.locks import folder_lock
from utils.config import AuditConfig, load_config, save_resolved_config
from utils.paths import step_dir
from utils.reveal.spray import run_spray
from utils.reveal.store_views import n_classes_of, open_store, parse_class_indices
from utils.table import format_table


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config_file", required=True, help="audit YAML config (utils.config.AuditConfig)")
    parser.add_argument("--class_indices", default=None, help="comma-separated classes, e.g. '0,1'; default: all")
    return parser


@main_entry
def main(argv=None):
    args = build_parser().parse_args(argv)
    config = load_config(args.config_file, AuditConfig)
    with folder_lock(step_dir(config, "reveal")):  # one run per folder
        with open_store(config) as store:
            classes = parse_class_indices(args.class_indices, n_classes_of(store))
        save_resolved_config(config, step_dir(config, "reveal"))
        rows = []
        for class_id in classes:
            result, path = run_spray(config, class_id)
            default = result.clusterings.get(config.spray_default_clustering)
            top = result.payload(config)["outlier_samples"][:3]
            rows.append({"class": class_id, "samples": len(result.sample_ids),
                         "clusters (" + config.spray_default_clustering + ")":
                             "-" if default is None else len(set(default.tolist()) - {-1}),
                         "LOF outliers": int(np.sum(result.flags)),
                         "top outliers": ", ".join(o["sample_id"] for o in top), "json": str(path)})
        print(format_table(rows))


if __name__ == "__main__":
    main()
