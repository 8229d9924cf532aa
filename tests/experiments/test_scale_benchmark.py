"""The scale benchmark runs its three real steps end to end on a tiny model and writes finite, positive
per-image numbers with their ISIC 2019 extrapolation (timings are checked for sanity, never for speed)."""
import json
import math

import pytest

from experiments.benchmarks import scale


def test_tiny_run_writes_per_image_times_store_sizes_and_extrapolations(tmp_path, capsys):
    output = tmp_path / "scale.json"
    scale.main(["--models", "tiny_vgg", "--img_size", "32", "--n_images", "8", "--methods", "RRR",
                "--batch_size", "8", "--output", str(output), "--work_dir", str(tmp_path / "work")])
    saved = json.loads(output.read_text())
    assert "commit" in saved["provenance"] and saved["cpu_model"]
    assert saved["gpu_speedup"] == scale.DEFAULT_GPU_SPEEDUP and "assumed" in saved["gpu_speedup_source"]
    result = saved["models"]["tiny_vgg"]
    steps = [result["preprocessing"], result["corrections"]["RRR"], result["evaluation"]]
    for step in steps:
        assert step["n_images"] == 8
        assert math.isfinite(step["s_per_image"]) and step["s_per_image"] > 0
        assert step["isic2019_hours_here"] == pytest.approx(step["s_per_image"] * 25331 / 3600, rel=1e-12)
        assert step["isic2019_hours_gpu"] == pytest.approx(step["isic2019_hours_here"] / saved["gpu_speedup"],
                                                           rel=1e-12)
    store = result["preprocessing"]
    assert store["store_bytes"] > 0 and math.isfinite(store["store_mb_per_image"])
    assert store["store_mb_per_image"] == pytest.approx(store["store_bytes"] / 8 / 1e6)
    assert result["corrections"]["RRR"]["epoch_seconds"] > 0
    assert result["evaluation"]["subsets"] == {"clean": 8, "attacked": 8, "ch": 8}
    table = capsys.readouterr().out
    assert "ASSUMED 30x" in table and "RRR: 1 epoch" in table
    assert "ISIC 2019" in output.with_suffix(".md").read_text()
    # the README block is the written table, from the JSON alone
    from experiments.readme_numbers import scale_blocks

    block = scale_blocks(output)["scale_estimate"]
    assert block == output.with_suffix(".md").read_text().strip() and "| tiny_vgg | preprocessing |" in block


@pytest.mark.parametrize("argv,message", [
    (["--models", "nope"], "unknown model 'nope'"),
    (["--n_images", "0"], "--n_images: at least 1, got 0"),
    (["--methods", "RRR,Nope"], "unknown correction method 'Nope'"),
    (["--gpu_speedup", "0"], "--gpu_speedup: a positive number"),
])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as stop:
        scale.main([*argv, "--output", str(tmp_path / "scale.json")])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "scale.json").exists()
