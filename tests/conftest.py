"""Shared fixtures: tiny configs written to a temporary folder, outputs kept out of the repo."""
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Tiny data: enough to learn something in a few seconds on 2 cores.
TINY_DATA = {"dataset_name": "synth_derm", "img_size": 32,
             "dataset_options": {"n_train": 96, "n_val": 32, "n_test": 32}}


@pytest.fixture
def write_config(tmp_path):
    """Write a YAML config into tmp_path; outputs go to tmp_path/outputs."""

    def write(name="config", **values):
        values.setdefault("output_dir", str(tmp_path / "outputs"))
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(values))
        return path

    return write


def h5_contents(path):
    """Every dataset (values) and every group's attributes of an HDF5 file, to compare two files."""
    import h5py

    out = {}

    def visit(name, obj):
        if hasattr(obj, "dtype"):
            out[name] = obj[:]
        out[f"attrs of /{name}"] = {key: obj.attrs[key] for key in obj.attrs}

    with h5py.File(path, "r") as handle:
        out["attrs of /"] = {key: handle.attrs[key] for key in handle.attrs}
        handle.visititems(visit)
    return out


def assert_same_h5(expected_path, got_path):
    """Two HDF5 files hold the same datasets (values and dtypes) and attributes."""
    import numpy as np

    expected, got = h5_contents(expected_path), h5_contents(got_path)
    assert expected.keys() == got.keys()
    for name, value in expected.items():
        if isinstance(value, dict):
            assert value.keys() == got[name].keys(), name
            for key in value:
                np.testing.assert_array_equal(value[key], got[name][key], err_msg=f"{name}: {key}")
        else:
            assert value.dtype == got[name].dtype, name
            np.testing.assert_array_equal(value, got[name], err_msg=name)


def train_tiny_vgg(split, img_size, ckpt, epochs, milestones=(), finish=None):
    """Save a tiny_vgg trained on ``split`` held in memory (no augmentation, Adam 3e-3, batches of 32):
    seconds, for tests that need a model that has learned the data. ``finish(model, x)`` runs
    before saving (e.g. to recompute BatchNorm statistics)."""
    import torch

    from models import get_model
    from utils.checkpoint import save_checkpoint

    split.augment = False
    x = torch.stack([split[i][0] for i in range(len(split))])
    y = torch.as_tensor(split.labels)
    torch.manual_seed(0)
    model = get_model("tiny_vgg", 2, img_size=img_size)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimiser, list(milestones), 0.1)
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(x)).split(32):
            loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        schedule.step()
    if finish is not None:
        finish(model, x)
    save_checkpoint(ckpt, model.eval(), "tiny_vgg", 2)


def pytest_terminal_summary(terminalreporter):
    """The fault-injection suite's figures: kill points tried per step and how many resumed identically."""
    from tests.reliability.harness import KILL_RESULTS

    if not KILL_RESULTS:
        return
    terminalreporter.section("kill -9 trials (tests/reliability)")
    for step, points in KILL_RESULTS.items():
        terminalreporter.write_line(f"{step}: {len(points['tried'])} kill points tried, {len(points['identical'])} "
                                    f"resumed to identical outputs (events {', '.join(map(str, points['tried']))})")


@pytest.fixture(autouse=True)
def _corrections_compute_afresh():
    """Each test computes what corrections share within a process (ISNet's C1/C2, CAV features) itself: a
    test that patches how they are computed never reads another test's result."""
    from model_training.corrections.shared import forget

    forget()
    yield
