"""Iterative annotation of artifact samples: record decisions, refit the CAV, list what to review next.

    python -m experiments.sample_retrieval.refine --config_file F --artifact band_aid
    python -m experiments.sample_retrieval.refine --config_file F --artifact band_aid --accept id1 id2 --reject id3
    python -m experiments.sample_retrieval.refine --config_file F --artifact band_aid --simulate

The first run seeds the annotation from the annotation file, ``annotation_seeds`` or the reveal
step's outliers. Every run writes, in ``<output>/sample_retrieval/.../<artifact>/``,
``to_review.csv`` and ``to_review.png`` (the top-ranked samples not yet reviewed), the review state
with its history (``annotation_state.json``) and re-exports the annotation file. ``--simulate``
answers from the ground truth instead and plots "artifact samples found vs samples inspected".
"""
import numpy as np
import pandas as pd

from experiments.sample_retrieval.common import add_artifact_argument, prepare
from utils.bias.annotation import (annotation_path, export_annotations, inspected_at_recall, load_or_start_state,
                                   random_order_curve, rank_unreviewed, simulate_annotation, state_path)
from utils.bias.data import ground_truth_labels, load_split_features
from utils.bias.figures import annotation_curve_figure, sample_grid
from utils.bias.retrieval import write_csv
from utils.cli import config_parser, main_entry
from utils.errors import UserError
from utils.io import write_json
from utils.table import format_table


def _ids(values):
    # ids may be given space- or comma-separated
    return [v for value in values or [] for v in value.split(",") if v]


def review_round(ctx, train, accept, reject) -> dict:
    """Record decisions, refit, and write the next samples to review."""
    config, artifact = ctx.config, ctx.artifact
    known = set(train.sample_ids)
    unknown = [s for s in accept + reject if s not in known]
    if unknown:
        raise UserError(f"{len(unknown)} ids are not in the train split (first: {unknown[0]})")
    state = load_or_start_state(config, artifact, train.sample_ids)
    if accept or reject:
        state.record(accept=accept, reject=reject, source="user")
    state.save(state_path(config, artifact))
    export_annotations(annotation_path(config), artifact, state.accepted)
    cav, top = rank_unreviewed(train.features, train.sample_ids, state, config.cav_type, config.retrieval_top_k)
    write_json(ctx.out_dir / "cav_refined.json", {"layer": ctx.layer, "features": config.cav_mode, **cav.to_dict()})
    position = dict(zip(train.sample_ids, train.indices))
    frame = pd.DataFrame({"rank": np.arange(1, len(top) + 1), "sample_id": [s for s, _ in top],
                          "score": [v for _, v in top]})
    write_csv(ctx.out_dir / "to_review.csv", frame)
    if top:
        sample_grid(ctx.splits.train, [position[s] for s, _ in top], [f"#{r + 1} {s}\n{v:.2f}" for r, (s, v) in
                                                                        enumerate(top)],
                    ctx.out_dir / "to_review.png", title=f"review next: is '{artifact}' present?")
    return {"round": len(state.history) - 1, "accepted": len(state.accepted), "rejected": len(state.rejected),
            "to_review": frame}


def simulate(ctx, train) -> dict:
    config = ctx.config
    labels = ground_truth_labels(ctx.splits.train, ctx.artifact, train.indices)
    inspected, found = simulate_annotation(train.features, labels, config.annotation_n_seeds,
                                           config.retrieval_top_k, config.cav_type, seed=config.seed,
                                           stop_recall=config.simulate_target_recall)
    random_found = random_order_curve(labels, config.annotation_n_seeds, inspected)
    n_pos = int(labels.sum())
    at_target = inspected_at_recall(inspected, found, n_pos, config.simulate_target_recall)
    result = {"artifact": ctx.artifact, "split": "train", "layer": ctx.layer, "cav_type": config.cav_type,
              "features": config.cav_mode, "n_samples": len(labels), "n_artifact": n_pos,
              "n_seeds": config.annotation_n_seeds, "batch": config.retrieval_top_k,
              "target_recall": config.simulate_target_recall, "inspected_at_target_recall": at_target,
              "inspected_per_artifact_sample": None if at_target is None else at_target / n_pos,
              "random_inspected_at_target_recall": int(np.ceil(config.simulate_target_recall * len(labels)))}
    write_json(ctx.out_dir / "simulation.json", result)
    write_csv(ctx.out_dir / "simulation.csv", pd.DataFrame({"inspected": inspected, "found": found,
                                                            "random_expected": random_found}))
    annotation_curve_figure(inspected, found, random_found, n_pos, ctx.out_dir / "simulation.png",
                            title=f"simulated annotation of '{ctx.artifact}' (train split)")
    return result


@main_entry
def main(argv=None):
    parser = add_artifact_argument(config_parser(__doc__.splitlines()[0]))
    parser.add_argument("--accept", nargs="*", default=[], help="sample ids that show the artifact")
    parser.add_argument("--reject", nargs="*", default=[], help="sample ids that do not")
    parser.add_argument("--simulate", action="store_true", help="answer from ground truth; plot the curve")
    args = parser.parse_args(argv)
    ctx = prepare(args, "sample_retrieval")
    train = load_split_features(ctx.config, ctx.splits.train, "train", ctx.layer, ctx.config.cav_mode)
    if args.simulate:
        if args.accept or args.reject:
            raise UserError("--simulate answers from ground truth; it takes no --accept/--reject")
        result = simulate(ctx, train)
        print(format_table([{k: result[k] for k in ("n_samples", "n_artifact", "n_seeds", "target_recall",
                                                     "inspected_at_target_recall", "inspected_per_artifact_sample",
                                                     "random_inspected_at_target_recall")}]))
    else:
        result = review_round(ctx, train, _ids(args.accept), _ids(args.reject))
        print(f"round {result['round']}: {result['accepted']} accepted, {result['rejected']} rejected; review next:")
        print(format_table(result["to_review"].to_dict("records")))
    print(f"outputs: {ctx.out_dir}")
    return result


if __name__ == "__main__":
    main()
