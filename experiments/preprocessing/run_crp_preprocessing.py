"""CRP: RelMax reference samples for every neuron of ``neuron_layer_name`` (default ``layer_name``), per class.

For class ``k`` and neuron ``c``: the ``crp_n_refs`` samples of class ``k`` with the highest stored
``rels_max[:, c]``; with ``crp_crop: true`` each is cropped to where the concept-conditional
heatmap (relevance of class ``k`` flowing through neuron ``c``) exceeds ``crp_crop_fraction`` of its
maximum. Writes ``crp_refs_class<k>.json`` in the preprocessing folder (the CRP plot step uses it)
and the class's relevance-pattern outlier neurons, ``crp_class<k>.json``, in the reveal folder (as
the SpRAy and DORA steps write theirs, so ``evaluate_reveal`` finds all three after these steps).
"""
import argparse

from datasets import get_dataset_from_config
from utils.cli import main_entry
from utils.locks import folder_lock
from utils.config import AuditConfig, load_config, save_resolved_config
from utils.io import write_json
from utils.lrp.attribution import get_attributor
from utils.paths import step_dir
from utils.reveal.crp import build_references, references_path, run_crp
from utils.reveal.dora import load_model_and_shape
from utils.table import format_table


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config_file", required=True, help="audit YAML config (utils.config.AuditConfig)")
    return parser


@main_entry
def main(argv=None):
    args = build_parser().parse_args(argv)
    config = load_config(args.config_file, AuditConfig)
    with folder_lock(step_dir(config, "reveal")):  # one run per folder
        save_resolved_config(config, step_dir(config, "reveal"))
        data = get_dataset_from_config(config)
        model, _, device = load_model_and_shape(config)
        attributor = get_attributor(model, backend=config.lrp_backend)
        classes = config.crp_class_indices if config.crp_class_indices is not None else list(range(data.n_classes))
        rows = []
        for class_id in classes:
            layer, refs = build_references(config, class_id, data.get(config.reveal_split), attributor, device)
            path = references_path(config, class_id)
            write_json(path, {"layer": layer, "class_id": class_id, "cropped": config.crp_crop,
                              "references": {str(c): v for c, v in refs.items()}})
            result, outliers_path = run_crp(config, class_id)
            top = result.payload(config)["outlier_neurons"][:3]
            rows.append({"class": class_id, "layer": layer, "neurons": len(refs),
                         "with references": sum(bool(v) for v in refs.values()),
                         "top outlier neurons": ", ".join(str(o["channel"]) for o in top),
                         "json": f"{path}, {outliers_path}"})
        print(format_table(rows))


if __name__ == "__main__":
    main()
