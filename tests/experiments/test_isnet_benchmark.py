"""The ISNet scaling benchmark runs end to end on a tiny setting and writes its table (timings are
printed, never asserted)."""
import json

import torch

from experiments.benchmarks import isnet_scaling


def test_benchmark_writes_one_row_per_class_count_with_every_variant(tmp_path):
    threads = torch.get_num_threads()
    rows = isnet_scaling.main(["--classes", "2", "3", "--batch_size", "2", "--img_size", "16",
                               "--repeats", "1", "--threads", str(threads + 1), "--out", str(tmp_path)])
    # its fixed thread count is its own: later work in the process sums in the order it had before
    assert torch.get_num_threads() == threads
    saved = json.loads((tmp_path / "results.json").read_text())["seconds_per_step"]
    assert [row["K"] for row in saved] == [2, 3] == [row["K"] for row in rows]
    for row in saved:
        assert all(row[v] > 0 for v in isnet_scaling.VARIANTS)
    table = (tmp_path / "results.md").read_text()
    assert all(f"{variant}/plain" in table for variant in isnet_scaling.VARIANTS[1:])


def test_each_timed_step_is_the_variant_it_is_named():
    """What is timed: plain cross-entropy, and for every ISNet variant its own loss (cross-entropy
    weighed against its heatmap loss), from the same model on the same batch: a step that skipped the
    heatmap would be cheap, and would give the plain loss."""
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 1])
    foreground = torch.zeros(4, 1, 16, 16)
    foreground[..., 4:12, 4:12] = 1
    losses = {}
    for variant in isnet_scaling.VARIANTS:
        torch.manual_seed(0)
        model = isnet_scaling.get_model("tiny_vgg", 3, img_size=16).train()
        before = [p.detach().clone() for p in model.parameters()]
        losses[variant] = float(isnet_scaling.make_step(variant, model, 3, 3)(x, y, foreground))
        assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))  # a training step
    assert len({round(loss, 6) for loss in losses.values()}) == len(losses)  # four different losses
