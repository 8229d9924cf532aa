"""How the audit grows with the data set: ``python -m experiments.benchmarks.scaling [--sizes 1000 4000 16000
25000] [--classes 2 8] [--mode audit|features] [--output_dir outputs/benchmarks/scaling] [--quick] [--force]``.

For every (number of classes, size N) a **fresh process** runs the steps on N samples and writes what each
step cost: wall seconds, CPU seconds (of the process and of every process it started: data loaders,
reveal workers) and peak resident memory (sampled every 50 ms while the step runs, of the process and its
children; beside it the process's exact ``ru_maxrss`` so far). One process per size, so that memory
left over by a larger run never counts for a smaller one. This process then fits, per step, the growth
exponent ``b`` of ``time ~ N^b`` by least squares on log time against log N (on CPU time and on wall
time), prints one table per class count, and writes ``scaling.json`` and ``scaling.md`` into
``--output_dir`` (atomically). A size already measured with the same settings is read back from
``<output_dir>/runs/`` instead of being run again (``--force`` runs it again), so a stopped benchmark
continues where it stopped. Not a test.

Modes:

* ``audit`` (default): the embedded images and every step of the audit after training, as ``make demo``
  runs them (``utils.pipeline``), on N images split 80/10/10 like ISIC 2019: the test of the trained
  model on the clean/attacked/ch subsets, preprocessing of the three splits, reveal (SpRAy of every class,
  DORA, CRP of every class, their figures, the check against the ground truth: each also its own row),
  the simulated annotation rounds, retrieval, localization, **one** correction epoch (``--method``, the
  demo's settings for it, one strength, validation included), the evaluation of the original and the
  corrected model on the whole test split (the demo caps the artifact-relevance and TCAV samples at 200;
  here every test artifact sample counts), and the report. The data: 2 classes are ``synth_derm`` (its
  band-aid), 4 to 8 classes ``synth_shapes`` with ``n_classes`` (its timestamp on stars). The model: a
  ``tiny_vgg`` trained once per class count on ``--train_size`` images for ``--train_epochs`` epochs (not
  timed: the benchmark starts after training) and audited at every size, so that N is the only thing that
  changes. Images are drawn when a step reads them (the process's render cache holds 512 MiB): that cost
  is in the steps that read images, as reading and decoding files would be with real data.
* ``features``: no image and no model. A synthetic preprocessing store of the same shape (the layers and
  channels of ``tiny_vgg``, 32 x 32 heatmaps, a planted artifact group in class 0) and the steps that only
  read it: SpRAy of every class, CRP relevance patterns of every class, DORA with ``real_act`` references,
  the simulated annotation and the retrieval CAV. Cheap, so it reaches sizes the audit does not.

``--quick``: a tiny ``features`` run (sizes 150 and 300, two classes) for the test of this module.

The bars of the issue this benchmark was written for (25,000 samples, 8 classes, 64 px, ``tiny_vgg``, 2
CPU cores, after training): the whole audit within 30 minutes, peak memory under 6 GiB, no step's fitted
exponent above 1.2. The printed verdict reads time on the CPU-seconds column (the conservative reading
on a machine shared with other jobs, where wall time waits for other processes; on an idle machine with
2 cores the wall time is at most the CPU time for as long as the step keeps one core busy).
"""
import argparse
import contextlib
import functools
import hashlib
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import yaml

from utils.errors import UserError
from utils.io import read_json, write_json, write_text
from utils.table import MISSING, format_table, markdown_table

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SIZES = (1000, 4000, 16000, 25000)
DEFAULT_CLASSES = (2, 8)
QUICK = {"sizes": (150, 300), "classes": (2,), "mode": "features"}
BARS = {"n": 25000, "classes": 8, "minutes": 30.0, "rss_gib": 6.0, "exponent": 1.2}
SPLIT_SHARES = {"train": 0.8, "val": 0.1, "test": 0.1}  # ISIC 2019-like proportions
MODEL, IMG_SIZE, LAYER, NEURON_LAYER = "tiny_vgg", 64, "features.10", "features.14"
DEMO_CONFIG = Path("pipeline") / "synth_derm.yaml"  # under config_files/: the demo's audit sections
SAMPLE_SECONDS = 0.05  # how often the memory of the running step is read


# --- measuring ----------------------------------------------------------------------------------
def _mib(kib):
    return kib / 1024  # ru_maxrss is in KiB on Linux


def _children_cpu():
    """CPU seconds of finished (waited-for) child processes."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _live_children():
    import psutil

    with contextlib.suppress(psutil.Error):
        return psutil.Process().children(recursive=True)
    return []


def _live_children_cpu():
    """{pid: CPU seconds} of the child processes still running (reveal workers, data loaders)."""
    import psutil

    cpu = {}
    for child in _live_children():
        with contextlib.suppress(psutil.Error):
            times = child.cpu_times()
            cpu[child.pid] = times.user + times.system
    return cpu


def _rss_now():
    """Resident memory (bytes) of this process plus its child processes."""
    import psutil

    total = psutil.Process().memory_info().rss
    for child in _live_children():
        with contextlib.suppress(psutil.Error):
            total += child.memory_info().rss
    return total


class Meter:
    """Wall time, CPU time and peak memory of named, possibly nested spans of this process.

    A daemon thread reads the memory every ``SAMPLE_SECONDS`` and raises the peak of every open span;
    each span also records the process's exact ``ru_maxrss`` (a peak since the process started) when it
    ends. Spans of the same name add up (a figure drawn once per class is one row).
    """

    def __init__(self, interval=SAMPLE_SECONDS):
        self.rows, self._open, self._lock = {}, [], threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, args=(interval,), daemon=True)
        self._thread.start()

    def _sample(self, interval):
        while not self._stop.wait(interval):
            rss = _rss_now()
            with self._lock:
                for span in self._open:
                    span["peak"] = max(span["peak"], rss)

    @contextlib.contextmanager
    def span(self, name):
        span = {"peak": _rss_now(), "wall": time.perf_counter(), "cpu": time.process_time(),
                "children": _children_cpu(), "live": _live_children_cpu()}
        with self._lock:
            self._open.append(span)
        try:
            yield
        finally:
            with self._lock:
                self._open.remove(span)
            self._close(name, span)

    def _close(self, name, span):
        live = _live_children_cpu()
        # children still alive: only what they used during the span; those that ended: RUSAGE_CHILDREN
        live_cpu = sum(cpu - span["live"].get(pid, 0.0) for pid, cpu in live.items())
        cpu = time.process_time() - span["cpu"] + _children_cpu() - span["children"] + live_cpu
        row = self.rows.setdefault(name, {"step": name, "wall_s": 0.0, "cpu_s": 0.0, "peak_rss_mib": 0.0, "calls": 0})
        row["wall_s"] += time.perf_counter() - span["wall"]
        row["cpu_s"] += cpu
        row["peak_rss_mib"] = max(row["peak_rss_mib"], max(span["peak"], _rss_now()) / 2**20)
        row["ru_maxrss_mib_so_far"] = _mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        row["calls"] += 1

    def close(self):
        self._stop.set()
        self._thread.join()


@contextlib.contextmanager
def measured(meter, module, name, label):
    """While inside, every call of ``module.name`` is a span ``label`` of ``meter`` (calls pass through)."""
    original = getattr(module, name)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        with meter.span(label):
            return original(*args, **kwargs)

    setattr(module, name, wrapper)
    try:
        yield
    finally:
        setattr(module, name, original)


def _release_workers():
    """End joblib's reusable worker processes, so that their CPU time is counted (RUSAGE_CHILDREN counts
    a child once it has ended) and their memory is not carried into the next step."""
    with contextlib.suppress(Exception):
        from joblib.externals.loky import get_reusable_executor

        get_reusable_executor().shutdown(wait=True)


# --- the settings of one run --------------------------------------------------------------------
def split_sizes(n):
    """Train / val / test sizes of N samples (80/10/10; at least 8 held-out samples each)."""
    held_out = max(8, round(n * SPLIT_SHARES["test"]))
    return {"n_train": n - 2 * held_out, "n_val": held_out, "n_test": held_out}


def dataset_for(classes):
    """(data set, artifact, dataset_options) of the embedded data with ``classes`` classes."""
    if classes == 2:
        return "synth_derm", "band_aid", {}
    if 4 <= classes <= 8:
        return "synth_shapes", "timestamp", {"n_classes": classes}
    raise UserError(f"--classes: 2 (synth_derm) or 4 to 8 (synth_shapes), got {classes}")


def run_settings(args, classes, n):
    """Everything a run's numbers depend on (besides the code): a finished run with these is reused."""
    settings = {"mode": args.mode, "classes": classes, "n": n, "model": MODEL, "img_size": args.img_size,
                "spray_workers": args.spray_workers}
    if args.mode == "audit":
        settings.update(method=args.method, train_size=args.train_size, train_epochs=args.train_epochs)
    return settings


def _digest(payload):
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:10]


def run_path(output_dir, settings):
    return Path(output_dir) / "runs" / f"{settings['mode']}_c{settings['classes']}_n{settings['n']}.json"


# --- the model (audit mode; trained once per class count, not timed) ------------------------------
def training_values(args, classes, work):
    dataset, _, options = dataset_for(classes)
    epochs = args.train_epochs
    return {"config_name": f"scaling_model_c{classes}", "dataset_name": dataset, "img_size": args.img_size,
            "model_name": MODEL, "seed": 0, "batch_size": 64, "device": "cpu", "optimizer": "adam", "lr": 0.003,
            "loss": "cross_entropy", "num_epochs": epochs, "milestones": [max(1, round(0.7 * epochs))],
            "output_dir": str(work / "outputs"),
            "dataset_options": {**options, "n_train": args.train_size, "n_val": max(8, args.train_size // 8),
                                "n_test": max(8, args.train_size // 8)}}


def trained_checkpoint(args, classes, work) -> Path:
    """The checkpoint audited at every size of ``classes`` classes; trained here the first time."""
    from model_training.trainer import run_training
    from utils.config import load_config
    from utils.config.schemas import TrainingConfig

    path = work / "configs" / f"model_c{classes}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(training_values(args, classes, work), sort_keys=False))
    config = load_config(path, TrainingConfig)
    print(f"training the model for {classes} classes ({args.train_size} images, {args.train_epochs} epochs; "
          "not part of the measurements) ...", flush=True)
    out_dir, metrics = run_training(config, resume=True)
    print(f"  test accuracy by subset: "
          + ", ".join(f"{s} {m['accuracy']:.3f}" for s, m in metrics["test"].items()), flush=True)
    return out_dir / "checkpoints" / "best.pt"


# --- audit mode: the pipeline's steps, one span each ----------------------------------------------
def demo_sections():
    """The audit, annotation and mitigation sections of the demo's committed pipeline config."""
    from config_files.generate import CONFIG_FILES

    return yaml.safe_load((CONFIG_FILES / DEMO_CONFIG).read_text())


def pipeline_values(spec):
    """The pipeline config of one audit-mode run: the demo's audit settings on N samples, one correction
    run of one epoch at one strength, every test artifact sample evaluated."""
    demo = demo_sections()
    dataset, artifact, options = dataset_for(spec["classes"])
    method = next(dict(run) for run in demo["mitigation"] if run["method"] == spec["method"])
    method.pop("sweep", None)
    common = {**demo["mitigation_common"], "num_epochs": 1, "milestones": [], "eval_max_samples": None}
    audit = {**demo["audit"], "spray_workers": spec["spray_workers"]}
    return {"config_name": f"scaling_c{spec['classes']}_n{spec['n']}", "dataset_name": dataset,
            "img_size": spec["img_size"], "batch_size": 64, "seed": 0, "model_name": MODEL, "artifact": artifact,
            "layer_name": LAYER, "ckpt_path": spec["ckpt"], "output_dir": str(Path(spec["work"]) / "outputs"),
            "device": "cpu", "dataset_options": {**options, **split_sizes(spec["n"])}, "training": {},
            "audit": audit, "annotation": demo["annotation"], "mitigation_common": common,
            "mitigation": [method]}


# reveal functions the pipeline's reveal step calls, each measured as its own row
REVEAL_PARTS = {"spray_step": "reveal: SpRAy (all classes)", "dora_step": "reveal: DORA",
                "crp_step": "reveal: CRP (all classes)", "plot_spray": "reveal: figures",
                "plot_crp": "reveal: figures", "plot_dora": "reveal: figures",
                "reveal_quality_step": "reveal: check against ground truth"}
STEP_LABELS = {"data": "data set (labels, counts, examples)", "train": "test of the trained model",
               "preprocess": "preprocessing (3 splits)", "reveal": "reveal (all methods)",
               "annotate": "annotation rounds (simulated reviewer)", "retrieve": "retrieval",
               "localize": "localization", "mitigate": "one correction epoch", "evaluate": "evaluation",
               "report": "report"}


def run_audit(spec, meter):
    """Every pipeline step after training, in order, one span each (reveal also per method)."""
    from utils.config import load_config
    from utils.io import dumps_json, write_yaml
    from utils.paths import step_dir
    from utils.pipeline import steps as _steps  # noqa: F401  (registers the steps)
    from utils.pipeline.config import PipelineConfig
    from utils.pipeline.runner import STEPS, Context, step_key
    from utils.reveal import steps as reveal_steps

    path = Path(spec["work"]) / "configs" / f"scaling_c{spec['classes']}_n{spec['n']}.yaml"
    write_yaml(path, pipeline_values(spec))
    config = load_config(path, PipelineConfig)
    config.check_steps()
    ctx = Context(config=config, root=step_dir(config, "pipeline"))
    extra = {}
    with contextlib.ExitStack() as stack:
        for name, label in REVEAL_PARTS.items():
            stack.enter_context(measured(meter, reveal_steps, name, label))
        for name in STEPS:
            step = STEPS[name]
            print(f"  {name} ...", flush=True)
            with meter.span(STEP_LABELS.get(name, name)):
                result = step.run(ctx)
                _release_workers()
            # as run_steps does: later steps see the result in its JSON form
            ctx.results[name] = json.loads(dumps_json(result))
            ctx.keys[name] = step_key(step, ctx)
    annotate = ctx.results["annotate"]["metrics"]
    extra["annotation"] = {k: annotate.get(k) for k in ("found", "n_artifact", "inspected")}
    extra["annotation"]["rounds"] = len(annotate.get("rounds", []))
    extra["report"] = ctx.results["report"].get("report")
    return extra


# --- features mode: a synthetic store and the steps that only read it ------------------------------
FEATURE_LAYERS = {"features.2": 16, "features.6": 32, "features.10": 64, "features.14": 64}
HEATMAP_SIDE = 32
ARTIFACT_RATE = 0.3  # of class 0's samples


def features_config(spec):
    from utils.config import AuditConfig

    work = Path(spec["work"])
    return AuditConfig(config_name=f"scaling_features_c{spec['classes']}_n{spec['n']}", dataset_name="synth_derm",
                       model_name=MODEL, img_size=spec["img_size"], seed=0, output_dir=str(work / "outputs"),
                       splits=["train"], layer_name=LAYER, neuron_layer_name=NEURON_LAYER, spray_space="latent",
                       dora_reference="real_act", spray_workers=spec["spray_workers"], heatmap_size=HEATMAP_SIDE)


def synthetic_rows(rng, labels, artifact, prototypes, classes):
    """One batch of store rows: per class a prototype per layer, a low-rank within-class variation,
    noise, and for artifact samples an extra pattern on a few channels (a shortcut group)."""
    rows = {"labels": labels, "targets": labels.astype(np.int64)}
    n = len(labels)
    for layer, (class_means, basis, artifact_pattern) in prototypes.items():
        loadings = rng.normal(size=(n, basis.shape[0]))
        act = class_means[labels] + loadings @ basis + 0.2 * rng.normal(size=class_means[labels].shape)
        act = np.maximum(act + artifact[:, None] * artifact_pattern, 0.0).astype(np.float32)
        relevance = act * (0.5 + rng.random(act.shape)).astype(np.float32)
        rows.update({f"layers/{layer}/cavs_max": act, f"layers/{layer}/cavs_mean": 0.5 * act,
                     f"layers/{layer}/rel": relevance / relevance.sum(1, keepdims=True).clip(1e-6),
                     f"layers/{layer}/rels_max": relevance, f"layers/{layer}/rels_mean": 0.3 * relevance})
    heat = rng.random((n, HEATMAP_SIDE, HEATMAP_SIDE)).astype(np.float32)
    heat[artifact, :8, :8] += 4.0  # the artifact's corner
    rows["heatmaps"] = heat
    rows["outputs"] = rng.normal(size=(n, classes)).astype(np.float32)
    return rows


def write_synthetic_store(config, n, classes, seed=0, batch=2048):
    """A complete preprocessing store of ``n`` synthetic samples at the config's path; returns the
    artifact flags (ground truth of the simulated annotation)."""
    from utils.feature_store import StoreWriter, store_path

    rng = np.random.default_rng(seed)
    prototypes = {layer: (rng.gamma(2.0, 1.0, size=(classes, c)), 0.5 * rng.normal(size=(6, c)),
                          3.0 * (rng.random(c) < 0.15)) for layer, c in FEATURE_LAYERS.items()}
    labels = rng.integers(classes, size=n)
    artifact = (labels == 0) & (rng.random(n) < ARTIFACT_RATE)
    meta = {"model_name": MODEL, "dataset_name": config.dataset_name, "split": "train",
            "layer_names": list(FEATURE_LAYERS), "relevance_target": "label", "fingerprint": "synthetic",
            "channel_axis": 1}
    writer = StoreWriter(store_path(config, "train"), n, meta, force=True)
    try:
        for start in range(0, n, batch):
            stop = min(n, start + batch)
            rows = synthetic_rows(rng, labels[start:stop], artifact[start:stop], prototypes, classes)
            rows["sample_index"] = np.arange(start, stop)
            rows["sample_ids"] = np.asarray([f"train_{i:06d}" for i in range(start, stop)])
            writer.append(rows)
        writer.finish()
    finally:
        writer.close()
    return artifact


def run_features(spec, meter):
    """The steps of a synthetic store that need no image and no model, one span each."""
    from utils.bias.annotation import simulate_annotation
    from utils.bias.cav import fit_cav
    from utils.bias.review import round_size
    from utils.feature_store import FeatureStore
    from utils.reveal.crp import run_crp
    from utils.reveal.dora import run_dora
    from utils.reveal.steps import spray_step

    config = features_config(spec)
    artifact = write_synthetic_store(config, spec["n"], spec["classes"])
    with meter.span("reveal: SpRAy (all classes)"):
        spray_step(config)
        _release_workers()
    with meter.span("reveal: CRP relevance patterns (all classes)"):
        for class_id in range(spec["classes"]):
            run_crp(config, class_id)
    with meter.span("reveal: DORA (real_act references)"):
        run_dora(config)
    with FeatureStore.for_config(config, "train") as store:
        features = np.asarray(store.features(LAYER, config.cav_mode), dtype=np.float64)
    with meter.span("annotation rounds (simulated reviewer)"):
        inspected, found = simulate_annotation(features, artifact, config.annotation_n_seeds,
                                               round_size(config, len(features)), config.cav_type, seed=config.seed,
                                               stop_recall=config.simulate_target_recall)
    with meter.span("retrieval CAV (fit and score)"):
        fit_cav(features, artifact, config.cav_type).score(features)
    return {"annotation": {"found": int(found[-1]), "n_artifact": int(artifact.sum()), "inspected": int(inspected[-1])}}


MODES = {"audit": run_audit, "features": run_features}


# --- one size in its own process -------------------------------------------------------------------
def child_main(spec_path):
    """Run one (classes, N) and write its measurements (the child process's whole job)."""
    from utils.provenance import provenance

    spec = read_json(spec_path)
    # a run stopped earlier leaves its store, cached DORA signals and corrected model here: reused, the
    # steps would cost nothing and the numbers would be false
    shutil.rmtree(spec["paths"]["work"], ignore_errors=True)
    meter = Meter()
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    try:
        extra = MODES[spec["settings"]["mode"]]({**spec["settings"], **spec["paths"]}, meter)
    finally:
        meter.close()
    rows = list(meter.rows.values())
    top = [r for r in rows if not r["step"].startswith("reveal: ")] if spec["settings"]["mode"] == "audit" else rows
    total = {"step": "whole audit after training" if spec["settings"]["mode"] == "audit" else "all steps",
             "wall_s": sum(r["wall_s"] for r in top), "cpu_s": sum(r["cpu_s"] for r in top),
             "peak_rss_mib": max(r["peak_rss_mib"] for r in rows), "calls": 1}
    usage_self = resource.getrusage(resource.RUSAGE_SELF)
    usage_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    record = {"settings": spec["settings"], "settings_digest": _digest(spec["settings"]), "steps": rows,
              "total": total, "process_wall_s": time.perf_counter() - start_wall,
              "process_cpu_s": time.process_time() - start_cpu,
              "ru_maxrss_self_mib": _mib(usage_self.ru_maxrss), "ru_maxrss_children_mib": _mib(usage_children.ru_maxrss),
              "cpu_count": os.cpu_count(), "provenance": provenance(), **extra}
    write_json(spec["output"], record)


def run_child(settings, paths, output, log_path):
    """Measure one size in a fresh process (its output goes to ``log_path``); returns its record."""
    spec_path = Path(output).with_suffix(".spec.json")
    write_json(spec_path, {"settings": settings, "paths": paths, "output": str(output)})
    with open(log_path, "w") as log:
        done = subprocess.run([sys.executable, "-m", "experiments.benchmarks.scaling", "--child", str(spec_path)],
                              cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = Path(log_path).read_text().strip().splitlines()[-5:]
        raise UserError(f"the run of {settings['classes']} classes, N={settings['n']} failed (exit {done.returncode}); "
                        f"its log {log_path} ends: {' | '.join(tail)}")
    spec_path.unlink(missing_ok=True)
    return read_json(output)


def measure(args, classes, n, paths):
    """The record of (classes, N): read back if a finished run of the same settings exists, else run."""
    settings = run_settings(args, classes, n)
    output = run_path(args.output_dir, settings)
    if output.is_file() and not args.force:
        record = read_json(output)
        if record.get("settings") == settings:
            print(f"{classes} classes, N={n}: measured before ({output}); reused", flush=True)
            return record
    if args.reuse_only:
        print(f"{classes} classes, N={n}: not measured yet; left out (--reuse_only)", flush=True)
        return None
    print(f"{classes} classes, N={n}: running in a fresh process (log: {output.with_suffix('.log')}) ...", flush=True)
    record = run_child(settings, paths, output, output.with_suffix(".log"))
    print(f"{classes} classes, N={n}: {record['total']['cpu_s']:.0f} CPU s, {record['total']['wall_s']:.0f} wall s, "
          f"peak {record['total']['peak_rss_mib']:.0f} MiB", flush=True)
    return record


# --- fitting and the table ------------------------------------------------------------------------
def growth_exponent(sizes, seconds):
    """Least-squares slope of log(seconds) on log(N): the b of time ~ N^b (None with fewer than two
    sizes with a positive time)."""
    pairs = [(math.log(n), math.log(t)) for n, t in zip(sizes, seconds) if t is not None and t > 0]
    if len(pairs) < 2 or len({x for x, _ in pairs}) < 2:
        return None
    x, y = np.array(pairs).T
    return float(np.polyfit(x, y, 1)[0])


def step_table(records):
    """Per step: seconds (CPU, wall) at each size, peak memory at the largest size, exponents."""
    records = sorted(records, key=lambda r: r["settings"]["n"])
    sizes = [r["settings"]["n"] for r in records]
    names = list(dict.fromkeys(s["step"] for r in records for s in r["steps"])) + [records[-1]["total"]["step"]]
    rows = []
    for name in names:
        found = [({**{s["step"]: s for s in r["steps"]}, r["total"]["step"]: r["total"]}).get(name) for r in records]
        cpu = [f["cpu_s"] if f else None for f in found]
        wall = [f["wall_s"] if f else None for f in found]
        rows.append({"step": name, "sizes": sizes, "cpu_s": cpu, "wall_s": wall,
                     "peak_rss_mib": found[-1]["peak_rss_mib"] if found[-1] else None,
                     "exponent_cpu": growth_exponent(sizes, cpu), "exponent_wall": growth_exponent(sizes, wall)})
    return rows


def _cell(value, digits=1):
    return MISSING if value is None else f"{value:.{digits}f}"


def display_rows(table):
    """The table as printed: one column per size (CPU s / wall s), peak MiB, the two exponents."""
    out = []
    for row in table:
        cells = {"step": row["step"]}
        for n, cpu, wall in zip(row["sizes"], row["cpu_s"], row["wall_s"]):
            cells[f"N={n:,} CPU/wall s"] = f"{_cell(cpu)} / {_cell(wall)}"
        cells[f"peak MiB (N={row['sizes'][-1]:,})"] = _cell(row["peak_rss_mib"], 0)
        cells["b (CPU)"] = _cell(row["exponent_cpu"], 2)
        cells["b (wall)"] = _cell(row["exponent_wall"], 2)
        out.append(cells)
    return out


def bars_verdict(results):
    """The issue's bars, on the run of 8 classes at N=25,000 (None where it was not measured)."""
    series = results.get(str(BARS["classes"]))
    if not series:
        return None
    record = next((r for r in series["records"] if r["settings"]["n"] == BARS["n"]), None)
    if record is None:
        return None
    exponents = [r["exponent_cpu"] for r in series["table"] if r["exponent_cpu"] is not None]
    peak_gib = max(record["ru_maxrss_self_mib"], record["ru_maxrss_children_mib"], record["total"]["peak_rss_mib"]) / 1024
    return {"cpu_minutes": record["total"]["cpu_s"] / 60, "wall_minutes": record["total"]["wall_s"] / 60,
            "peak_rss_gib": peak_gib, "max_exponent_cpu": max(exponents) if exponents else None,
            "time_ok": record["total"]["cpu_s"] / 60 <= BARS["minutes"], "memory_ok": peak_gib < BARS["rss_gib"],
            "exponent_ok": bool(exponents) and max(exponents) <= BARS["exponent"]}


def note(report):
    settings = report["settings"]
    lines = [f"Mode {settings['mode']}; {settings['model']} at {settings['img_size']} px; CPU {report['cpu_model']}, "
             f"{report['cpu_count']} logical cores seen by the process; one fresh process per size. Each cell: CPU "
             "seconds (all threads and child processes) / wall seconds; b: least-squares slope of log time on log N. "
             "Peak MiB: resident memory sampled every 50 ms during the step (process and children)."]
    verdict = report.get("bars")
    if verdict:
        lines.append(f"Bars at N={BARS['n']:,}, {BARS['classes']} classes: whole audit {verdict['cpu_minutes']:.1f} CPU min "
                     f"({verdict['wall_minutes']:.1f} wall min) against {BARS['minutes']:.0f} min: "
                     f"{'met' if verdict['time_ok'] else 'NOT met'}; peak memory {verdict['peak_rss_gib']:.2f} GiB "
                     f"against {BARS['rss_gib']:.0f} GiB: {'met' if verdict['memory_ok'] else 'NOT met'}; largest "
                     f"exponent (CPU) {_cell(verdict['max_exponent_cpu'], 2)} against {BARS['exponent']}: "
                     f"{'met' if verdict['exponent_ok'] else 'NOT met'}.")
    return " ".join(lines)


def markdown(report):
    from utils.provenance import stamp

    parts = []
    for classes, series in report["results"].items():
        parts.append(f"**{classes} classes** ({series['dataset']})\n\n"
                     + markdown_table(display_rows(series["table"])))
    return "\n\n".join(parts) + f"\n\n{note(report)}\n\n" + stamp(report["provenance"], "one run per size")


# --- the command line -----------------------------------------------------------------------------
def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES), help="N, samples of all splits")
    parser.add_argument("--classes", type=int, nargs="+", default=list(DEFAULT_CLASSES),
                        help="class counts: 2 (synth_derm) or 4 to 8 (synth_shapes)")
    parser.add_argument("--mode", choices=sorted(MODES), default="audit")
    parser.add_argument("--method", default="RRR", help="the correction of the one correction epoch (its demo settings)")
    parser.add_argument("--img_size", type=int, default=IMG_SIZE)
    parser.add_argument("--train_size", type=int, default=2000, help="images the audited model is trained on")
    parser.add_argument("--train_epochs", type=int, default=10)
    parser.add_argument("--spray_workers", type=int, default=1, help="classes SpRAy analyses at once")
    parser.add_argument("--output_dir", default="outputs/benchmarks/scaling")
    parser.add_argument("--quick", action="store_true", help="a tiny features run (for the test)")
    parser.add_argument("--force", action="store_true", help="measure sizes again even if measured before")
    parser.add_argument("--reuse_only", action="store_true",
                        help="measure nothing: the table of the sizes measured before (the others are left out)")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: the measuring process of one size
    return parser


def parse_args(argv=None):
    args = build_parser().parse_args(argv)
    if args.quick:
        args.sizes, args.classes, args.mode = list(QUICK["sizes"]), list(QUICK["classes"]), QUICK["mode"]
    if args.child is None:
        for classes in args.classes:
            dataset_for(classes)  # an impossible class count stops before any work
        if min(args.sizes) < 100:
            raise UserError(f"--sizes: at least 100 samples each, got {min(args.sizes)}")
        if args.mode == "audit" and args.method not in {r["method"] for r in demo_sections()["mitigation"]}:
            raise UserError(f"--method: one of the demo's corrections "
                            f"({', '.join(r['method'] for r in demo_sections()['mitigation'])}), got {args.method}")
    args.sizes = sorted(set(args.sizes))
    args.output_dir = Path(args.output_dir)
    return args


def main(argv=None):
    from experiments.benchmarks.scale import cpu_model
    from utils.provenance import provenance

    args = parse_args(argv)
    if args.child:
        child_main(args.child)
        return None
    work = args.output_dir / "work"
    results = {}
    for classes in args.classes:
        paths = {"work": str(work / f"c{classes}"), "ckpt": None}
        if args.mode == "audit" and not args.reuse_only:
            paths["ckpt"] = str(trained_checkpoint(args, classes, work / "models"))
        records = [measure(args, classes, n, {**paths, "work": str(work / f"c{classes}_n{n}")}) for n in args.sizes]
        records = [r for r in records if r is not None]
        if not records:
            continue
        results[str(classes)] = {"dataset": "synthetic feature store" if args.mode == "features" else dataset_for(classes)[0],
                                 "records": records, "table": step_table(records)}
    report = {"settings": {"mode": args.mode, "model": MODEL, "img_size": args.img_size, "sizes": args.sizes,
                           "classes": args.classes, "method": args.method if args.mode == "audit" else None,
                           "spray_workers": args.spray_workers},
              "bars_definition": BARS, "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
              "provenance": provenance(), "results": results}
    report["bars"] = bars_verdict(results)
    write_json(args.output_dir / "scaling.json", report)
    write_text(args.output_dir / "scaling.md", markdown(report) + "\n")
    for classes, series in results.items():
        print(f"\n{classes} classes ({series['dataset']})")
        print(format_table(display_rows(series["table"])))
    print("\n" + note(report))
    print(f"outputs: {args.output_dir / 'scaling.json'}, {args.output_dir / 'scaling.md'}")
    return report


if __name__ == "__main__":
    from utils.cli import main_entry

    main_entry(main)()
