"""Bad configs: one line on stderr naming file and key, exit code 2, no traceback."""
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from utils.config import TrainingConfig, load_config
from utils.errors import ConfigError

BROKEN = [
    # (yaml text, key named in the message, fragment of the message)
    ("model_name: tiny_vgg\nnum_epoch: 3\n", "'num_epoch'", "did you mean 'num_epochs'"),
    ("lr: fast\n", "'lr'", "valid number"),
    ("model_name: resnet1000\n", "'model_name'", "one of"),
    ("dataset_name: synth_derm\nartifacts: {band_aid: {benign: 1.5}}\n", "'artifacts'", "probabilities in [0, 1]"),
    ("optimizer: rmsprop\n", "'optimizer'", "'sgd', 'adam' or 'adamw'"),
    ("batch_size: [64\n", "'line", "valid YAML"),
]


@pytest.mark.parametrize("text,key,fragment", BROKEN)
def test_broken_config_message(tmp_path, text, key, fragment):
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, TrainingConfig)
    message = str(info.value)
    assert message.startswith(f"config error in {path}: {key}")
    assert fragment in message
    assert "\n" not in message


@pytest.mark.parametrize("text,key,fragment", BROKEN[:3])
def test_entry_point_exits_2_with_one_line(tmp_path, text, key, fragment):
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    result = subprocess.run([sys.executable, "-m", "model_training.start_training", "--config_file", str(path)],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0] and key in lines[0]
    assert "Traceback" not in result.stderr


def test_missing_config_file_names_full_path(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=str(missing.resolve())):
        load_config(missing, TrainingConfig)


def test_milestones_string_and_defaults(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("milestones: '3,5'\n")
    config = load_config(path, TrainingConfig)
    assert config.milestones == [3, 5]
    assert config.config_name == "ok"
