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
