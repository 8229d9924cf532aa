"""The annotation rounds in the browser, through the files ``refine`` reads and writes.

A round is the list ``refine`` shows: ``to_review.csv`` of the artifact's folder, written by
:func:`utils.bias.review.review` (refine's own function) whenever a round is computed. The browser
shows that list, records each click as a decision in the same ``annotation_state.json`` (same format,
written atomically, with time stamp and reviewer) and re-exports the annotation file, as ``refine
--accept/--reject`` does; "next round" calls the same ``review`` without decisions, which refits the
CAV on the accepted samples and writes the next list. The command line and the browser can therefore
be mixed: whichever wrote the last round, the other shows it, and both rank by the same decisions.

Each click is one entry of the history (a round of ``refine`` with one id). The list stays as it is
until the next round is asked for, so a reviewer can go through it in order.
"""
import threading

import numpy as np
import pandas as pd

from utils.bias.annotation import (annotation_path, export_annotations, load_or_start_state, read_annotations,
                                   state_path)
from utils.bias.review import review, train_features
from utils.errors import UserError
from utils.locks import folder_lock


class ReviewSession:
    """The review of ``ctx.artifact`` (``ctx``: :class:`utils.bias.steps.StepContext` of sample_retrieval)."""

    def __init__(self, ctx, reviewer="user"):
        self.ctx, self.reviewer = ctx, reviewer
        self.train = train_features(ctx)
        self.known = set(self.train.sample_ids)
        # folder_lock keeps other processes out; threads of this server share its process, so they
        # take turns here (folder_lock lets a process re-enter a folder it holds)
        self._lock = threading.Lock()

    @property
    def artifact(self):
        return self.ctx.artifact

    @property
    def round_path(self):
        return self.ctx.out_dir / "to_review.csv"

    def current_round(self) -> pd.DataFrame:
        """The list to review now: the last one ``refine`` or the browser wrote, else a new one."""
        if not self.round_path.is_file():
            return self.next_round()
        frame = pd.read_csv(self.round_path, dtype={"sample_id": str})
        return frame[frame["sample_id"].isin(self.known)].reset_index(drop=True)

    def next_round(self) -> pd.DataFrame:
        """Refit on the decisions so far and write the next list (``refine`` without decisions)."""
        with self._lock:
            return review(self.ctx, self.train, reviewer=self.reviewer)["to_review"]

    def decide(self, sample_id, accept: bool):
        """Record one decision (a later one on the same sample overrides it); returns the history entry."""
        if sample_id not in self.known:
            raise UserError(f"{sample_id} is not in the train split")
        config, artifact = self.ctx.config, self.artifact
        with self._lock, folder_lock(self.ctx.out_dir):
            state = load_or_start_state(config, artifact, self.train.sample_ids)
            entry = state.record(accept=[sample_id] if accept else [], reject=[] if accept else [sample_id],
                                 source=self.reviewer)
            state.save(state_path(config, artifact))
            # the file retrieval and localization read follows the state, as after a refine round
            if state.accepted or artifact in read_annotations(annotation_path(config)):
                export_annotations(annotation_path(config), artifact, state.accepted)
        return entry

    def state(self):
        return load_or_start_state(self.ctx.config, self.artifact, self.train.sample_ids)


def annotation_curve(history):
    """``(inspected, found)`` after each decision of the history: samples decided so far and how many of
    them are accepted (an overridden decision counts once)."""
    decided, accepted, inspected, found = set(), set(), [], []
    for entry in history:
        if entry.get("withdrawn"):
            continue
        for sid in entry["accepted"]:
            decided.add(sid)
            accepted.add(sid)
        for sid in entry["rejected"]:
            decided.add(sid)
            accepted.discard(sid)
        inspected.append(len(decided))
        found.append(len(accepted))
    return np.array(inspected, dtype=int), np.array(found, dtype=int)
