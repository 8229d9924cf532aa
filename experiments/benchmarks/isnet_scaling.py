"""Time of one ISNet training step against the number of classes K (the Faster ISNet claim):
``python -m experiments.benchmarks.isnet_scaling [--classes 2 10 100] [--batch_size 16] [--img_size 64]``.

Same model architecture (``tiny_vgg`` with a K-way head), same batch, for plain training
(cross-entropy) and ISNet ``original`` (one heatmap per class), ``selective`` and ``stochastic``
(one heatmap per sample). A step = forward, loss, backward, optimizer step; the median of
``--repeats`` timed rounds (variants take turns, each timed step right after an untimed one of
the same variant) after one warm-up step each. Not a test: timings depend on the machine.
"""
import argparse
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from model_training.corrections.isnet import ISNet
from models import get_model
from utils.cli import main_entry
from utils.device import cpu_threads
from utils.config.mitigation import MitigationConfig
from utils.io import write_json, write_text
from utils.table import format_table, markdown_table

VARIANTS = ("plain", "original", "selective", "stochastic")


def make_step(variant, model, n_classes, in_channels, input_rule="zb"):
    """A closure performing one training step on a given batch; it returns the step's loss (detached)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    criterion = nn.CrossEntropyLoss()
    isnet = None
    if variant != "plain":
        config = MitigationConfig(config_name="benchmark", artifact="benchmark", method="ISNet", from_scratch=True,
                                  variant=variant, C1=1.0, C2=10.0, input_rule=input_rule)
        isnet = ISNet(config)
        bound = torch.full((in_channels, 1, 1), 2.5)
        isnet.setup(model, -bound, bound, (), criterion)

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


def time_steps(steps, batch, repeats):
    """Median seconds per step of each variant. Variants take turns in every round, so load from
    other processes on a shared machine hits them alike instead of whichever ran during a spike.
    Each timed step follows an untimed one of the same variant: training runs one kind of step over
    and over, and the step after another variant's (the allocator's and the caches' state after,
    say, 100 heatmaps) measured up to 20% off."""
    for step in steps.values():
        step(*batch)  # warm-up: allocations, lazy initialisation
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            step(*batch)
            start = time.perf_counter()
            step(*batch)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


@main_entry
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--classes", type=int, nargs="+", default=[2, 10, 100])
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--img_size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (fixed for comparable timings)")
    parser.add_argument("--input_rule", choices=["zb", "gradient"], default="zb")
    parser.add_argument("--out", default="outputs/benchmarks/isnet_scaling")
    args = parser.parse_args(argv)
    with cpu_threads(args.threads):
        return _run(args)


def _run(args):
    torch.manual_seed(0)
    x = torch.randn(args.batch_size, 3, args.img_size, args.img_size)
    foreground = torch.zeros(args.batch_size, 1, args.img_size, args.img_size)
    quarter = args.img_size // 4
    foreground[..., quarter:-quarter, quarter:-quarter] = 1
    rows = []
    for k in args.classes:
        y = torch.randint(0, k, (args.batch_size,))
        steps = {}
        for variant in VARIANTS:
            torch.manual_seed(0)
            model = get_model("tiny_vgg", k, img_size=args.img_size).train()
            steps[variant] = make_step(variant, model, k, 3, args.input_rule)
        times = time_steps(steps, (x, y, foreground), args.repeats)
        row = {"K": k, **times}
        for variant in VARIANTS[1:]:
            row[f"{variant}/plain"] = row[variant] / row["plain"]
        print(", ".join(f"{v}: {times[v]:.3f} s" for v in VARIANTS) + f"  (K={k})", flush=True)
        rows.append(row)
    out = Path(args.out)
    write_json(out / "results.json", {"settings": vars(args), "seconds_per_step": rows})
    write_text(out / "results.md", markdown_table(rows) + "\n")
    print("\nseconds per training step (median), ratios to plain")
    print(format_table(rows))
    print(f"outputs: {out}")
    return rows


if __name__ == "__main__":
    main()
