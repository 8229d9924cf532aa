import os

import pytest

from utils.io import atomic_path, read_json, write_json


def test_atomic_write_replaces_the_file_with_the_usual_permissions(tmp_path):
    path = tmp_path / "out" / "result.json"
    write_json(path, {"a": 1})
    write_json(path, {"a": 2})
    assert read_json(path) == {"a": 2}
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # readable by others like any output, not mkstemp's 0600
    assert [p.name for p in path.parent.iterdir()] == ["result.json"]


def test_a_failed_write_leaves_the_earlier_result_and_no_temporary_file(tmp_path):
    path = tmp_path / "result.json"
    write_json(path, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert read_json(path) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_json_outputs_are_strict_json(tmp_path):
    """NaN and infinities are written as null (RFC 8259; jq and browsers read the file); numpy values too."""
    import json

    import numpy as np

    from utils.io import nan_for_null

    path = tmp_path / "metrics.json"
    write_json(path, {"auroc": float("nan"), "ratio": np.float32(np.inf), "scores": np.array([1.0, np.nan]),
                      "n": np.int64(3), "note": None})

    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    strict = json.loads(path.read_text(), parse_constant=refuse)
    assert strict == {"auroc": None, "ratio": None, "scores": [1.0, None], "n": 3, "note": None}
    back = nan_for_null(read_json(path))
    assert np.isnan(back["auroc"]) and back["scores"][0] == 1.0 and np.isnan(back["scores"][1]) and back["n"] == 3


def test_an_atomic_write_is_flushed_to_disk_before_the_rename(tmp_path, monkeypatch):
    """After a power loss the target holds the old or the new content, never an empty file: the temporary
    file is fsynced before it replaces the target."""
    import utils.io as io_module

    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(io_module.os, "fsync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))),
                                                           real_fsync(fd)))
    monkeypatch.setattr(io_module.os, "replace", lambda a, b: (events.append(("replace", str(a))), real_replace(a, b)))
    write_json(tmp_path / "result.json", {"a": 1})
    (_, synced), (_, renamed) = events[0], events[1]
    assert events[0][0] == "fsync" and events[1][0] == "replace" and synced == renamed


def test_secrets_are_redacted_in_every_written_config(tmp_path):
    import yaml

    from utils.io import write_yaml

    values = {"wandb_api_key": "sk-live-123", "nested": {"hub_token": "t0k", "db_password": "pw", "lr": 0.1},
              "client_secret": None}
    write_json(tmp_path / "a.json", values)
    write_yaml(tmp_path / "a.yaml", values)
    for text in ((tmp_path / "a.json").read_text(), (tmp_path / "a.yaml").read_text()):
        assert "sk-live-123" not in text and "t0k" not in text and "pw" not in text
    assert yaml.safe_load((tmp_path / "a.yaml").read_text()) == {
        "wandb_api_key": "***", "nested": {"hub_token": "***", "db_password": "***", "lr": 0.1}, "client_secret": None}
