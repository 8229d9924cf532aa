"""Plot CRP relevance patterns of one class: neurons of ``neuron_layer_name`` (default
``layer_name``) embedded by the cosine distance of their ``rels_max`` across the class's samples,
LOF outliers circled, and each outlier
neuron's RelMax reference samples (cropped when ``crp_crop``). Writes ``crp_class<k>.json`` and
``.png`` in the reveal folder. References come from ``run_crp_preprocessing`` when it has run, else
they are computed for the shown neurons only.
"""
import argparse

from datasets import get_dataset_from_config
from utils.cli import main_entry
from utils.config import AuditConfig, load_config
from utils.io import read_json
from utils.lrp.attribution import get_attributor
from utils.reveal.crp import build_references, references_path, run_crp
from utils.reveal.dora import load_model_and_shape
from utils.reveal.plots import embedding_with_grid, show_image
from utils.table import format_table

REFS_SHOWN = 3


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config_file", required=True, help="audit YAML config (utils.config.AuditConfig)")
    parser.add_argument("--class_id", type=int, required=True, help="class whose relevance patterns are analysed")
    return parser


@main_entry
def main(argv=None):
    args = build_parser().parse_args(argv)
    config = load_config(args.config_file, AuditConfig)
    result, json_path = run_crp(config, args.class_id)
    payload = result.payload(config)
    outliers = payload["outlier_neurons"][:config.n_outliers]
    split = get_dataset_from_config(config).get(config.reveal_split)
    refs = _references(config, args.class_id, split, [o["channel"] for o in outliers])
    position = {c: p for p, c in enumerate(payload["channels"])}
    panels = [[_panel(split, refs.get(o["channel"], []), k, o["channel"]) for k in range(REFS_SHOWN)]
              for o in outliers]
    path = json_path.with_suffix(".png")
    embedding_with_grid(path, payload["embedding_2d"], None, [position[o["channel"]] for o in outliers], panels,
                        f"CRP relevance patterns, class {args.class_id}, {result.layer}", n_rows_per_item=REFS_SHOWN)
    print(format_table([{"rank": r + 1, "layer": o["layer"], "channel": o["channel"], "LOF": o["score"],
                         "LOF outlier": o["is_outlier"]} for r, o in enumerate(outliers)]))
    print(f"figure: {path}\njson: {json_path}")


def _references(config, class_id, split, channels):
    path = references_path(config, class_id)
    if path.is_file():
        return {int(c): v for c, v in read_json(path)["references"].items()}
    model, _, device = load_model_and_shape(config)
    _, refs = build_references(config, class_id, split, get_attributor(model, backend=config.lrp_backend),
                               device, channels=channels)
    return refs


def _panel(split, refs, k, channel):
    if k >= len(refs):
        return lambda ax: ax.axis("off")
    ref = refs[k]
    image = split.load_raw(ref["sample_index"]).numpy()
    box = ref["box"]
    crop = image[:, box[0]:box[1], box[2]:box[3]] if image.ndim == 3 else image[:, box[0]:box[1]]
    return lambda ax: show_image(ax, crop, f"ch {channel}" if k == 0 else "")


if __name__ == "__main__":
    main()
