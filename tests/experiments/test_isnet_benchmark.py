"""The ISNet scaling benchmark runs end to end on a tiny setting and writes its table (timings are
printed, never asserted), for both backbones and every variant, each a real training step."""
import json
import math

import pytest
import torch

from experiments.benchmarks import isnet_scaling

ISNET_VARIANTS = list(isnet_scaling.VARIANTS)[1:]


def test_benchmark_writes_one_row_per_model_and_class_count_with_every_variant(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)  # the benchmark runs with one thread (more would crawl on a loaded machine)
    try:
        rows = isnet_scaling.main(["--classes", "2", "3", "--models", "tiny_vgg", "tiny_densenet", "--batch_size",
                                   "2", "--img_size", "16", "--repeats", "1", "--threads", "1", "--out", str(tmp_path)])
        # its fixed thread count is its own: later work in the process sums in the order it had before
        assert torch.get_num_threads() == threads + 1
    finally:
        torch.set_num_threads(threads)
    saved = json.loads((tmp_path / "results.json").read_text())["seconds_per_step"]
    expected = [("tiny_vgg", 2), ("tiny_vgg", 3), ("tiny_densenet", 2), ("tiny_densenet", 3)]
    assert [(row["model"], row["K"]) for row in saved] == expected == [(row["model"], row["K"]) for row in rows]
    for row in saved:
        assert all(row[v] > 0 for v in isnet_scaling.VARIANTS)
        assert all(row[f"{v}/plain"] == pytest.approx(row[v] / row["plain"]) for v in ISNET_VARIANTS)
        assert 0 < row["cpu/wall"] < 1.5  # one thread: at most about one CPU second per second
    table = (tmp_path / "results.md").read_text()
    assert all(f"{variant}/plain" in table for variant in ISNET_VARIANTS)


def test_variants_and_clock_can_be_chosen_and_bad_options_are_one_line_errors(tmp_path, capsys):
    rows = isnet_scaling.main(["--classes", "2", "--models", "tiny_densenet", "--variants", "selective+dual",
                               "--batch_size", "2", "--img_size", "16", "--repeats", "1", "--clock", "cpu",
                               "--out", str(tmp_path)])
    assert set(rows[0]) == {"model", "K", "plain", "selective+dual", "selective+dual/plain", "cpu/wall"}
    for argv, message in ((["--classes", "1"], "--classes: at least 2 classes"), (["--repeats", "0"], "--repeats")):
        with pytest.raises(SystemExit) as stop:
            isnet_scaling.main(argv + ["--out", str(tmp_path)])
        assert stop.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("model_name", isnet_scaling.MODELS)
def test_each_timed_step_is_the_variant_it_is_named(model_name):
    """What is timed: plain cross-entropy, and for every ISNet variant its own loss (cross-entropy
    weighed against its heatmap loss), from the same model on the same batch: a step that skipped the
    heatmap (or the hidden layers of LDS, or the z+ heatmap of dual) would be cheaper, and would give
    another variant's loss."""
    # 32 px: DenseNet's first inspectable layer is then 4 x 4, so LDS finds background there to penalise
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 1])
    foreground = torch.zeros(4, 1, 32, 32)
    foreground[..., 8:24, 8:24] = 1
    losses = {}
    for variant in isnet_scaling.VARIANTS:
        torch.manual_seed(0)
        model = isnet_scaling.get_model(model_name, 3, img_size=32).train()
        before = [p.detach().clone() for p in model.parameters()]
        losses[variant] = float(isnet_scaling.make_step(variant, model, 3, 3, model_name=model_name)(x, y, foreground))
        assert math.isfinite(losses[variant]), variant
        assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))  # a training step
    assert len({round(loss, 6) for loss in losses.values()}) == len(losses), losses  # six different losses
