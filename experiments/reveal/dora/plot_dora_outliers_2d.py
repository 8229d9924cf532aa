"""Plot DORA: the 2-D embedding of neurons with outlier neurons circled, and each outlier neuron's
reference signals (sAMS or real samples). Writes ``dora[_class<k>].json`` and ``.png`` in the
reveal folder; reference signals come from the cache of ``run_dora_preprocessing`` (computed if
missing).
"""
import argparse

import numpy as np

from datasets import get_dataset_from_config
from experiments.preprocessing.run_dora_preprocessing import outlier_rows
from utils.cli import main_entry
from utils.config import AuditConfig, load_config
from utils.reveal.dora import cached_reference_set, run_dora
from utils.reveal.plots import embedding_with_grid, show_image
from utils.reveal.results import result_path
from utils.table import format_table

REFS_SHOWN = 3


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config_file", required=True, help="audit YAML config (utils.config.AuditConfig)")
    parser.add_argument("--class_id", type=int, default=None,
                        help="dora_reference real_act / real_rel only: take the references from this class "
                        "(refused with sams, which do not depend on a class)")
    return parser


@main_entry
def main(argv=None):
    args = build_parser().parse_args(argv)
    config = load_config(args.config_file, AuditConfig)
    references, _ = cached_reference_set(config, args.class_id)
    result, json_path, _ = run_dora(config, args.class_id, references=references)
    payload = result.payload(config)
    outliers = payload["outlier_neurons"][:config.n_outliers]
    position = {c: p for p, c in enumerate(payload["channels"])}
    data = get_dataset_from_config(config)
    split = data.get(config.reveal_split)
    panels = [[_reference_panel(split, references, o["channel"], k) for k in range(REFS_SHOWN)] for o in outliers]
    path = json_path.with_suffix(".png")
    embedding_with_grid(path, payload["embedding_2d"], None, [position[o["channel"]] for o in outliers], panels,
                        f"DORA {result.layer} ({config.dora_reference}, {config.dora_aggregation})",
                        n_rows_per_item=REFS_SHOWN)
    print(format_table(outlier_rows(result, config, config.n_outliers)))
    print(f"figure: {path}\njson: {json_path}")


def _reference_panel(split, references, channel, k):
    refs = references.references.get(channel, [])
    if k >= len(refs):
        return lambda ax: ax.axis("off")
    title = f"ch {channel}" if k == 0 else ""
    if references.signals is not None:  # sAMS live in normalised input space
        image = split.denormalize(references.signals[refs[k]]).numpy()
    else:
        index = split.sample_ids.index(refs[k])
        image = split.load_raw(index).numpy()
    return lambda ax: show_image(ax, np.asarray(image), title)


if __name__ == "__main__":
    main()
