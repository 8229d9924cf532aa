"""Time of one ISNet training step against the number of classes K (the Faster ISNet claim):
``python -m experiments.benchmarks.isnet_scaling [--classes 2 10 100] [--models tiny_vgg tiny_densenet]
[--variants ...] [--batch_size 16] [--img_size 64] [--repeats 5] [--clock wall|cpu]``.

For each model (``tiny_vgg``; ``tiny_densenet``, the DenseNet backbone Faster ISNet was made for) with a
K-way head, on the same batch: plain training (cross-entropy); ISNet ``original`` (one heatmap per
class), ``selective`` and ``stochastic`` (one heatmap per sample); ``selective+LDS`` (LRP deep
supervision: the hidden layers' relevance penalised too) and ``selective+dual`` (the Dual ISNet: the
epsilon-LRP heatmap and the model's z+ composite, ``heatmap: dual``). A step = forward, loss, backward,
optimizer step; the median of ``--repeats`` timed rounds (variants take turns, each timed step right
after an untimed one of the same variant) after one warm-up step each; ``--clock cpu`` times the process's
CPU time instead of wall time, for a machine shared with other work. Not a test: timings depend on the
machine.
"""
import argparse
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from model_training.corrections.isnet import ISNet
from models import get_model, get_model_spec
from utils.cli import main_entry
from utils.config.mitigation import MitigationConfig
from utils.device import cpu_threads
from utils.errors import UserError
from utils.io import write_json, write_text
from utils.table import format_table, markdown_table

# variant -> the ISNet config keys it sets (None: plain training, no ISNet)
VARIANTS = {
    "plain": None,
    "original": {"variant": "original"},
    "selective": {"variant": "selective"},
    "stochastic": {"variant": "stochastic"},
    "selective+LDS": {"variant": "selective", "deep_supervision": True},
    "selective+dual": {"variant": "selective", "heatmap": "dual"},
}
MODELS = ("tiny_vgg", "tiny_densenet")


def make_step(variant, model, n_classes, in_channels, input_rule="zb", model_name="tiny_vgg"):
    """A closure performing one training step on a given batch; it returns the step's loss (detached)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    criterion = nn.CrossEntropyLoss()
    isnet = None
    if VARIANTS[variant] is not None:
        # fixed foreground bounds (C1/C2 are tuned on real data; here only the cost is measured)
        config = MitigationConfig(config_name="benchmark", artifact="benchmark", method="ISNet", from_scratch=True,
                                  model_name=model_name, C1=1.0, C2=10.0, C1_zplus=1.0, C2_zplus=10.0,
                                  input_rule=input_rule, **VARIANTS[variant])
        isnet = ISNet(config)
        bound = torch.full((in_channels, 1, 1), 2.5)
        layers = get_model_spec(model_name).layer_names if config.deep_supervision else ()
        isnet.setup(model, -bound, bound, layers, criterion)

    def step(x, y, foreground):
        logits = isnet.forward(model, x) if isnet is not None else model(x)
        loss = criterion(logits, y)
        if isnet is not None:
            loss = loss + isnet.extra_loss(model, (x, y, None, foreground, None), logits)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return loss.detach()

    return step


def time_steps(steps, batch, repeats, clock="wall"):
    """Median seconds per step of each variant. Variants take turns in every round, so load from
    other processes on a shared machine hits them alike instead of whichever ran during a spike.
    Each timed step follows an untimed one of the same variant: training runs one kind of step over
    and over, and the step after another variant's (the allocator's and the caches' state after,
    say, 100 heatmaps) measured up to 20% off.

    ``clock``: ``wall`` (elapsed time) or ``cpu`` (the process's CPU time: what a step costs without
    the time spent waiting while other processes hold the cores; with one thread, on a shared
    machine). Also returns the CPU time over the wall time of all timed steps: near the thread count
    on an idle machine, lower when other processes took the cores."""
    for step in steps.values():
        step(*batch)  # warm-up: allocations, lazy initialisation
    times = {name: [] for name in steps}
    cpu = wall = 0.0
    for _ in range(repeats):
        for name, step in steps.items():
            step(*batch)
            start, start_cpu = time.perf_counter(), time.process_time()
            step(*batch)
            elapsed, used = time.perf_counter() - start, time.process_time() - start_cpu
            times[name].append(elapsed if clock == "wall" else used)
            cpu, wall = cpu + used, wall + elapsed
    return {name: statistics.median(values) for name, values in times.items()}, cpu / wall


@main_entry
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, nargs="+", default=[2, 10, 100])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS)[1:], default=list(VARIANTS)[1:],
                        help="ISNet variants timed against plain training (default: all)")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--img_size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (fixed for comparable timings)")
    parser.add_argument("--input_rule", choices=["zb", "gradient"], default="zb")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="wall: elapsed time; cpu: the process's CPU time (a machine shared with other work)")
    parser.add_argument("--out", default="outputs/benchmarks/isnet_scaling")
    args = parser.parse_args(argv)
    if min(args.classes) < 2:
        raise UserError(f"--classes: at least 2 classes each, got {min(args.classes)}")
    if args.repeats < 1:
        raise UserError(f"--repeats: at least 1, got {args.repeats}")
    with cpu_threads(args.threads):
        return _run(args)


def _run(args):
    torch.manual_seed(0)
    x = torch.randn(args.batch_size, 3, args.img_size, args.img_size)
    foreground = torch.zeros(args.batch_size, 1, args.img_size, args.img_size)
    quarter = args.img_size // 4
    foreground[..., quarter:-quarter, quarter:-quarter] = 1
    variants = ["plain", *args.variants]
    rows = []
    for model_name in args.models:
        for k in args.classes:
            y = torch.randint(0, k, (args.batch_size,))
            steps = {}
            for variant in variants:
                torch.manual_seed(0)  # the same initial weights for every variant
                model = get_model(model_name, k, img_size=args.img_size).train()
                steps[variant] = make_step(variant, model, k, 3, args.input_rule, model_name)
            times, cpu_share = time_steps(steps, (x, y, foreground), args.repeats, args.clock)
            row = {"model": model_name, "K": k, **times}
            for variant in variants[1:]:
                row[f"{variant}/plain"] = row[variant] / row["plain"]
            row["cpu/wall"] = cpu_share
            print(", ".join(f"{v}: {times[v]:.3f} s" for v in variants) + f"  ({model_name}, K={k}, "
                  f"CPU/wall {cpu_share:.2f})", flush=True)
            rows.append(row)
    out = Path(args.out)
    write_json(out / "results.json", {"settings": vars(args), "seconds_per_step": rows})
    write_text(out / "results.md", markdown_table(rows) + "\n")
    print(f"\nseconds per training step (median, {args.clock} clock), ratios to plain; cpu/wall: the process's "
          "CPU time over the wall time of the timed steps (below the thread count: other processes took the cores)")
    print(format_table(rows))
    print(f"outputs: {out}")
    return rows


if __name__ == "__main__":
    main()
