"""How fast the explorer's Samples page draws: ``python -m experiments.benchmarks.explore
[--n_samples 25000] [--config_file F] [--repeats 5] [--work_dir DIR]``.

Time to first render is measured in headless Chromium (the browser tests' one): from the navigation's
start (``performance.now()`` is 0 there) to the first animation frame at which the embedding's WebGL
plot holds its points (``utils.explore.browser.RENDER_PROBE``). The first load in a fresh browser
profile is **cold** (nothing cached, every script compiled); the following ``--repeats`` reloads are
**warm** (a person reloading the page); their median is reported. The server runs in this process, as
``python -m experiments.explore`` runs it; its start (reading the store and the reveal results, building
the data set) is timed separately, as it happens once per session, not per page.

With ``--config_file`` an existing audit or pipeline config is measured (e.g. the demo's,
``config_files/pipeline/synth_derm.yaml``). Without it, an audit of ``--n_samples`` training samples of
``synth_derm`` is generated in ``--work_dir`` (default: a temporary folder, removed): the data set
config, a complete preprocessing store in the project's format (``utils.feature_store.StoreWriter``:
labels, logits, heatmaps and two layers' features, random numbers) and one SpRAy result per class in the
reveal step's format (``utils.reveal.results.write_result``) whose 2-D view holds a blob per cluster:
the page draws what it draws for a real store of that size, without computing one (preprocessing and
t-SNE of 25,000 samples take hours on a laptop CPU). Prints one row per audit.
"""
import argparse
import contextlib
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from tqdm import tqdm

from utils.cli import main_entry
from utils.table import format_table

LAYERS = {"features.10": 64, "features.14": 64}  # tiny_vgg's default layer and its neuron layer
HEATMAP = 16
BLOBS = 5


def generate_audit(folder, n_samples, seed=0):
    """An audit config in ``folder`` with a generated store and SpRAy results of ``n_samples`` samples."""
    from datasets import get_dataset_from_config
    from utils.config import AuditConfig, load_config
    from utils.feature_store import FEATURE_KINDS, StoreWriter, store_path
    from utils.reveal.results import ranked_samples, write_result

    folder = Path(folder)
    path = folder / f"explore_{n_samples}.yaml"
    path.write_text(yaml.safe_dump({
        "dataset_name": "synth_derm", "img_size": 64, "seed": seed, "artifact": "band_aid",
        "dataset_options": {"n_train": n_samples, "n_val": 8, "n_test": 8}, "model_name": "tiny_vgg",
        "splits": ["train"], "heatmap_size": HEATMAP, "spray_space": "latent", "spray_default_clustering": "kmeans_5",
        "output_dir": str(folder / "outputs")}))
    config = load_config(path, AuditConfig)
    train = get_dataset_from_config(config).train
    rng = np.random.default_rng(seed)
    labels = np.asarray(train.labels)
    writer = StoreWriter(store_path(config, "train"), n_samples,
                         {"model_name": config.model_name, "dataset_name": config.dataset_name, "split": "train",
                          "layer_names": list(LAYERS), "relevance_target": "label"}, force=True)
    try:
        for start in tqdm(range(0, n_samples, 2048), desc="generated store"):
            rows = np.arange(start, min(start + 2048, n_samples))
            batch = {"sample_index": rows, "sample_ids": np.array([train.sample_ids[i] for i in rows]),
                     "labels": labels[rows], "outputs": rng.normal(size=(len(rows), 2)).astype(np.float32),
                     "targets": labels[rows].astype(np.int64),
                     "heatmaps": rng.normal(size=(len(rows), HEATMAP, HEATMAP)).astype(np.float32)}
            for layer, channels in LAYERS.items():
                for kind in FEATURE_KINDS:
                    batch[f"layers/{layer}/{kind}"] = rng.random((len(rows), channels), dtype=np.float32)
            writer.append(batch)
        writer.finish()
    finally:
        writer.close()
    for class_id in range(train.n_classes):
        members = np.flatnonzero(labels == class_id)
        cluster = rng.integers(0, BLOBS, len(members))
        centres = rng.normal(scale=6.0, size=(BLOBS, 2))
        view = centres[cluster] + rng.normal(size=(len(members), 2))
        scores = rng.gamma(4.0, 0.3, len(members))
        ids = [train.sample_ids[i] for i in members]
        write_result(config, "spray", class_id, {
            "split": "train", "space": "latent", "layer": "features.10", "feature": "rel", "sample_ids": ids,
            "sample_index": members.tolist(), "eigenvalues": [], "clusterings": {"kmeans_5": cluster.tolist()},
            "default_clustering": "kmeans_5", "embedding_2d": view.tolist(),
            "outlier_samples": ranked_samples(ids, members, scores, scores > 2.5, np.argsort(-scores))})
    return path


def measure(config_file, repeats):
    """``{samples, start s, layout KB, cold ms, warm ms}`` of the Samples page of ``config_file``."""
    import urllib.request

    from utils.explore.app import create_app, open_audit
    from utils.explore.browser import Browser, time_to_first_render
    from utils.explore.server import BackgroundServer

    start = time.perf_counter()
    data, session = open_audit(config_file)
    app = create_app(data, session)
    started = time.perf_counter() - start
    with BackgroundServer(app) as url, Browser() as driver:
        with urllib.request.urlopen(url + "/_dash-layout") as response:
            layout_kb = len(response.read()) / 1024
        cold, points = time_to_first_render(driver, url + "/")
        warm = [time_to_first_render(driver, url + "/")[0] for _ in range(repeats)]
    if points != data.n_samples:
        raise RuntimeError(f"the page drew {points} points of {data.n_samples} samples")
    return {"config": str(config_file), "samples": data.n_samples, "start (s)": round(started, 1),
            "page layout (KB)": round(layout_kb), "first render, cold (ms)": round(cold),
            f"first render, warm (ms, median of {repeats})": round(statistics.median(warm)),
            "warm range (ms)": f"{min(warm):.0f}-{max(warm):.0f}"}


@main_entry
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n_samples", type=int, default=25000, help="samples of the generated audit")
    parser.add_argument("--config_file", help="measure this audit or pipeline config instead of a generated one")
    parser.add_argument("--repeats", type=int, default=5, help="warm reloads measured")
    parser.add_argument("--work_dir", help="keep the generated audit here (default: a temporary folder)")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        if args.config_file:
            config_file = args.config_file
        else:
            folder = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="explore-bench-"))
            if not args.work_dir:
                stack.callback(shutil.rmtree, folder, ignore_errors=True)
            folder.mkdir(parents=True, exist_ok=True)
            config_file = generate_audit(folder, args.n_samples)
        row = measure(config_file, args.repeats)
    print(format_table([row]))
    return row


if __name__ == "__main__":
    main()
