"""The scaling benchmark: its quick run measures every step in a fresh process per size, fits the
growth exponents from the measured times and writes its table; a second run reuses the sizes
already measured. Timings are checked for sanity, never for speed."""
import json
import math

import pytest

from experiments.benchmarks import scaling


def test_growth_exponent_is_the_log_log_slope():
    sizes = [1000, 4000, 16000]
    assert scaling.growth_exponent(sizes, [2.0 * n ** 1.5 for n in sizes]) == pytest.approx(1.5)
    assert scaling.growth_exponent(sizes, [3.0, 3.0, 3.0]) == pytest.approx(0.0, abs=1e-12)
    assert scaling.growth_exponent([1000], [1.0]) is None
    assert scaling.growth_exponent(sizes, [None, 0.0, 2.0]) is None  # one usable point


def test_quick_run_table_and_reuse(tmp_path, capsys):
    out = tmp_path / "scaling"
    report = scaling.main(["--quick", "--output_dir", str(out)])
    saved = json.loads((out / "scaling.json").read_text())
    assert saved["settings"]["sizes"] == list(scaling.QUICK["sizes"]) and "commit" in saved["provenance"]
    series = saved["results"]["2"]
    records = sorted(series["records"], key=lambda r: r["settings"]["n"])
    sizes = [r["settings"]["n"] for r in records]
    expected_steps = {"reveal: SpRAy (all classes)", "reveal: CRP relevance patterns (all classes)",
                      "reveal: DORA (real_act references)", "annotation rounds (simulated reviewer)",
                      "retrieval CAV (fit and score)", "all steps"}
    assert [row["step"] for row in series["table"]][-1] == "all steps"
    assert {row["step"] for row in series["table"]} == expected_steps
    for row in series["table"]:
        assert row["sizes"] == sizes
        measured = [next((s for s in r["steps"] + [r["total"]] if s["step"] == row["step"])) for r in records]
        assert row["cpu_s"] == [m["cpu_s"] for m in measured] and row["wall_s"] == [m["wall_s"] for m in measured]
        assert all(t > 0 and math.isfinite(t) for t in row["cpu_s"] + row["wall_s"])
        for key, times in (("exponent_cpu", row["cpu_s"]), ("exponent_wall", row["wall_s"])):
            assert math.isfinite(row[key]) and row[key] == pytest.approx(scaling.growth_exponent(sizes, times))
        assert row["peak_rss_mib"] > 0
    for record in records:  # each size measured in its own process, memory included
        assert record["ru_maxrss_self_mib"] > 0 and record["total"]["peak_rss_mib"] > 0
    assert report["bars"] is None  # the bars need 8 classes at N=25,000
    markdown = (out / "scaling.md").read_text()
    assert "b (CPU)" in markdown and "SpRAy" in markdown
    from experiments.readme_numbers import scaling_blocks  # the README block is that table, from the JSON alone

    assert scaling_blocks(out / "scaling.json")["scaling_audit"] == markdown.rstrip("\n")
    printed = capsys.readouterr().out
    assert "b (wall)" in printed and "all steps" in printed

    scaling.main(["--quick", "--output_dir", str(out)])  # resumable: nothing is measured again
    assert capsys.readouterr().out.count("reused") == len(sizes)
    assert json.loads((out / "scaling.json").read_text())["results"] == saved["results"]


def test_audit_mode_config_is_the_demo_audit_with_one_correction_epoch(tmp_path):
    """The pipeline config an audit-mode run writes is valid and holds one correction run of one
    epoch, no strength sweep, every test artifact sample evaluated, N split 80/10/10."""
    import yaml

    from utils.config import load_config
    from utils.pipeline.config import PipelineConfig

    spec = {"classes": 8, "n": 25000, "img_size": 64, "method": "RRR", "spray_workers": 1,
            "ckpt": str(tmp_path / "model.pt"), "work": str(tmp_path)}
    values = scaling.pipeline_values(spec)
    assert values["dataset_name"] == "synth_shapes" and values["dataset_options"] == {
        "n_classes": 8, "n_train": 20000, "n_val": 2500, "n_test": 2500}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(values))
    config = load_config(path, PipelineConfig)
    (run,) = config.mitigation_configs(spec["ckpt"])
    assert run.method == "RRR" and run.num_epochs == 1 and not run.sweep and run.eval_max_samples is None
    assert scaling.dataset_for(2)[0] == "synth_derm"
    with pytest.raises(Exception, match="--classes"):
        scaling.dataset_for(3)
