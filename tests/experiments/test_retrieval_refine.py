"""Iterative annotation: only a reviewer's decisions are annotations, candidates first, atomic
accept/reject with history, the CAVs of retrieval use the decisions, simulation beats random order."""
import json

import numpy as np
import pandas as pd
import pytest

from conftest import TINY_DATA
from datasets.registry import get_dataset_from_config
from experiments.sample_retrieval import refine, run_biased_sample_ranking
from utils.bias.annotation import AnnotationState, inspected_at_recall, simulate_annotation
from utils.bias.synthetic import write_synthetic_stores
from utils.config.audit import AuditConfig
from utils.config.loader import load_config
from utils.io import write_json
from utils.paths import step_dir

DATA = {**TINY_DATA, "dataset_options": {"n_train": 96, "n_val": 16, "n_test": 16},
        "artifacts": {"band_aid": {"benign": 0.4}}}


@pytest.fixture
def audit(write_config):
    path = write_config("audit", **DATA, model_name="tiny_vgg", artifact="band_aid", retrieval_top_k=6)
    config = load_config(path, AuditConfig)
    splits = get_dataset_from_config(config)
    write_synthetic_stores(config, splits, "band_aid", ["features.10"])
    return path, config, splits


def _reveal_file(config, splits):
    """Reveal outliers: three samples with a band-aid, then two without (a guess, right or wrong)."""
    labels = splits.train.artifact_labels("band_aid")
    with_it = [s for s, y in zip(splits.train.sample_ids, labels) if y][:3]
    without = [s for s, y in zip(splits.train.sample_ids, labels) if not y][:2]
    ids = with_it + without
    write_json(step_dir(config, "reveal") / "spray_class0.json",
               {"outlier_samples": [{"sample_id": s, "score": 1.0 - 0.1 * k} for k, s in enumerate(ids)]})
    return ids


def _state(config):
    return json.loads((step_dir(config, "sample_retrieval", create=False) / "band_aid"
                       / "annotation_state.json").read_text())


def test_refine_without_decisions_accepts_nothing(audit, capsys):
    """The reveal step's outliers are candidates shown first, never annotations by themselves."""
    path, config, splits = audit
    outliers = _reveal_file(config, splits)
    out = step_dir(config, "sample_retrieval", create=False)
    for _ in range(2):  # a second call without decisions changes nothing either
        result = refine.main(["--config_file", str(path)])
        assert result["accepted"] == 0 and result["candidates"]
        assert _state(config)["accepted"] == [] and _state(config)["history"] == []
        assert not (out / "annotations.json").exists()
    to_review = pd.read_csv(out / "band_aid" / "to_review.csv")
    assert list(to_review["sample_id"]) == outliers and set(to_review["source"]) == {"reveal"}
    assert (out / "band_aid" / "to_review.png").is_file()
    printed = capsys.readouterr().out
    assert "Nothing is annotated yet" in printed
    assert (f"python -m experiments.sample_retrieval.refine --config_file {path} --artifact band_aid "
            "--accept <ID> ... --reject <ID> ...") in printed
    # nothing annotated: retrieval (cav_labels: annotations by default) says how to annotate, in one line
    with pytest.raises(SystemExit) as exit_info:
        run_biased_sample_ranking.main(["--config_file", str(path)])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1
    assert f"python -m experiments.sample_retrieval.refine --config_file {path} --artifact band_aid" in err


def test_annotation_seeds_are_candidates_too(audit, write_config):
    path, config, splits = audit
    seeds = list(splits.train.sample_ids[-2:])
    seeded = write_config("seeded", **DATA, model_name="tiny_vgg", artifact="band_aid", retrieval_top_k=6,
                          config_name="audit", annotation_seeds=seeds)
    outliers = _reveal_file(config, splits)
    result = refine.main(["--config_file", str(seeded)])
    assert result["accepted"] == 0
    assert list(result["to_review"]["sample_id"]) == seeds + outliers[:4]  # seeds first, then the reveal step's
    assert list(result["to_review"]["source"]) == ["annotation_seeds"] * 2 + ["reveal"] * 4


def test_review_loop_feeds_retrieval(audit):
    """Decisions become annotations; once one is accepted a CAV ranks the rest; retrieval fits on them."""
    path, config, splits = audit
    candidates = _reveal_file(config, splits)
    out = step_dir(config, "sample_retrieval", create=False)
    refine.main(["--config_file", str(path)])
    accepted, rejected = candidates[:3], candidates[3:]
    second = refine.main(["--config_file", str(path), "--accept", *accepted, "--reject", ",".join(rejected)])
    assert second["accepted"] == 3 and not second["candidates"]
    to_review = pd.read_csv(out / "band_aid" / "to_review.csv")
    assert len(to_review) == 6 and not set(to_review["sample_id"]) & set(candidates)
    assert set(to_review["source"]) == {"cav"} and to_review["score"].is_monotonic_decreasing

    next_ids = list(to_review["sample_id"])
    refine.main(["--config_file", str(path), "--accept", next_ids[0], "--reject", f"{next_ids[1]},{next_ids[2]}"])
    refine.main(["--config_file", str(path), "--accept", next_ids[1], "--reviewer", "dermatologist"])
    state = _state(config)
    assert state["accepted"] == accepted + [next_ids[0], next_ids[1]]  # a later decision overrides
    assert state["rejected"] == rejected + [next_ids[2]]
    assert [h["source"] for h in state["history"]] == ["user", "user", "dermatologist"]
    assert json.loads((out / "annotations.json").read_text())["band_aid"] == state["accepted"]
    assert not list(out.rglob("*.tmp"))  # only whole files: no temporary files left beside them

    results = run_biased_sample_ranking.main(["--config_file", str(path)])
    assert results["label_source"] == "annotations"
    assert all(v["n_train_artifact"] == len(state["accepted"]) for v in results["variants"].values())


def test_annotation_file_of_a_person_is_taken_as_decided(audit, tmp_path, write_config):
    path, config, splits = audit
    marked = [s for s, y in zip(splits.train.sample_ids, splits.train.artifact_labels("band_aid")) if y][:2]
    annotations = tmp_path / "mine.json"
    annotations.write_text(json.dumps({"band_aid": marked}))
    own = write_config("own", **DATA, model_name="tiny_vgg", artifact="band_aid", retrieval_top_k=6,
                       config_name="audit", annotation_file=str(annotations))
    result = refine.main(["--config_file", str(own)])
    assert result["accepted"] == 2 and not result["candidates"]
    assert [h["source"] for h in _state(config)["history"]] == ["annotation_file"]


def test_seeds_an_earlier_version_accepted_unreviewed_are_withdrawn(tmp_path):
    path = tmp_path / "state.json"
    write_json(path, {"artifact": "band_aid", "accepted": ["a", "b", "c"], "rejected": ["d"], "history": [
        {"round": 0, "source": "seed:reveal", "accepted": ["a", "b"], "rejected": []},
        {"round": 1, "source": "user", "accepted": ["b", "c"], "rejected": ["d"]}]})
    state = AnnotationState.load(path, "band_aid")
    assert state.accepted == ["b", "c"] and state.rejected == ["d"] and state.n_withdrawn == 1
    assert state.history[0]["withdrawn"] and len(state.history) == 2  # kept in the log, marked


def test_unknown_id_rejected(audit, capsys):
    path, config, splits = audit
    _reveal_file(config, splits)
    with pytest.raises(SystemExit):
        refine.main(["--config_file", str(path), "--accept", "no_such_sample"])
    assert "not in the train split" in capsys.readouterr().err


def test_failed_write_keeps_previous_state(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    state = AnnotationState("band_aid")
    state.record(accept=["a"], source="seed")
    state.save(path)
    state.record(accept=["b"])
    monkeypatch.setattr(json, "dumps", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("disk full")))
    with pytest.raises(RuntimeError):
        state.save(path)
    monkeypatch.undo()
    assert AnnotationState.load(path, "band_aid").accepted == ["a"]
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_simulation_finds_planted_artifact_fast(audit):
    path, config, _ = audit
    result = refine.main(["--config_file", str(path), "--simulate"])
    assert result["inspected_per_artifact_sample"] < 2.0  # the target; random order needs ~4.5
    assert (step_dir(config, "sample_retrieval", create=False) / "band_aid" / "simulation.png").is_file()


def test_simulation_curve_is_monotone():
    rng = np.random.default_rng(0)
    labels = rng.random(120) < 0.3
    features = rng.normal(size=(120, 5)) + 3 * labels[:, None]
    inspected, found = simulate_annotation(features, labels, 3, 10, "mean")
    assert np.all(np.diff(found) >= 0) and found[-1] == labels.sum()
    assert inspected_at_recall(inspected, found, labels.sum(), 0.9) <= 1.2 * labels.sum()


def test_a_second_reviewer_at_once_is_refused_and_loses_nothing(audit, capsys):
    """The review state is read, changed and written: while another process holds the folder, refine
    stops with one line (exit 2) and the state stays as the other left it."""
    import os
    import signal

    from tests.utils.test_locks import _holder

    path, config, splits = audit
    ids = _reveal_file(config, splits)
    refine.main(["--config_file", str(path), "--accept", ids[0]])
    folder = step_dir(config, "sample_retrieval", create=False) / "band_aid"
    before = _state(config)
    holder = _holder(folder)
    try:
        capsys.readouterr()
        with pytest.raises(SystemExit) as stopped:
            refine.main(["--config_file", str(path), "--accept", ids[1]])
        err = capsys.readouterr().err.strip()
        assert stopped.value.code == 2 and len(err.splitlines()) == 1 and "is in use by another run" in err
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert _state(config) == before


def test_a_review_round_grows_with_the_split_so_the_rounds_do_not(write_config):
    """A round shows max(retrieval_top_k, annotation_round_share of the split): the demo's 2,000 training
    samples keep rounds of retrieval_top_k, 20,000 samples get 120 per round, share 0 always top_k."""
    from utils.bias.review import round_size

    config = load_config(write_config("rounds", **DATA, retrieval_top_k=16), AuditConfig)
    assert round_size(config, 2000) == 16 and round_size(config, 20000) == 120
    fixed = config.model_copy(update={"annotation_round_share": 0.0})
    assert round_size(fixed, 20000) == 16


def test_a_simulated_round_draws_no_grid_and_the_last_one_is_drawn_once(audit, monkeypatch):
    """The pipeline's simulated reviewer skips the grid of its rounds (it answers from the ground truth)
    and draws the last round's, with the titles a reviewer's round gets; a round showing nothing
    removes an earlier round's grid instead of leaving it in place."""
    from utils.bias import review as review_module
    from utils.bias.steps import prepare_step

    path, config, splits = audit
    candidates = _reveal_file(config, splits)
    ctx = prepare_step(config, "band_aid", "sample_retrieval")
    train = review_module.train_features(ctx)
    drawn = []
    monkeypatch.setattr(review_module, "sample_grid", lambda *args, **kwargs: drawn.append(args))
    result = review_module.review(ctx, train, accept=candidates[:3], reject=candidates[3:], figure=False)
    assert drawn == [] and not (ctx.out_dir / "to_review.png").exists()
    review_module.review_figure(ctx, train, result["to_review"])
    (dataset, indices, titles, target), = drawn
    shown = pd.read_csv(ctx.out_dir / "to_review.csv")
    assert [dataset.sample_ids[i] for i in indices] == list(shown["sample_id"])
    assert titles == [f"#{k + 1} {s}\n{v:.2f}" for k, (s, v) in enumerate(zip(shown["sample_id"], shown["score"]))]
    review_module.review(ctx, train, accept=list(shown["sample_id"][:1]))  # a reviewer's round draws its own
    assert len(drawn) == 2 and drawn[1][3] == target
    target.write_bytes(b"an earlier round's grid")
    review_module.review_figure(ctx, train, shown.iloc[:0])
    assert not target.exists()
