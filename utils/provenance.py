"""Where a measured number comes from: date, commit, CPU and torch, recorded beside results that are shown
to people (benchmarks, the README's numbers). Training is deterministic on one machine, but CPUs with other
instruction sets take other kernels and give slightly different models, so the CPU is part of the record."""
import datetime
import subprocess
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _git(*args):
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def provenance() -> dict:
    """The record of this run: date, commit (``None`` outside a git checkout), whether the checkout had
    uncommitted changes, CPU instruction set and thread count, torch version."""
    commit = _git("rev-parse", "--short", "HEAD")
    return {"date": datetime.date.today().isoformat(), "commit": commit,
            "uncommitted_changes": bool(_git("status", "--porcelain", "--untracked-files=no")) if commit else None,
            "cpu": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
            "torch": torch.__version__}


def stamp(record: dict, runs: str) -> str:
    """One line naming the record, for a generated block: ``runs`` says which seeds or "one run"."""
    commit = record.get("commit") or "not recorded"
    if record.get("uncommitted_changes"):
        commit += " with uncommitted changes"
    return (f"_Measured {record.get('date', 'on a date not recorded')}, commit {commit}, CPU {record.get('cpu', '?')} "
            f"with {record.get('threads', '?')} threads, torch {record.get('torch', '?')}; {runs}._")
