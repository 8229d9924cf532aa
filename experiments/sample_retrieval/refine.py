"""Iterative annotation of artifact samples: record decisions, refit the CAV, list what to review next.

    python -m experiments.sample_retrieval.refine --config_file F --artifact band_aid
    python -m experiments.sample_retrieval.refine --config_file F --artifact A --accept <ID> ... --reject <ID> ...
    python -m experiments.sample_retrieval.refine --config_file F --artifact band_aid --simulate

(``<ID> ...``: placeholders for sample ids of the list shown, space- or comma-separated.)
Only your decisions become annotations. Until a sample is accepted, the list shows candidates:
``annotation_seeds``, then the reveal step's top outliers and the most central examples of each
SpRAy cluster; from then on, the unreviewed samples a CAV fit on the accepted ones ranks highest.
A run without --accept/--reject records nothing and shows the list again. An existing annotation
file (``annotation_file``) starts the review with its samples accepted. Every run writes, in
``<output>/sample_retrieval/.../<artifact>/``, ``to_review.csv`` and ``to_review.png``, the review
state with its history (``annotation_state.json``), and re-exports the annotation file that
retrieval and localization read (``cav_labels: annotations``). ``--simulate`` answers from the
ground truth instead (controlled data) and plots "artifact samples found vs samples inspected";
it records no annotation.
"""
import numpy as np
import pandas as pd

from experiments.sample_retrieval.common import add_artifact_argument, prepare
from utils.bias.annotation import (annotation_path, export_annotations, inspected_at_recall, load_or_start_state,
                                   random_order_curve, rank_unreviewed, read_annotations, review_candidates,
                                   simulate_annotation, state_path)
from utils.bias.data import ground_truth_labels, load_split_features
from utils.bias.figures import annotation_curve_figure, sample_grid
from utils.bias.retrieval import write_csv
from utils.cli import config_parser, main_entry
from utils.errors import UserError
from utils.io import write_json
from utils.locks import folder_lock
from utils.table import format_table

PLACEHOLDER = "<ID> ..."  # how the printed next command marks where sample ids go
HELP = (__doc__.splitlines()[0] + " Only your decisions are annotations: without --accept/--reject it records "
        "nothing and lists candidates (annotation_seeds, then the reveal step's outliers and cluster examples) "
        "until a sample is accepted, then the samples a CAV fit on the accepted ones ranks highest.")


def _ids(values):
    # ids may be given space- or comma-separated
    return [v for value in values or [] for v in value.split(",") if v]


def review_round(ctx, train, accept, reject, reviewer="user") -> dict:
    """Record decisions (if any), refit, and write the next samples to review."""
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
        cav, top = rank_unreviewed(train.features, train.sample_ids, state, config.cav_type, config.retrieval_top_k)
        write_json(ctx.out_dir / "cav_refined.json", {"layer": ctx.layer, "features": config.cav_mode,
                                                      **cav.to_dict()})
        rows = [(s, v, "cav") for s, v in top]
    else:  # no CAV without an accepted sample: show the candidates nobody has decided on yet
        (ctx.out_dir / "cav_refined.json").unlink(missing_ok=True)
        rows = [(s, float("nan"), source) for s, source in review_candidates(config, train.sample_ids)
                if s not in state.reviewed][:config.retrieval_top_k]
        if not rows:
            raise UserError(f"no '{artifact}' sample accepted yet and no candidate left to review: run the reveal "
                            "step first, give annotation_seeds in the config, or accept samples you found yourself "
                            f"(--accept {PLACEHOLDER})")
    frame = pd.DataFrame({"rank": np.arange(1, len(rows) + 1), "sample_id": [s for s, _, _ in rows],
                          "score": [v for _, v, _ in rows], "source": [src for _, _, src in rows]})
    write_csv(ctx.out_dir / "to_review.csv", frame)
    if rows:
        position = dict(zip(train.sample_ids, train.indices))
        titles = [f"#{r + 1} {s}\n" + (source if np.isnan(v) else f"{v:.2f}")
                  for r, (s, v, source) in enumerate(rows)]
        sample_grid(ctx.splits.train, [position[s] for s, _, _ in rows], titles, ctx.out_dir / "to_review.png",
                    title=f"review next: is '{artifact}' present?")
    return {"round": len(state.history), "accepted": len(state.accepted), "rejected": len(state.rejected),
            "withdrawn": state.n_withdrawn, "candidates": not state.accepted, "to_review": frame}


def print_round(result, args, config, artifact):
    """The list to review and the command that records the decisions (placeholders marked)."""
    if result["withdrawn"]:
        print(f"note: {result['withdrawn']} samples an earlier version accepted without review are candidates again")
    print(f"decisions so far: {result['round']} rounds, {result['accepted']} accepted, {result['rejected']} rejected.")
    rows = result["to_review"]
    if result["candidates"]:
        print("Nothing is annotated yet. Candidates to review (not annotations until you accept them):")
        rows = rows.drop(columns="score")  # no CAV yet, hence no score
    else:
        print("Review next (the unreviewed samples a CAV fit on the accepted ones ranks highest):")
    print(format_table(rows.to_dict("records")))
    print(f"Look at to_review.png, then record your decisions ({PLACEHOLDER}: sample ids from the list; "
          "give one flag or both):")
    print(f"  python -m experiments.sample_retrieval.refine --config_file {args.config_file} --artifact {artifact} "
          f"--accept {PLACEHOLDER} --reject {PLACEHOLDER}")
    if config.cav_labels == "annotations":
        if result["accepted"]:
            print(f"Retrieval and localization fit their CAV on the accepted samples ({result['accepted']}; "
                  "cav_labels: annotations).")
    else:
        print(f"note: this config has cav_labels: {config.cav_labels}; retrieval and localization ignore "
              "these annotations.")


def simulate(ctx, train) -> dict:
    config = ctx.config
    labels = ground_truth_labels(ctx.splits.train, ctx.artifact, train.indices,
                                 hint="--simulate needs it; review with --accept/--reject instead")
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
    parser = add_artifact_argument(config_parser(HELP))
    parser.add_argument("--accept", nargs="*", default=[], metavar="ID", help="sample ids that show the artifact")
    parser.add_argument("--reject", nargs="*", default=[], metavar="ID", help="sample ids that do not")
    parser.add_argument("--reviewer", default="user",
                        help="who made the decisions, recorded in the history (default: user)")
    parser.add_argument("--simulate", action="store_true",
                        help="answer from ground truth and plot the curve; records no annotation")
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
        # the state file is read, changed and written: two reviewers at once must not lose a round
        with folder_lock(ctx.out_dir):
            result = review_round(ctx, train, _ids(args.accept), _ids(args.reject), reviewer=args.reviewer)
        print_round(result, args, ctx.config, ctx.artifact)
    print(f"outputs: {ctx.out_dir}")
    return result


if __name__ == "__main__":
    main()
