"""Two CPU processes (gloo) launched by torchrun train, correct and preprocess exactly like one process
with the same global batch."""
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import torch

from tests.conftest import ROOT, assert_same_h5
from utils.checkpoint import load_checkpoint
from utils.config import AuditConfig, load_config

# tiny_vit has no BatchNorm: per-rank batch statistics (no SyncBatchNorm on CPU) would differ.
# SGD, not Adam: Adam rescales near-zero gradients, turning float noise into lr-sized steps.
DIST_CONFIG = {"dataset_name": "synth_derm", "img_size": 32, "model_name": "tiny_vit", "batch_size": 16,
               "lr": 0.05, "optimizer": "sgd", "augment": False, "seed": 0, "device": "cpu",
               "dataset_options": {"n_train": 64, "n_val": 16, "n_test": 16}}


def _torchrun(config, *extra, nproc=2, module="model_training.start_training"):
    return _torchrun_module(module, "--config_file", str(config), *extra, nproc=nproc)


def _torchrun_module(module, *args, nproc=2):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", module, *map(str, args)]


def _run(command, timeout=300):
    """Run ``command`` in its own process group; on a timeout the whole group (torchrun and its
    workers) is killed, so a hanging run fails the test instead of outliving it."""
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _run_dir(tmp_path, name):
    return tmp_path / "outputs" / "training" / "synth_derm" / "tiny_vit" / name


@pytest.mark.slow  # two torchrun launches, about half a minute
def test_dead_rank_stops_the_run_and_resume_continues(write_config, tmp_path):
    # 512 images: an epoch takes seconds, so the kill (about a second after the first last.pt) comes
    # with up to three epochs still to run, and the resume has them to run
    epochs = 4
    config = write_config("crash", **{**DIST_CONFIG, "dataset_options": {"n_train": 512, "n_val": 16, "n_test": 16}},
                          num_epochs=epochs)
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
    assert stopped_at < epochs
    resumed = _run(_torchrun(config, "--resume"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    final = load_checkpoint(last)
    assert final["epoch"] == epochs and len(final["history"]) == epochs


# --- one torchrun launch trains, corrects twice and preprocesses -------------------------------------
# (each step's worker start-up would otherwise cost more than the step itself)
# tiny_vgg with every BatchNorm in eval mode: per-sample computations, so the ranks' halves of a
# batch give exactly the gradients of the whole batch
CORRECTION_CONFIG = {**DIST_CONFIG, "model_name": "tiny_vgg", "img_size": 16, "artifact": "band_aid",
                     "layer_name": "features.6", "batch_size": 16, "num_epochs": 2, "lr": 0.01,
                     "batchnorm_statistics": "frozen", "dataset_options": {"n_train": 32, "n_val": 16, "n_test": 16}}
# lamb: the untrained model's RR-ClArC penalty is ~1e-8; it must move the weights to be tested at all.
# ISNet's C1/C2 are tuned on the training heatmaps (every rank a share).
CORRECTIONS = {"RRClarc": {"method": "RRClarc", "criterion": "all_logits_random", "lamb": 1e6},
               "ISNet": {"method": "ISNet", "variant": "selective", "P": 0.7}}
# 20 training rows in batches of 8: rank 0 computes two batches, rank 1 the short last one; the 4
# validation rows are one batch, so rank 1's validation shard is empty
PREPROCESSING_CONFIG = {"dataset_name": "synth_derm", "img_size": 16, "model_name": "tiny_vgg", "batch_size": 8,
                        "device": "cpu", "splits": ["train", "val"],
                        "dataset_options": {"n_train": 20, "n_val": 4, "n_test": 4}}
CORRECTION_ENTRY = "experiments.mitigation_experiments.start_model_correction"
PREPROCESSING_ENTRY = "experiments.preprocessing.run_preprocessing"


@pytest.fixture(scope="module")  # its tests are marked slow: one torchrun launch of four steps
def two_process_steps(tmp_path_factory):
    """Configs ``single_*`` (for references computed in the tests, in this process) and ``double_*``,
    the latter run by one 2-process torchrun launch: training, both corrections, preprocessing."""
    import yaml

    from models import get_model
    from utils.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("steps")
    torch.manual_seed(0)
    ckpt = save_checkpoint(root / "tiny_vgg.pt", get_model("tiny_vgg", 2), "tiny_vgg", 2)
    steps = {"training": ("model_training.start_training", {**DIST_CONFIG, "num_epochs": 2}),
             **{name: (CORRECTION_ENTRY, {**CORRECTION_CONFIG, **values}) for name, values in CORRECTIONS.items()},
             "preprocessing": (PREPROCESSING_ENTRY, PREPROCESSING_CONFIG)}
    configs = {}
    for name, (_, values) in steps.items():
        for kind in ("single", "double"):
            path = root / f"{kind}_{name}.yaml"
            path.write_text(yaml.safe_dump({**values, "ckpt_path": str(ckpt), "output_dir": str(root / "outputs")}))
            configs[kind, name] = path
    launch = [arg for name, (module, _) in steps.items() for arg in (module, configs["double", name])]
    result = _run(_torchrun_module("tests.model_training.run_steps", *launch))
    return configs, result


def _launched(result):
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
def test_two_processes_match_one(two_process_steps):
    from model_training.trainer import run_training, training_dir
    from utils.config import TrainingConfig

    configs, result = two_process_steps
    _launched(result)
    single = load_config(configs["single", "training"], TrainingConfig)
    run_training(single)  # in this process: no torchrun
    double = load_config(configs["double", "training"], TrainingConfig)
    a = load_checkpoint(training_dir(single) / "checkpoints" / "last.pt")
    b = load_checkpoint(training_dir(double) / "checkpoints" / "last.pt")
    losses_a = [row["train_loss"] for row in a["history"]]
    losses_b = [row["train_loss"] for row in b["history"]]
    assert losses_a == pytest.approx(losses_b, rel=1e-5)
    for key, value in a["model_state_dict"].items():
        assert torch.allclose(value, b["model_state_dict"][key], atol=1e-5), key


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(CORRECTIONS))
def test_two_process_correction_matches_one(two_process_steps, method):
    from model_training.corrections.run import corrected_checkpoint_path, run_correction
    from utils.config.mitigation import MitigationConfig

    configs, result = two_process_steps
    _launched(result)
    assert result.stdout.count(f"{method} on synth_derm") == 1  # rank 0 alone reports (and writes)
    single = load_config(configs["single", method], MitigationConfig)
    _, expected = run_correction(single)  # in this process: no torchrun
    double = corrected_checkpoint_path(load_config(configs["double", method], MitigationConfig))
    got, last = load_checkpoint(double), load_checkpoint(double.with_name("last.pt"))
    assert [row["train_loss"] for row in last["history"]] == pytest.approx(
        [row["train_loss"] for row in expected["history"]], rel=1e-5)
    reference = load_checkpoint(corrected_checkpoint_path(single))
    for key, value in reference["model_state_dict"].items():
        assert torch.allclose(value, got["model_state_dict"][key], atol=1e-5), key
    for key, value in reference["correction"]["state"].items():  # the same CAV
        assert torch.allclose(value, got["correction"]["state"][key], atol=1e-6), key


@pytest.mark.slow
def test_distributed_preprocessing_writes_the_single_process_file(two_process_steps):
    from utils.feature_store import FeatureStore, store_path
    from utils.preprocessing import preprocess

    configs, result = two_process_steps
    _launched(result)
    single = load_config(configs["single", "preprocessing"], AuditConfig)
    preprocess(single, progress=False)
    double = load_config(configs["double", "preprocessing"], AuditConfig)
    for split in ("train", "val"):
        assert_same_h5(store_path(single, split), store_path(double, split))
        with FeatureStore(store_path(double, split)) as store:  # later steps read it as a finished store
            assert len(store.sample_ids) == {"train": 20, "val": 4}[split]
    assert not list(store_path(double, "train").parent.glob(".*.h5"))  # shards merged and removed
