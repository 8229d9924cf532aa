"""Benchmark: a training step in the default memory layout against channels-last (``memory_format``).

    python -m experiments.benchmarks.memory_format [--models tiny_vgg,resnet18,...] [--repeats 5] [--threads N]

For each model (random weights, float32, the batch and input size of ``CASES``) it times one training
step (forward, cross-entropy, backward, Adam) with the model's 4-D weights in the default layout and in
channels-last order, in interleaved rounds from the same starting weights, and prints the best time of
each, their ratio, and the largest difference between the two layouts' logits for the same weights
(relative to the largest logit): the same function, computed with other rounding. Over training such
differences grow (an Adam step turns a gradient's rounding into a whole step of lr when the gradient is
near zero), which is why a run in one layout does not reproduce a run in the other. The ratio is what
``memory_format: channels_last`` saves per step of training or plain fine-tuning; the corrections that
differentiate through heatmaps (RRR, ISNet) spend most of their step outside the convolutions and save
less.
"""
import argparse
import copy
import time

import torch
from torch.nn import functional as F

from models import get_model, get_model_spec
from utils.cli import main_entry
from utils.device import MEMORY_FORMATS, cpu_threads, use_memory_format
from utils.table import format_table

N_CLASSES = 2
CASES = {  # name: (batch, input shape without batch); other models: a batch of 8 at 224 px
    "tiny_vgg": (64, (3, 64, 64)),
    "tiny_resnet": (64, (3, 64, 64)),
    "resnet18": (16, (3, 224, 224)),
    "vgg16": (8, (3, 224, 224)),
}


def _step(model, optimizer, x, y):
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    optimizer.step()


def benchmark(name, repeats, seed=0):
    batch, shape = CASES.get(name, (8, (3, 224, 224)))
    torch.manual_seed(seed)
    start = get_model(name, N_CLASSES, img_size=shape[-1], in_channels=shape[0]).train()
    x, y = torch.randn(batch, *shape), torch.randint(0, N_CLASSES, (batch,))
    runs = {}
    for layout in MEMORY_FORMATS:
        model = use_memory_format(copy.deepcopy(start), layout)
        runs[layout] = (model, torch.optim.Adam(model.parameters(), lr=1e-3))
    with torch.no_grad():  # the same weights in both layouts: the logits differ by rounding only
        logits = {layout: model.eval()(x) for layout, (model, _) in runs.items()}
    for model, _ in runs.values():
        model.train()
    best = {layout: float("inf") for layout in runs}
    for _ in range(repeats):  # interleaved: a change of the machine's speed hits both layouts alike
        for layout, (model, optimizer) in runs.items():
            begin = time.perf_counter()
            _step(model, optimizer, x, y)
            best[layout] = min(best[layout], time.perf_counter() - begin)
    default, channels_last = logits["contiguous"], logits["channels_last"]
    return {"model": name, "batch": f"{batch} x {'x'.join(map(str, shape))}",
            "contiguous ms": 1000 * best["contiguous"], "channels_last ms": 1000 * best["channels_last"],
            "ratio": best["contiguous"] / best["channels_last"],
            "logit diff": f"{((default - channels_last).abs().max() / default.abs().max()).item():.1e}"}


@main_entry
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny_vgg,tiny_resnet,resnet18",
                        help="comma-separated model names (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per layout (the best is kept)")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    args = parser.parse_args(argv)
    names = [name for name in args.models.split(",") if name]
    for name in names:  # an unknown name stops here, in one line, before anything is timed
        get_model_spec(name)
    rows = []
    with cpu_threads(args.threads):
        for name in names:
            rows.append(benchmark(name, args.repeats))
            print(format_table(rows[-1:]), flush=True)  # progress: one model at a time
        print(f"\nCPU threads: {torch.get_num_threads()}, training step, best of {args.repeats} per layout\n")
    print(format_table(rows))
    return rows


if __name__ == "__main__":
    main()
