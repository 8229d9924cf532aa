"""The config generators are modules run from the repository root (``python -m config_files.<step>.<name>``).

None edits ``sys.path`` to run as a plain script; each exposes ``main``; and one run as a module in a
scratch copy of ``config_files/`` writes its committed YAML files byte for byte. (That the configs of
the published settings are what their generators write is ``tests/test_committed_configs.py``.)
"""
import importlib
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

CONFIG_FILES = ROOT / "config_files"
GENERATORS = sorted(CONFIG_FILES.rglob("config_generator_*.py"))


def _module(path):
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def test_no_sys_path_edits_under_config_files():
    edited = [str(p.relative_to(ROOT)) for p in CONFIG_FILES.rglob("*.py") if "sys.path" in p.read_text()]
    assert not edited, f"run generators with python -m from the repository root instead: {edited}"


@pytest.mark.parametrize("path", GENERATORS, ids=_module)
def test_generator_is_a_module_with_main(path):
    assert callable(importlib.import_module(_module(path)).main)


def test_generator_runs_as_a_module_and_writes_the_committed_files(tmp_path):
    # the copy comes first on sys.path (python -m puts the working folder there), the rest of the
    # repository comes from PYTHONPATH; the generator writes beside itself, i.e. into the copy
    shutil.copytree(CONFIG_FILES, tmp_path / "config_files", ignore=shutil.ignore_patterns("__pycache__"))
    out_dir = tmp_path / "config_files" / "training" / "synth_derm"
    shutil.rmtree(out_dir)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run([sys.executable, "-m", "config_files.training.config_generator_training_synth_derm"],
                          cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    committed = {p.name: p.read_bytes() for p in (CONFIG_FILES / "training" / "synth_derm").glob("*.yaml")}
    assert committed and {p.name: p.read_bytes() for p in out_dir.glob("*.yaml")} == committed
