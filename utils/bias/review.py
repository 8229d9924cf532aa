"""The review rounds of the iterative annotation (the ``refine`` entry point and the pipeline's
annotation step): record a reviewer's decisions, refit the CAV on the accepted samples, write what to
review next; or simulate a reviewer from the ground truth.

Only a reviewer's decisions become annotations. Until a sample is accepted, the list shows candidates
(``annotation_seeds``, then the reveal step's outliers and cluster examples); from then on the
unreviewed samples a CAV fit on the accepted ones ranks highest.
"""
import math

import numpy as np
import pandas as pd

from utils.bias.annotation import (annotation_path, export_annotations, inspected_at_recall, load_or_start_state,
                                   random_order_curve, rank_unreviewed, read_annotations, review_candidates,
                                   simulate_annotation, state_path)
from utils.bias.data import ground_truth_labels, load_split_features
from utils.bias.figures import annotation_curve_figure, sample_grid
from utils.bias.retrieval import write_csv
from utils.errors import UserError
from utils.io import write_json
from utils.locks import folder_lock

PLACEHOLDER = "<ID> ..."  # how a printed command marks where sample ids go


def round_size(config, n_samples) -> int:
    """Samples one review round shows: ``retrieval_top_k``, or ``annotation_round_share`` of the split
    when that is more. Each round refits the CAV on all ``n_samples``; with a fixed number per round the
    number of rounds grows with the split too, and the whole annotation with its square."""
    return max(config.retrieval_top_k, math.ceil(config.annotation_round_share * n_samples - 1e-9))


def train_features(ctx):
    """The train split's features the review ranks (``cav_mode`` at the step's layer)."""
    return load_split_features(ctx.config, ctx.splits.train, "train", ctx.layer, ctx.config.cav_mode)


def review(ctx, train, accept=(), reject=(), reviewer="user", figure=True) -> dict:
    """One review round under the folder's lock: the state file is read, changed and written, and two
    reviewers at once must not lose a round."""
    with folder_lock(ctx.out_dir):
        return review_round(ctx, train, list(accept), list(reject), reviewer=reviewer, figure=figure)


def review_round(ctx, train, accept, reject, reviewer="user", figure=True) -> dict:
    """Record decisions (if any), refit, and write the next samples to review (``to_review.csv``, and with
    ``figure`` their grid ``to_review.png``: a simulated reviewer, which answers from the ground truth,
    draws only its last round's, :func:`review_figure`)."""
    config, artifact = ctx.config, ctx.artifact
    known = set(train.sample_ids)
    unknown = [s for s in accept + reject if s not in known]
    if unknown:
        raise UserError(f"{len(unknown)} ids are not in the train split (first: {unknown[0]})")
    state = load_or_start_state(config, artifact, train.sample_ids)
    if accept or reject:
        state.record(accept=accept, reject=reject, source=reviewer)
    state.save(state_path(config, artifact))
    if state.accepted or artifact in read_annotations(annotation_path(config)):
        export_annotations(annotation_path(config), artifact, state.accepted)
    if state.accepted:
        cav, top = rank_unreviewed(train.features, train.sample_ids, state, config.cav_type,
                                   round_size(config, len(train.sample_ids)))
        write_json(ctx.out_dir / "cav_refined.json", {"layer": ctx.layer, "features": config.cav_mode,
                                                      **cav.to_dict()})
        rows = [(s, v, "cav") for s, v in top]
    else:  # no CAV without an accepted sample: show the candidates nobody has decided on yet
        (ctx.out_dir / "cav_refined.json").unlink(missing_ok=True)
        rows = [(s, float("nan"), source) for s, source in review_candidates(config, train.sample_ids)
                if s not in state.reviewed][:round_size(config, len(train.sample_ids))]
        if not rows:
            raise UserError(f"no '{artifact}' sample accepted yet and no candidate left to review: run the reveal "
                            "step first, give annotation_seeds in the config, or accept samples you found yourself "
                            f"(--accept {PLACEHOLDER})")
    frame = pd.DataFrame({"rank": np.arange(1, len(rows) + 1), "sample_id": [s for s, _, _ in rows],
                          "score": [v for _, v, _ in rows], "source": [src for _, _, src in rows]})
    write_csv(ctx.out_dir / "to_review.csv", frame)
    if figure:
        review_figure(ctx, train, frame)
    return {"round": len(state.history), "accepted": len(state.accepted), "rejected": len(state.rejected),
            "withdrawn": state.n_withdrawn, "candidates": not state.accepted, "to_review": frame}


def review_figure(ctx, train, frame):
    """``to_review.png``: the samples of ``frame`` (a round's ``to_review``) with their rank, id and score or
    source; removed when the round shows none, so it never shows an earlier round's samples."""
    path = ctx.out_dir / "to_review.png"
    if not len(frame):
        path.unlink(missing_ok=True)
        return None
    position = dict(zip(train.sample_ids, train.indices))
    titles = [f"#{rank} {s}\n" + (source if np.isnan(v) else f"{v:.2f}")
              for rank, s, v, source in zip(frame["rank"], frame["sample_id"], frame["score"], frame["source"])]
    return sample_grid(ctx.splits.train, [position[s] for s in frame["sample_id"]], titles, path,
                       title=f"review next: is '{ctx.artifact}' present?")


def simulate_review(ctx, train) -> dict:
    """Answer from the ground truth (controlled data): the curve "artifact samples found vs samples
    inspected" of CAV-ranked review rounds against a random order (``simulation.json``, ``.csv``, ``.png``);
    records no annotation."""
    config = ctx.config
    labels = ground_truth_labels(ctx.splits.train, ctx.artifact, train.indices,
                                 hint="--simulate needs it; review with --accept/--reject instead")
    inspected, found = simulate_annotation(train.features, labels, config.annotation_n_seeds,
                                           round_size(config, len(labels)), config.cav_type, seed=config.seed,
                                           stop_recall=config.simulate_target_recall)
    random_found = random_order_curve(labels, config.annotation_n_seeds, inspected)
    n_pos = int(labels.sum())
    at_target = inspected_at_recall(inspected, found, n_pos, config.simulate_target_recall)
    result = {"artifact": ctx.artifact, "split": "train", "layer": ctx.layer, "cav_type": config.cav_type,
              "features": config.cav_mode, "n_samples": len(labels), "n_artifact": n_pos,
              "n_seeds": config.annotation_n_seeds, "batch": round_size(config, len(labels)),
              "target_recall": config.simulate_target_recall, "inspected_at_target_recall": at_target,
              "inspected_per_artifact_sample": None if at_target is None else at_target / n_pos,
              "random_inspected_at_target_recall": int(np.ceil(config.simulate_target_recall * len(labels)))}
    write_json(ctx.out_dir / "simulation.json", result)
    write_csv(ctx.out_dir / "simulation.csv", pd.DataFrame({"inspected": inspected, "found": found,
                                                            "random_expected": random_found}))
    annotation_curve_figure(inspected, found, random_found, n_pos, ctx.out_dir / "simulation.png",
                            title=f"simulated annotation of '{ctx.artifact}' (train split)")
    return result
