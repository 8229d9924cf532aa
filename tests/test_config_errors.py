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


def test_missing_checkpoint_names_the_training_command(tmp_path, capsys):
    """An audit step started before training: one line with the command that writes the checkpoint."""
    import yaml

    from experiments.preprocessing.run_preprocessing import main

    ckpt = tmp_path / "outputs/training/synth_derm/tiny_vgg/tiny_vgg_adam_lr0.003/checkpoints/best.pt"
    path = tmp_path / "audit.yaml"
    path.write_text(yaml.safe_dump({"ckpt_path": str(ckpt), "output_dir": str(tmp_path / "outputs")}))
    with pytest.raises(SystemExit) as exit_info:
        main(["--config_file", str(path)])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"config error in {path}: 'ckpt_path': checkpoint not found: {ckpt}")
    assert "python -m model_training.start_training --config_file" in err
    assert "config_files/training/synth_derm/tiny_vgg_adam_lr0.003.yaml" in err


def test_training_command_read_off_the_checkpoint_path(tmp_path):
    from utils.config import AuditConfig
    from utils.errors import UserError
    from utils.missing_checkpoint import require_checkpoint, training_command

    run = tmp_path / "training/synth_derm/tiny_vgg/{}/checkpoints/best.pt"
    assert training_command(run.as_posix().format("synth_derm")).startswith(
        "python -m experiments.run_pipeline --config_file")  # the demo's folder: its pipeline trains it
    assert "<training config>" in training_command(run.as_posix().format("not_a_committed_config"))
    # an _attacked run is configured in its base data set's folder, told by dataset_name
    attacked = tmp_path / "training/isic_attacked/vgg16/vgg16_sgd_lr0.005_attacked/checkpoints/best.pt"
    assert training_command(attacked) == ("python -m model_training.start_training --config_file "
                                          "config_files/training/isic/vgg16_sgd_lr0.005_attacked.yaml")
    assert "<training config>" in training_command(tmp_path / "model.pt")
    config = AuditConfig(config_name="x", ckpt_path=str(tmp_path / "model.pt"))  # no file: UserError, not config
    with pytest.raises(UserError, match="'ckpt_path': checkpoint not found"):
        require_checkpoint(config)
    (tmp_path / "model.pt").write_bytes(b"")
    require_checkpoint(config)  # present: no error (reading it is load_checkpoint's job)


def test_committed_audit_configs_say_where_cav_labels_come_from():
    """The step-by-step configs fit CAVs on annotations; the layer sweep (a controlled experiment)
    says ground_truth explicitly."""
    import yaml

    from utils.config import AuditConfig

    paths = sorted((ROOT / "config_files" / "revealing").rglob("*.yaml"))
    assert paths
    for path in paths:
        raw = yaml.safe_load(path.read_text())
        expected = "ground_truth" if "_features." in path.name else "annotations"
        assert raw.get("cav_labels") == expected, path.name
        assert load_config(path, AuditConfig).cav_labels == expected
    assert AuditConfig(config_name="x").cav_labels == "annotations"  # the default, everywhere
