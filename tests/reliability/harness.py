"""Fault injection: run a step in a separate process and kill it with SIGKILL at a chosen point.

A *point* is the k-th event of the run, counted over the events where a crash would hurt most:

* the rename of every atomic write (the temporary file is written and flushed, not yet renamed),
* every batch appended to a preprocessing store,
* every optimizer step of training and correction.

The process kills itself with ``SIGKILL`` when the k-th event comes, which is ``kill -9`` at a point
that is the same on every run (the steps are deterministic), so a seeded draw of k over the number
of events of an uninterrupted run gives reproducible random kill points. Children are forked from a
``forkserver`` that has imported the framework once: a trial costs its work, not an interpreter start.
"""
import importlib
import multiprocessing
import os
import signal
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

KILL_RESULTS = {}  # step -> {'tried': [points], 'identical': [points]}, reported at the end of the session
PRELOAD = ["torch", "h5py", "sklearn", "experiments.run_pipeline", "model_training.trainer",
           "model_training.corrections.run", "utils.preprocessing", "utils.pipeline.steps"]


class Events:
    """Counts the events of a run (in this process); calls ``on_event(count)`` after each."""

    def __init__(self, on_event=None):
        self.count, self.on_event = 0, on_event

    def tick(self):
        self.count += 1
        if self.on_event is not None:
            self.on_event(self.count)


@contextmanager
def counting(events: Events):
    """Install the event hooks for the ``with`` block."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    from utils.feature_store import StoreWriter

    real_replace, real_append = os.replace, StoreWriter.append

    def replace(*args, **kwargs):
        events.tick()
        return real_replace(*args, **kwargs)

    def append(self, arrays):
        real_append(self, arrays)
        events.tick()

    handle = register_optimizer_step_post_hook(lambda *_: events.tick())
    os.replace, StoreWriter.append = replace, append
    try:
        yield events
    finally:
        os.replace, StoreWriter.append = real_replace, real_append
        handle.remove()


def _call(target, args):
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)(*args)


def _threads():
    import torch
    return torch.get_num_threads()


def _in_child(target, args, threads, on_event):
    """``target`` in a child, with the test process's CPU thread count: a different count sums floats in
    another order, and the killed run's partial work must be what the test process would have computed."""
    import torch
    torch.set_num_threads(threads)
    with counting(Events(on_event)):
        _call(target, args)


def _child(target, args, kill_at, threads):
    def die(count):
        if count == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    _in_child(target, args, threads, die)


def _paused_child(target, args, pause_at, signals, threads):
    def pause(count):
        if count == pause_at:  # say so, then wait until the test lets the run go on
            (signals / "paused").write_text(str(os.getpid()))
            while not (signals / "go").exists():
                time.sleep(0.02)

    _in_child(target, args, threads, pause)


class PausedRun:
    """A run of ``target`` in a child process that stops at event ``pause_at`` until :meth:`resume`: a live
    process in the middle of its work, for tests of what a second run on the same folder does."""

    def __init__(self, target, args, pause_at, signals, timeout=120):
        self.signals = Path(signals)
        self.signals.mkdir(parents=True, exist_ok=True)
        self.process = _context().Process(target=_paused_child, args=(target, tuple(args), pause_at, self.signals,
                                                                     _threads()))
        self.process.start()
        deadline = time.time() + timeout
        while not (self.signals / "paused").exists():
            if not self.process.is_alive() or time.time() > deadline:
                self.process.kill()
                raise RuntimeError(f"{target} ended or hung before event {pause_at}")
            time.sleep(0.02)
        self.pid = int((self.signals / "paused").read_text())

    def resume(self, timeout=120):
        """Let the run finish; returns its exit code."""
        (self.signals / "go").touch()
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            raise TimeoutError("the resumed run did not finish")
        return self.process.exitcode


_CONTEXT = None


def _context():
    global _CONTEXT  # one forkserver for the test session: it imports the framework once
    if _CONTEXT is None:
        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(PRELOAD)
    return _CONTEXT


def run_killed(target, args, kill_at, timeout=300):
    """Run ``target`` (``"module:function"``) with ``args`` in a child process killed at event ``kill_at``;
    returns the child's exit code (``-9`` when the kill came)."""
    process = _context().Process(target=_child, args=(target, tuple(args), kill_at, _threads()))
    process.start()
    process.join(timeout)
    if process.is_alive():
        process.kill()
        process.join()
        raise TimeoutError(f"{target} did not reach event {kill_at} within {timeout} s")
    return process.exitcode


def count_events(target, args):
    """Run ``target`` here, uninterrupted; returns (its result, the number of events)."""
    events = Events()
    with counting(events):
        result = _call(target, args)
    return result, events.count


def kill_points(n_events, n, seed):
    """``n`` distinct seeded kill points in ``1..n_events``, in the order drawn."""
    rng = np.random.default_rng(seed)
    return [int(k) for k in rng.choice(np.arange(1, n_events + 1), size=min(n, n_events), replace=False)]
