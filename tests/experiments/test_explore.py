"""The explorer without a browser: one-line errors for a step that has not run, the thumbnail cache,
the annotation curve, and a review round through the explorer's session ranking exactly as ``refine``
does (the same check runs in the browser in ``test_explore_browser.py``)."""
import json
import socket

import numpy as np
import pandas as pd
import pytest
import yaml

import explore_audit
from experiments import explore
from experiments.sample_retrieval import refine
from utils.config import AuditConfig, load_config
from utils.errors import UserError
from utils.explore.decisions import annotation_curve
from utils.explore.thumbnails import ThumbnailCache, store_key
from utils.feature_store import store_path
from utils.paths import step_dir


@pytest.fixture(scope="session")
def audit(tmp_path_factory):
    return explore_audit.build(tmp_path_factory.getbasetemp() / "explore_audit")


def _one_line_exit(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        explore.main(argv)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1, err
    return err


def test_missing_preprocessing_names_the_step(write_config, capsys):
    path = write_config("fresh", **explore_audit.AUDIT)
    err = _one_line_exit(capsys, ["--config_file", str(path)])
    assert err.startswith(f"preprocessing has not run for {path}")
    assert f"`python -m experiments.preprocessing.run_preprocessing --config_file {path}`" in err


def test_missing_reveal_names_the_step(audit, tmp_path, capsys):
    path = explore_audit.copy(audit, tmp_path)
    config = load_config(path, AuditConfig)
    for result in step_dir(config, "reveal", create=False).glob("spray_class*.json"):
        result.unlink()
    err = _one_line_exit(capsys, ["--config_file", str(path)])
    assert "the reveal step (SpRAy) has not run" in err
    assert f"`python -m experiments.preprocessing.run_spray_preprocessing --config_file {path}`" in err


def test_pipeline_config_that_never_ran_names_the_pipeline(tmp_path, capsys):
    path = tmp_path / "pipe.yaml"
    path.write_text(yaml.safe_dump({"dataset_name": "synth_derm", "output_dir": str(tmp_path / "out"),
                                    "audit": {"heatmap_size": 16}}))
    err = _one_line_exit(capsys, ["--config_file", str(path)])
    assert "has not run its preprocess and reveal steps" in err
    assert f"`python -m experiments.run_pipeline --config_file {path}`" in err


def test_bad_config_key_is_one_line(write_config, capsys):
    path = write_config("typo", **explore_audit.AUDIT, spray_default_clusterin="kmeans_2")
    err = _one_line_exit(capsys, ["--config_file", str(path)])
    assert "spray_default_clusterin" in err and "did you mean 'spray_default_clustering'" in err


def test_busy_port_is_one_line(audit):
    from utils.explore.app import create_app, open_audit
    from utils.explore.server import start_server

    app = create_app(*open_audit(audit))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UserError, match=f"port {port} on 127.0.0.1 is in use; pass --port"):
            start_server(app, "127.0.0.1", port)


def test_thumbnails_are_drawn_once_and_keyed_by_the_store(audit, tmp_path):
    from PIL import Image

    from utils.explore.app import open_audit

    calls = []
    cache = ThumbnailCache(tmp_path / "thumbs")

    def render():
        calls.append(1)
        return Image.new("RGB", (4, 4))

    first = cache.get(("a", "b.png"), render)
    stamp = first.stat().st_mtime_ns
    assert cache.get(("a", "b.png"), render) == first and calls == [1] and first.stat().st_mtime_ns == stamp
    # a real sample: its image has the data set's size, its heatmap the store's heatmap_size
    data, _ = open_audit(audit)
    image, heatmap = data.sample_png("train", "image", 3), data.sample_png("train", "heatmap", 3)
    assert Image.open(image).size == (32, 32) and Image.open(heatmap).size == (16, 16)
    assert image.parent.parent.name == f"train-{store_key(store_path(data.config, 'train'))}"
    with pytest.raises(KeyError):
        data.sample_png("train", "image", data.n_samples)


def test_annotation_curve_counts_each_sample_once():
    history = [{"accepted": ["a", "b"], "rejected": ["c"]}, {"accepted": [], "rejected": ["b"]},
               {"accepted": ["d"], "rejected": [], "withdrawn": "x"}, {"accepted": ["c"], "rejected": []}]
    inspected, found = annotation_curve(history)
    assert inspected.tolist() == [3, 3, 3] and found.tolist() == [2, 1, 2]


def _decide_like_a_reviewer(frame, truth):
    """Accept the shown samples that carry the artifact, reject the others (accept the first if none does:
    the next round then has a CAV)."""
    shown = list(frame["sample_id"])
    accept = [s for s in shown if truth[s]] or shown[:1]
    return accept, [s for s in shown if s not in accept]


def test_session_rounds_rank_as_refine(audit, tmp_path):
    """Two full rounds decided one click at a time through the explorer's session, and the same decisions
    given to refine on a copy of the audit: the same next rounds (ids, order, scores) and the same state."""
    from utils.explore.app import open_audit

    mine, theirs = explore_audit.copy(audit, tmp_path / "browser"), explore_audit.copy(audit, tmp_path / "cli")
    data, session = open_audit(mine, reviewer="tester")
    truth = dict(zip(data.splits.train.sample_ids, data.splits.train.artifact_labels("band_aid")))
    shown = session.current_round()
    pd.testing.assert_frame_equal(shown, refine.main(["--config_file", str(theirs)])["to_review"])
    for _ in range(2):
        accept, reject = _decide_like_a_reviewer(shown, truth)
        for sid in list(shown["sample_id"]):
            session.decide(sid, sid in accept)
        shown = session.next_round()
        expected = refine.main(["--config_file", str(theirs), "--accept", *accept, "--reject", *reject])["to_review"]
        assert list(shown["sample_id"]) == list(expected["sample_id"]) and set(shown["source"]) == {"cav"}
        np.testing.assert_allclose(shown["score"], expected["score"], rtol=1e-9, atol=1e-12)
        ours, cli = (_state(load_config(p, AuditConfig)) for p in (mine, theirs))
        assert set(ours["accepted"]) == set(cli["accepted"]) and set(ours["rejected"]) == set(cli["rejected"])
    assert {e["source"] for e in ours["history"]} == {"tester"}
    assert len(ours["history"]) == 2 * 6  # one entry per click


def _state(config):
    return json.loads((step_dir(config, "sample_retrieval", create=False) / "band_aid"
                       / "annotation_state.json").read_text())
