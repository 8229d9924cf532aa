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
from experiments.sample_retrieval.common import add_artifact_argument, prepare
from utils.bias.review import PLACEHOLDER, review, simulate_review, train_features
from utils.cli import config_parser, main_entry
from utils.errors import UserError
from utils.table import format_table

HELP = (__doc__.splitlines()[0] + " Only your decisions are annotations: without --accept/--reject it records "
        "nothing and lists candidates (annotation_seeds, then the reveal step's outliers and cluster examples) "
        "until a sample is accepted, then the samples a CAV fit on the accepted ones ranks highest.")


def _ids(values):
    # ids may be given space- or comma-separated
    return [v for value in values or [] for v in value.split(",") if v]


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
    train = train_features(ctx)
    if args.simulate:
        if args.accept or args.reject:
            raise UserError("--simulate answers from ground truth; it takes no --accept/--reject")
        result = simulate_review(ctx, train)
        print(format_table([{k: result[k] for k in ("n_samples", "n_artifact", "n_seeds", "target_recall",
                                                     "inspected_at_target_recall", "inspected_per_artifact_sample",
                                                     "random_inspected_at_target_recall")}]))
    else:
        result = review(ctx, train, _ids(args.accept), _ids(args.reject), reviewer=args.reviewer)
        print_round(result, args, ctx.config, ctx.artifact)
    print(f"outputs: {ctx.out_dir}")
    return result


if __name__ == "__main__":
    main()
