"""Benchmark of preprocessing: its overhead over plain LRP, and whether its memory stays flat.

For each model: images/s of the preprocessing computation (one forward + LRP backward recording
every inspectable layer, pooling of all five features, heatmap, HDF5 append) against a plain LRP
forward + backward (input heatmap only) on the same in-memory batches; the ratio should be
<= 1.15. Then the peak RSS of a fresh process preprocessing N and 4N samples (should be flat:
batches are written as they finish). Untrained models and random inputs: speed and memory do
not depend on the weights. Not a test; run ``python -m experiments.benchmarks.preprocessing``.
"""
import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from utils.table import format_table

DEFAULT_CASES = ["tiny_vgg:64:32:4", "resnet50:224:8:2", "vgg16:224:8:2"]


class RandomInputs(torch.utils.data.Dataset):
    """Deterministic random inputs generated per index (holds nothing, so memory stays flat)."""

    def __init__(self, n, img_size, n_classes=2):
        self.n, self.img_size, self.n_classes = n, img_size, n_classes
        self.augment = False
        self.sample_ids = [f"s{i:06d}" for i in range(n)]

    def __len__(self):
        return self.n

    def __getitem__(self, idx):
        g = torch.Generator().manual_seed(idx)
        return torch.randn(3, self.img_size, self.img_size, generator=g), idx % self.n_classes


def _config(model, img_size, batch, out_dir, backend="auto"):
    from utils.config import AuditConfig

    return AuditConfig(config_name=f"bench_{model}", model_name=model, img_size=img_size, batch_size=batch,
                       output_dir=out_dir, device="cpu", lrp_backend=backend)


def _model(name, img_size):
    from models import get_model

    torch.manual_seed(0)
    return get_model(name, 2, img_size=img_size)


def speed(model_name, img_size, batch, n_batches, repeats=2, backend="auto"):
    """(plain images/s, preprocessing images/s) on the same batches, best of ``repeats``; both use the
    LRP ``backend`` (``auto``, ``fast`` or ``zennit``)."""
    from models import get_model_spec
    from utils.feature_store import StoreWriter
    from utils.lrp.attribution import get_attributor
    from utils.preprocessing import Preprocessor

    model = _model(model_name, img_size)
    data = RandomInputs(batch * n_batches, img_size)
    batches = [(torch.stack([data[i][0] for i in range(s, s + batch)]),
                torch.tensor([data[i][1] for i in range(s, s + batch)])) for s in range(0, len(data), batch)]
    attributor = get_attributor(model, backend=backend)
    with tempfile.TemporaryDirectory() as tmp:
        runner = Preprocessor(_config(model_name, img_size, batch, tmp, backend), model, progress=False)
        get_model_spec(model_name)

        def plain():
            for x, y in batches:
                attributor.attribute(x, targets=y)

        def preprocess():
            writer = StoreWriter(f"{tmp}/bench.h5", len(data), {}, force=True)
            for x, y in batches:
                writer.append(runner.batch_rows(x, y))
            writer.close()

        plain()  # warm-up (allocations, graph building)
        times = {}
        for name, run in (("plain", plain), ("preprocessing", preprocess)):
            best = np.inf
            for _ in range(repeats):
                start = time.perf_counter()
                run()
                best = min(best, time.perf_counter() - start)
            times[name] = len(data) / best
    return times["plain"], times["preprocessing"]


def child_peak_rss(model_name, img_size, batch, n):
    """Peak RSS (MiB) of a fresh process that preprocesses ``n`` random samples into a store."""
    code = ("import json, psutil, sys, tempfile, threading, time\n"
            "from experiments.benchmarks.preprocessing import _run_store\n"
            "proc = psutil.Process(); peak = [0]; done = [False]\n"
            "def poll():\n"
            "    while not done[0]:\n"
            "        peak[0] = max(peak[0], proc.memory_info().rss); time.sleep(0.05)\n"
            "t = threading.Thread(target=poll); t.start()\n"
            f"_run_store({model_name!r}, {img_size}, {batch}, {n})\n"
            "done[0] = True; t.join(); print(json.dumps(peak[0] / 2**20))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _run_store(model_name, img_size, batch, n):
    from utils.preprocessing import Preprocessor

    with tempfile.TemporaryDirectory() as tmp:
        runner = Preprocessor(_config(model_name, img_size, batch, tmp), _model(model_name, img_size), progress=False)
        runner.run_split(RandomInputs(n, img_size), "train")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=DEFAULT_CASES,
                        help="model:img_size:batch_size:n_batches per case (default: %(default)s)")
    parser.add_argument("--memory_n", type=int, default=256, help="N of the memory check (N and 4N samples)")
    parser.add_argument("--memory_models", nargs="*", default=["tiny_vgg"], help="models of the memory check")
    parser.add_argument("--backends", nargs="+", default=["auto"], choices=["auto", "fast", "zennit"],
                        help="LRP backends to compare (default: %(default)s, the one steps use)")
    args = parser.parse_args(argv)
    rows = []
    for case, backend in itertools.product(args.cases, args.backends):
        name, img_size, batch, n_batches = case.split(":")
        img_size, batch, n_batches = int(img_size), int(batch), int(n_batches)
        plain, prep = speed(name, img_size, batch, n_batches, backend=backend)
        row = {"model": name, "backend": backend, "px": img_size, "samples": batch * n_batches,
               "plain LRP img/s": plain, "preprocessing img/s": prep, "ratio (plain/prep)": plain / prep}
        if name in args.memory_models and backend == args.backends[0]:
            row["peak RSS N (MiB)"] = child_peak_rss(name, img_size, batch, args.memory_n)
            row["peak RSS 4N (MiB)"] = child_peak_rss(name, img_size, batch, 4 * args.memory_n)
        rows.append(row)
        print(format_table([row]), flush=True)
    print("\n" + format_table(rows, headers=list(dict.fromkeys(k for r in rows for k in r))))


if __name__ == "__main__":
    main()
