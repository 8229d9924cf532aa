"""Iterative annotation of artifact samples: state, seeds, one refinement round, simulation.

Two files per audit:

* the **annotation file** ``{artifact: [sample ids]}`` (``annotation_file`` or
  ``<sample_retrieval dir>/annotations.json``) — what later steps read;
* the **review state** ``<sample_retrieval dir>/<artifact>/annotation_state.json`` — accepted and
  rejected ids and the history of every decision. It is the source of truth; the annotation file
  is re-exported from it after every change, so a run killed between the two writes is repaired
  by the next one.

Both are written atomically (``utils.io``): a reader never sees a half-written file.
During refinement, samples not yet accepted count as negatives of the CAV (positive-unlabelled
learning: artifacts are rare, so most unreviewed samples are clean).

Only a reviewer's decisions are annotations: a person's (``refine --accept/--reject``, or an
annotation file they wrote), or a simulated reviewer's that answers from the ground truth. The
reveal step's outliers and ``annotation_seeds`` are *candidates*, shown for review before any CAV
exists, never accepted by themselves: a guess taken as an annotation would bias every later step.
"""
import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from utils.bias.cav import fit_cav
from utils.errors import UserError
from utils.io import read_json, write_json
from utils.paths import step_dir


# --- files -----------------------------------------------------------------------------------
def annotation_path(config) -> Path:
    if config.annotation_file:
        return Path(config.annotation_file)
    return step_dir(config, "sample_retrieval", create=False) / "annotations.json"


def state_path(config, artifact) -> Path:
    return step_dir(config, "sample_retrieval", create=False) / artifact / "annotation_state.json"


def read_annotations(path) -> dict:
    """``{artifact: [sample ids]}`` from ``path``; an empty dict if the file does not exist."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        data = read_json(path)
    except json.JSONDecodeError as err:
        raise UserError(f"annotation file {path} is not valid JSON ({err.msg}, line {err.lineno})") from None
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise UserError(f"annotation file {path} must map each artifact to a list of sample ids")
    return {artifact: [str(s) for s in ids] for artifact, ids in data.items()}


def export_annotations(path, artifact, sample_ids):
    """Set ``artifact``'s list in the annotation file, keeping the other artifacts' lists."""
    data = read_annotations(path)
    data[artifact] = list(sample_ids)
    write_json(path, data)


# history sources of rounds no reviewer made: earlier versions of refine accepted these seeds by themselves
UNREVIEWED_SOURCES = ("seed:reveal", "seed:annotation_seeds")


@dataclass
class AnnotationState:
    """Accepted / rejected sample ids of one artifact and every decision made so far."""

    artifact: str
    accepted: list = field(default_factory=list)
    rejected: list = field(default_factory=list)
    history: list = field(default_factory=list)
    n_withdrawn: int = 0  # acceptances without review withdrawn when this state was loaded (not saved)

    @property
    def reviewed(self) -> set:
        return set(self.accepted) | set(self.rejected)

    def record(self, accept=(), reject=(), source="user"):
        """Apply one round of decisions; a later decision on a sample overrides an earlier one."""
        accept, reject = list(dict.fromkeys(accept)), list(dict.fromkeys(reject))
        both = set(accept) & set(reject)
        if both:
            raise UserError(f"sample ids both accepted and rejected: {', '.join(sorted(both))}")
        self._apply(accept, reject)
        entry = {"round": len(self.history), "time": _dt.datetime.now().isoformat(timespec="seconds"),
                 "source": source, "accepted": accept, "rejected": reject,
                 "n_accepted_total": len(self.accepted), "n_rejected_total": len(self.rejected)}
        self.history.append(entry)
        return entry

    def _apply(self, accept, reject):
        # sets for the membership tests: lists would make a round cost (decisions x annotated so far)
        accepted, rejected, accept_set, reject_set = set(self.accepted), set(self.rejected), set(accept), set(reject)
        self.accepted = [s for s in self.accepted if s not in reject_set] + [s for s in accept if s not in accepted]
        self.rejected = [s for s in self.rejected if s not in accept_set] + [s for s in reject if s not in rejected]

    def _withdraw_unreviewed(self):
        """Mark rounds no reviewer made as withdrawn (kept in the history) and replay the others."""
        stale = [e for e in self.history if e.get("source") in UNREVIEWED_SOURCES and not e.get("withdrawn")]
        if not stale:
            return
        for entry in stale:
            entry["withdrawn"] = "accepted without review; shown again as candidates"
        self.accepted, self.rejected = [], []
        for entry in self.history:
            if not entry.get("withdrawn"):
                self._apply(entry["accepted"], entry["rejected"])
        self.n_withdrawn = len({s for e in stale for s in e["accepted"]} - set(self.accepted))

    def save(self, path):
        write_json(path, {"artifact": self.artifact, "accepted": self.accepted, "rejected": self.rejected,
                          "history": self.history})

    @classmethod
    def load(cls, path, artifact):
        path = Path(path)
        if not path.is_file():
            return None
        data = read_json(path)
        if data.get("artifact") != artifact:
            raise UserError(f"{path} holds annotations of '{data.get('artifact')}', not '{artifact}'")
        state = cls(artifact, list(data["accepted"]), list(data["rejected"]), list(data["history"]))
        state._withdraw_unreviewed()
        return state


# --- candidates: shown first, accepted only by a reviewer --------------------------------------
def reveal_outliers(config, known_ids, n) -> list:
    """The ``n`` highest-scoring outlier samples of every reveal result file that lists them.

    Reveal files (``<reveal dir>/**/*.json``) with ``"outlier_samples": [{"sample_id", "score"}]``
    are merged; ids not in ``known_ids`` (another split) are skipped.
    """
    root = step_dir(config, "reveal", create=False)
    candidates = {}
    for path in sorted(root.rglob("*.json")) if root.is_dir() else []:
        try:
            data = read_json(path)
        except (json.JSONDecodeError, OSError):
            continue
        if not isinstance(data, dict):
            continue
        for row in data.get("outlier_samples") or []:
            sid, score = str(row.get("sample_id")), float(row.get("score", 0.0))
            if sid in known_ids:
                candidates[sid] = max(score, candidates.get(sid, -np.inf))
    return sorted(candidates, key=lambda s: -candidates[s])[:n]


def reveal_cluster_examples(config, known_ids, n_per_cluster) -> list:
    """The ``n_per_cluster`` most central samples of every cluster of each SpRAy result's default
    clustering (closest to the cluster's centre in the 2-D view): what a person skimming the
    clusters looks at first. Noise points (label -1) are not a cluster."""
    root = step_dir(config, "reveal", create=False)
    examples = []
    for path in sorted(root.rglob("spray*.json")) if root.is_dir() else []:
        try:
            data = read_json(path)
            clusterings = data["clusterings"]  # the default one, else the first that was computed
            labels = np.asarray(clusterings.get(data["default_clustering"]) or next(iter(clusterings.values())))
            view, ids = np.asarray(data["embedding_2d"], dtype=float), list(data["sample_ids"])
        except (json.JSONDecodeError, OSError, KeyError, TypeError):
            continue
        for cluster in sorted(set(labels.tolist()) - {-1}):
            members = np.flatnonzero(labels == cluster)
            distance = np.linalg.norm(view[members] - view[members].mean(0), axis=1)
            examples += [str(ids[i]) for i in members[np.argsort(distance, kind="stable")][:n_per_cluster]]
    return [s for s in dict.fromkeys(examples) if s in known_ids]


def reveal_candidates(config, known_ids, n) -> list:
    """What the reveal step shows a person: its ``4 n`` top outlier samples, then the ``n`` most
    central examples of every SpRAy cluster (duplicates once, in that order)."""
    known = set(known_ids)
    return list(dict.fromkeys(reveal_outliers(config, known, 4 * n) + reveal_cluster_examples(config, known, n)))


def review_candidates(config, known_ids) -> list:
    """``(sample id, source)`` pairs to show before any sample is accepted: ``annotation_seeds``,
    then the reveal step's candidates (see :func:`reveal_candidates`). Candidates, not annotations."""
    check_known("annotation_seeds", config.annotation_seeds, known_ids)
    pairs = [(s, "annotation_seeds") for s in config.annotation_seeds]
    pairs += [(s, "reveal") for s in reveal_candidates(config, known_ids, config.annotation_n_seeds)]
    first = {}
    for sid, source in pairs:
        first.setdefault(sid, source)  # an id listed twice keeps its first source
    return list(first.items())


def check_known(name, ids, known_ids):
    known = set(known_ids)
    unknown = [s for s in ids if s not in known]
    if unknown:
        raise UserError(f"{name}: {len(unknown)} sample ids are not in the train split (first: {unknown[0]})")


def load_or_start_state(config, artifact, known_ids) -> AnnotationState:
    """The review state; a new one starts from the annotation file's decisions, if it lists any
    (a file a person wrote, or the export of an earlier review), and is empty otherwise."""
    state = AnnotationState.load(state_path(config, artifact), artifact)
    if state is None:
        state = AnnotationState(artifact)
        ids = read_annotations(annotation_path(config)).get(artifact, [])
        if ids:
            check_known(f"annotation file {annotation_path(config)}", ids, known_ids)
            state.record(accept=ids, source="annotation_file")
    return state


# --- one round ---------------------------------------------------------------------------------
def rank_unreviewed(features, sample_ids, state, method, top_k):
    """Fit a CAV (accepted vs. everything else) and rank the samples not yet reviewed.

    Returns the CAV and the ``top_k`` (sample id, score) pairs, best first.
    """
    accepted = set(state.accepted)  # once: a set per sample would make the round quadratic
    labels = np.array([s in accepted for s in sample_ids])
    cav = fit_cav(features, labels, method)
    scores = cav.score(features)
    reviewed = state.reviewed
    order = [i for i in np.argsort(-scores, kind="stable") if sample_ids[i] not in reviewed]
    return cav, [(sample_ids[i], float(scores[i])) for i in order[:top_k]]


# --- simulation --------------------------------------------------------------------------------
def simulate_annotation(features, labels, n_seeds, batch, method, seed=0, max_inspected=None, stop_recall=1.0):
    """Annotate from ground truth: start from ``n_seeds`` random artifact samples, then repeatedly
    refit the CAV and inspect the ``batch`` top-ranked unreviewed samples (best first), until
    ``stop_recall`` of the artifact samples are found (the last few can take as many rounds as all
    the others: stopping at the recall that is reported saves most of the time).

    Returns ``(inspected, found)``, one entry per inspected sample: after ``inspected[i]`` samples
    looked at (seeds count as inspected), ``found[i]`` artifact samples were identified.
    """
    labels = np.asarray(labels, dtype=bool)
    positives = np.flatnonzero(labels)
    if len(positives) < n_seeds or n_seeds < 1:
        raise UserError(f"simulation needs {n_seeds} artifact samples to seed from; the split has {len(positives)}")
    rng = np.random.default_rng(seed)
    order = list(rng.choice(positives, n_seeds, replace=False))
    reviewed = np.zeros(len(labels), dtype=bool)
    reviewed[order] = True
    max_inspected = len(labels) if max_inspected is None else min(max_inspected, len(labels))
    goal = min(len(positives), int(np.ceil(stop_recall * len(positives) - 1e-9)))
    while len(order) < max_inspected and labels[order].sum() < goal:
        scores = fit_cav(features, reviewed & labels, method).score(features)
        scores[reviewed] = -np.inf
        take = np.argsort(-scores, kind="stable")[:min(batch, max_inspected - len(order))]
        reviewed[take] = True
        order.extend(take.tolist())
    found = np.cumsum(labels[order])
    return np.arange(1, len(order) + 1), found


def random_order_curve(labels, n_seeds, inspected):
    """Expected artifact samples found when inspecting in random order after the same seeds."""
    labels = np.asarray(labels, dtype=bool)
    n_rest, pos_rest = len(labels) - n_seeds, labels.sum() - n_seeds
    extra = np.asarray(inspected) - n_seeds
    return n_seeds + extra * (pos_rest / max(n_rest, 1))


def inspected_at_recall(inspected, found, n_positive, recall):
    """Samples inspected until ``recall`` of the artifact samples were found (None if never)."""
    hit = np.flatnonzero(np.asarray(found) >= recall * n_positive)
    return int(inspected[hit[0]]) if len(hit) else None
