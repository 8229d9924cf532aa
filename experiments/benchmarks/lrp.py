"""Benchmark: the fast LRP engine against zennit and against a plain input gradient.

    python -m experiments.benchmarks.lrp [--models vgg16,resnet50,...] [--repeats 3]

For each model (random weights, float32, eval mode) it times one attribution of a batch for the
predicted-class-style target: a plain input gradient with frozen parameters (the floor any
backward-pass method pays), the zennit backend and the fast backend; it prints the best time of
``--repeats`` interleaved rounds (robust to other load on the machine), the ratios to the
gradient and the largest heatmap difference between the two LRP backends, relative to the
largest zennit relevance. ``fast/grad cpu`` is the same ratio in CPU seconds of this process,
which other load on a shared machine distorts less than wall-clock time.
"""
import argparse
import time
import warnings

import torch
from torch import nn

from models import get_model, get_model_spec, list_models, register_model
from utils.device import cpu_threads
from utils.lrp.attribution import frozen_parameters
from utils.lrp.fast import FastBackend
from utils.lrp.zennit_backend import ZennitBackend
from utils.table import format_table

N_CLASSES = 10
IMAGE_CASES = {  # name: (batch, input shape without batch)
    "vgg16": (8, (3, 224, 224)),
    "resnet50": (8, (3, 224, 224)),
    "tiny_vgg": (64, (3, 64, 64)),
    "tiny_resnet": (64, (3, 64, 64)),
}
SIGNAL_CASE = (32, (12, 1000))  # a batch of 10 s, 100 Hz, 12-lead ECGs


def bench_cnn1d(n_classes, img_size=None, in_channels=12):
    """Stand-in ECG CNN, used when no signal model is registered in ``models``."""
    layers, channels = [], in_channels
    for i, width in enumerate((16, 32, 64, 64)):
        if i:
            layers.append(nn.MaxPool1d(2))
        layers += [nn.Conv1d(channels, width, 7, padding=3), nn.BatchNorm1d(width), nn.ReLU()]
        channels = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(channels, n_classes))


def default_cases():
    cases = dict(IMAGE_CASES)
    signal_models = [n for n in list_models() if get_model_spec(n).modality == "signal"]
    if not signal_models:
        register_model("bench_cnn1d", layer_names=("8",), canonizer="merge_batchnorm", modality="signal")(bench_cnn1d)
        signal_models = ["bench_cnn1d"]
    cases.update({name: SIGNAL_CASE for name in signal_models})
    return cases


def input_gradient(model, x, targets):
    """The cheapest backward pass: d(target logit)/d(input), parameters frozen."""
    with frozen_parameters(model):
        x = x.detach().clone().requires_grad_(True)
        logits = model(x)
        selection = torch.zeros_like(logits)
        selection[torch.arange(len(x)), targets] = 1.0
        logits.backward(selection * logits.detach())
    return x.grad


def benchmark(name, batch, shape, repeats):
    torch.manual_seed(0)
    model = get_model(name, N_CLASSES, img_size=shape[-1], in_channels=shape[0])
    spec = get_model_spec(name)
    x = torch.randn(batch, *shape)
    targets = torch.randint(0, N_CLASSES, (batch,))
    zennit, fast = ZennitBackend(model, spec), FastBackend(model, spec)
    runs = {
        "grad": lambda: input_gradient(model, x, targets),
        "zennit": lambda: zennit.attribute(x, targets=targets).heatmap,
        "fast": lambda: fast.attribute(x, targets=targets).heatmap,
    }
    best, best_cpu, heatmaps = {}, {}, {}
    for round_ in range(repeats + 1):  # round 0 warms up (allocator, oneDNN kernels)
        for method, run in runs.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            heatmaps[method] = run()
            elapsed, elapsed_cpu = time.perf_counter() - start, time.process_time() - start_cpu
            if round_:
                best[method] = min(best.get(method, float("inf")), elapsed)
                best_cpu[method] = min(best_cpu.get(method, float("inf")), elapsed_cpu)
    difference = (heatmaps["fast"] - heatmaps["zennit"]).abs().max() / heatmaps["zennit"].abs().max()
    return {
        "model": name, "input": f"{batch}x{'x'.join(map(str, shape))}",
        "grad s": best["grad"], "zennit s": best["zennit"], "fast s": best["fast"],
        "fast/grad": best["fast"] / best["grad"], "zennit/grad": best["zennit"] / best["grad"],
        "zennit/fast": best["zennit"] / best["fast"],
        "fast/grad cpu": best_cpu["fast"] / best_cpu["grad"],  # CPU seconds: less sensitive to load
        "max rel diff": f"{difference.item():.1e}",
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated model names (default: all cases)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per model (best is kept)")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice); "
                        "1 gives steadier numbers on a machine shared with other jobs")
    args = parser.parse_args(argv)
    with cpu_threads(args.threads):
        _run(args)


def _run(args):
    cases = default_cases()
    names = args.models.split(",") if args.models else list(cases)
    warnings.filterwarnings("ignore", module="crp|zennit")
    rows = []
    for name in names:
        batch, shape = cases.get(name, SIGNAL_CASE if get_model_spec(name).modality == "signal"
                                 else (8, (3, 224, 224)))
        rows.append(benchmark(name, batch, shape, args.repeats))
        print(format_table(rows[-1:]), flush=True)  # progress: one model at a time
    print(f"\nCPU threads: {torch.get_num_threads()}, best of {args.repeats} rounds\n")
    print(format_table(rows))


if __name__ == "__main__":
    main()
