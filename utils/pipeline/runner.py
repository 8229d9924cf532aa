"""Run registered pipeline steps in order, each cached by a hash of its inputs.

A step declares the steps it depends on and the config parts it reads. Its cache key is the hash
of those parts and of its dependencies' keys, so changing e.g. a mitigation lambda re-runs only
mitigation and what depends on it. A finished step writes ``steps/<name>.json`` (atomically) with
its key and result; a stopped run therefore continues at the first unfinished step, and the
steps' own resumable outputs (training, preprocessing) continue inside it.

A result also names the files it *trusts* (``"trusted": [paths]``: checkpoints, stores, the
localization index). Their identities (:mod:`utils.identity`) are recorded in the manifest: a cached
result is used only while every one of them still exists with that identity (not replaced by another
run, not damaged), and the key a dependent step sees includes them, so a model retrained into the
same path invalidates everything computed from it. A result is kept as its JSON form (strict JSON:
a missing number is ``null``), so a step sees the same values whether an earlier step ran now or
was read from its manifest.
"""
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from utils.errors import UserError
from utils.identity import changed, identities
from utils.io import read_json, write_json
from utils.provenance import provenance
from utils.registry import Registry


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable  # run(ctx) -> result dict (JSON-able): {"metrics": ..., "figures": {...}, ...}
    inputs: Callable  # inputs(ctx) -> JSON-able description of the config parts it reads
    depends: tuple = ()
    title: str = ""


STEPS = Registry("pipeline step")  # in the order the steps run (their registration order)


def pipeline_step(name, depends=(), inputs=lambda ctx: {}, title=""):
    def decorate(run):
        STEPS.register(name, Step(name, run, inputs, tuple(depends), title or name))
        return run

    return decorate


@dataclass
class Context:
    config: object  # PipelineConfig
    root: Path  # the pipeline's own folder (manifests, report)
    results: dict = field(default_factory=dict)
    keys: dict = field(default_factory=dict)
    cache: dict = field(default_factory=dict)  # derived objects shared by steps within one run


def _hash(payload) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def step_key(step, ctx) -> str:
    return _hash({"step": step.name, "inputs": step.inputs(ctx), "depends": [ctx.keys[d] for d in step.depends]})


def _cached(manifest, key):
    """The manifest's content if it is this key's and everything it relies on is still there, else ``None``."""
    if not manifest.is_file():
        return None
    content = read_json(manifest)
    if content.get("key") != key or "trusted" not in content:  # no recorded identities: an older version
        return None
    missing = [p for p in content["result"].get("figures", {}).values() if not Path(p).exists()]
    return None if missing or changed(content["trusted"]) else content


def _finished_key(key, trusted) -> str:
    """The key dependents see: the step's own key and the identities of the files it produced."""
    return _hash({"key": key, "trusted": trusted}) if trusted else key


def recorded_seconds(root) -> dict:
    """``{step: seconds}`` of a pipeline folder, in step order: the time each step took when it was computed
    (a later run that found it cached does not change it)."""
    records = {path.stem: read_json(path) for path in Path(root, "steps").glob("*.json")}
    return {name: records[name]["seconds"] for name in STEPS if records.get(name, {}).get("seconds") is not None}


def run_steps(ctx, from_step=None, only=None, until=None, log=print):
    """Run (or take from the cache) every step in order; ``until``: stop after that step."""
    names = list(STEPS)
    for option, value in (("--from_step", from_step), ("--only", only), ("--until", until)):
        if value is not None and value not in STEPS:
            raise UserError(f"{option}: unknown step '{value}'; steps: {', '.join(names)}")
    start_all = time.time()
    for index, name in enumerate(names):
        step = STEPS[name]
        key = step_key(step, ctx)
        manifest = ctx.root / "steps" / f"{name}.json"
        forced = (from_step is not None and index >= names.index(from_step)) or only == name
        cached = None if forced else _cached(manifest, key)
        if only is not None and only != name:
            if cached is None:
                raise UserError(f"--only {only}: step '{name}' it depends on has no up-to-date result; "
                                "run the pipeline without --only first")
        if cached is not None:
            ctx.results[name] = cached["result"]
            ctx.keys[name] = _finished_key(key, cached["trusted"])
            log(f"[{index + 1}/{len(names)}] {step.title}: cached")
            if name == until:
                break
            continue
        log(f"[{index + 1}/{len(names)}] {step.title} ...")
        start = time.time()
        try:
            result = step.run(ctx)
        except UserError as err:  # the step's own refusal, said as the step's: one line, no traceback
            raise UserError(f"step '{name}' ({step.title}): {err}") from None
        trusted = identities(result.get("trusted", []))
        write_json(manifest, {"key": key, "result": result, "trusted": trusted,
                              "seconds": round(time.time() - start, 1), "provenance": provenance()})
        ctx.results[name] = read_json(manifest)["result"]  # as a later run reads it from the manifest
        ctx.keys[name] = _finished_key(key, trusted)
        log(f"[{index + 1}/{len(names)}] {step.title}: done in {time.time() - start:.0f} s "
            f"(total {time.time() - start_all:.0f} s)")
        if name == until:
            break
    return ctx.results
