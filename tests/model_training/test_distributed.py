"""Two CPU processes (gloo) launched by torchrun train exactly like one process with the same global batch."""
import subprocess
import sys
import time

import psutil
import pytest
import torch

from tests.conftest import ROOT
from utils.checkpoint import load_checkpoint

# tiny_vit has no BatchNorm: per-rank batch statistics (no SyncBatchNorm on CPU) would differ.
# SGD, not Adam: Adam rescales near-zero gradients, turning float noise into lr-sized steps.
DIST_CONFIG = {"dataset_name": "synth_derm", "img_size": 32, "model_name": "tiny_vit", "batch_size": 16,
               "lr": 0.05, "optimizer": "sgd", "augment": False, "seed": 0, "device": "cpu",
               "dataset_options": {"n_train": 64, "n_val": 16, "n_test": 16}}


def _torchrun(config, *extra, nproc=2):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "model_training.start_training", "--config_file", str(config), *extra]


def _run_dir(tmp_path, name):
    return tmp_path / "outputs" / "training" / "synth_derm" / "tiny_vit" / name


def test_two_processes_match_one(write_config, tmp_path):
    single = write_config("single", **DIST_CONFIG, num_epochs=2)
    double = write_config("double", **DIST_CONFIG, num_epochs=2)
    subprocess.run([sys.executable, "-m", "model_training.start_training", "--config_file", str(single)],
                   cwd=ROOT, check=True, capture_output=True)
    result = subprocess.run(_torchrun(double), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    a = load_checkpoint(_run_dir(tmp_path, "single") / "checkpoints" / "last.pt")
    b = load_checkpoint(_run_dir(tmp_path, "double") / "checkpoints" / "last.pt")
    losses_a = [row["train_loss"] for row in a["history"]]
    losses_b = [row["train_loss"] for row in b["history"]]
    assert losses_a == pytest.approx(losses_b, rel=1e-5)
    for key, value in a["model_state_dict"].items():
        assert torch.allclose(value, b["model_state_dict"][key], atol=1e-5), key


def test_dead_rank_stops_the_run_and_resume_continues(write_config, tmp_path):
    config = write_config("crash", **{**DIST_CONFIG, "dataset_options": {"n_train": 512, "n_val": 16, "n_test": 16}},
                          num_epochs=6)
    process = subprocess.Popen(_torchrun(config), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last = _run_dir(tmp_path, "crash") / "checkpoints" / "last.pt"
    deadline = time.time() + 240
    while not last.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    assert last.exists(), "the run never wrote a checkpoint"
    workers = [p for p in psutil.Process(process.pid).children(recursive=True)
               if p.environ().get("RANK") == "1"]
    assert workers
    workers[0].kill()
    _, stderr = process.communicate(timeout=180)  # no hang: torchrun stops every rank
    assert process.returncode != 0
    assert "exitcode" in stderr and "-9" in stderr
    stopped_at = load_checkpoint(last)["epoch"]
    assert stopped_at < 6
    resumed = subprocess.run(_torchrun(config, "--resume"), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    final = load_checkpoint(last)
    assert final["epoch"] == 6 and len(final["history"]) == 6
