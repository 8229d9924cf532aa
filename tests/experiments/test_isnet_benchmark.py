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
        assert row["selective/plain"] == row["selective"] / row["plain"]
    assert "selective/plain" in (tmp_path / "results.md").read_text()
