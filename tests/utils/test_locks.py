"""One run per folder: the lock names its owner, a second process is refused, a dead owner's lock is taken."""
import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from utils.errors import UserError
from utils.locks import LOCK_NAME, folder_lock


def _holder(folder):
    code = (f"import sys, time; sys.path.insert(0, {str(ROOT)!r})\nfrom utils.locks import folder_lock\n"
            f"with folder_lock({str(folder)!r}):\n    print('ready', flush=True)\n    time.sleep(600)")
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    return process


def test_a_second_process_is_refused_and_a_dead_owners_lock_is_taken_over(tmp_path):
    folder = tmp_path / "run"
    holder = _holder(folder)
    try:
        owner = json.loads((folder / LOCK_NAME).read_text())
        assert owner["pid"] == holder.pid and owner["host"] == socket.gethostname()
        with pytest.raises(UserError, match=rf"{folder} is in use by another run \(pid {holder.pid} on host "):
            with folder_lock(folder):
                pass
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # kill -9: the lock file stays behind, its lock does not
        holder.wait()
    assert (folder / LOCK_NAME).exists()
    with folder_lock(folder):
        assert json.loads((folder / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert not (folder / LOCK_NAME).exists()  # released: removed


def test_the_holder_may_lock_its_folder_again(tmp_path):
    with folder_lock(tmp_path):
        with folder_lock(tmp_path):  # e.g. the pipeline calling a step's entry point
            assert (tmp_path / LOCK_NAME).exists()
        assert (tmp_path / LOCK_NAME).exists()  # the inner release leaves the outer lock in place
    assert not (tmp_path / LOCK_NAME).exists()


def test_two_trainings_on_one_folder(write_config, tmp_path):
    """The training entry point holds its folder: a second run on it stops before touching anything."""
    from model_training.trainer import run_training
    from tests.conftest import TINY_DATA
    from utils.config import TrainingConfig, load_config

    config = load_config(write_config("busy", **TINY_DATA, num_epochs=1), TrainingConfig)
    folder = tmp_path / "outputs" / "training" / "synth_derm" / "tiny_vgg" / "busy"
    holder = _holder(folder)
    try:
        with pytest.raises(UserError, match="is in use by another run"):
            run_training(config)
        assert sorted(p.name for p in folder.iterdir()) == [LOCK_NAME]
    finally:
        holder.kill()
        holder.wait()
