"""The whole audit on a reduced config: report files, offline HTML, every metrics section, caching."""
import json
import re

import pytest

from experiments.run_pipeline import run

REDUCED = {
    "dataset_name": "synth_derm", "img_size": 32, "seed": 0, "model_name": "tiny_vgg", "artifact": "band_aid",
    "layer_name": "features.6", "batch_size": 32,
    "dataset_options": {"n_train": 120, "n_val": 40, "n_test": 40},
    "training": {"num_epochs": 2, "lr": 0.003},
    "audit": {"heatmap_size": 16, "spray_n_neighbors": 8, "spray_n_eigval": 8, "spray_n_clusters": [2, 3],
              "spray_min_cluster_size": 5, "lof_n_neighbors": 8, "dora_sams_steps": 3, "dora_n_refs": 2,
              "crp_n_refs": 2, "retrieval_top_k": 8, "embedding_2d": "mds", "n_outliers": 4},
    "annotation": {"n_seeds": 2, "seed_from": "spray"},
    "mitigation_common": {"num_epochs": 1, "lr": 0.001, "eval_max_samples": 10, "n_heatmaps": 2},
    "mitigation": [{"method": "Vanilla"}, {"method": "PClarc"},
                   {"method": "RRR", "lamb": 1.0, "sweep": [1.0, 10.0], "seeds": [0, 1]}],
}
SECTIONS = {"data", "train", "reveal", "annotate", "retrieve", "localize", "mitigate", "evaluate", "headline",
            "configs", "versions"}


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    import yaml

    folder = tmp_path_factory.mktemp("pipeline")
    config = folder / "reduced.yaml"
    config.write_text(yaml.safe_dump({**REDUCED, "output_dir": str(folder / "outputs")}))
    root, _ = run(config, log=lambda *_: None)
    return config, root


def test_report_files_and_sections(pipeline_run):
    _, root = pipeline_run
    for name in ("report.html", "report.md", "metrics.json"):
        assert (root / name).is_file(), name
    metrics = json.loads((root / "metrics.json").read_text())
    assert SECTIONS <= set(metrics)
    # the config file of every step, to rerun it by hand
    assert {"audit", "annotation"} <= set(metrics["configs"]) and any(k.startswith("mitigation/") for k in metrics["configs"])
    assert {row["method"] for row in metrics["evaluate"]["comparison"]} >= {"Vanilla", "PClarc"}
    assert metrics["retrieve"]["variants"]
    # RRR: a sweep of two strengths, each with two seeds; one chosen, every candidate in the sweep table
    rrr = [row for row in metrics["evaluate"]["all_runs"] if row["method"] == "RRR"]
    assert sorted(row["strength"] for row in rrr) == ["lamb=1", "lamb=10"] and all(row["seeds"] == 2 for row in rrr)
    chosen = [row for row in metrics["evaluate"]["comparison"] if row["method"] == "RRR"]
    assert len(chosen) == 1 and chosen[0]["status"] in ("ok", "degraded", "collapsed")
    assert len(metrics["mitigate"]["runs"]) == 2 + 4
    assert any(row["step"] == "best correction" for row in metrics["headline"])
    report = (root / "report.md").read_text()
    assert "Every strength and configuration (sweep)" in report and " ± " in report


def test_html_is_self_contained(pipeline_run):
    _, root = pipeline_run
    page = (root / "report.html").read_text()
    assert "<img" in page and "data:image/png;base64," in page
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:|//|file:)""", page)
    assert "<script" not in page and "<link" not in page and "@import" not in page


def test_second_run_is_cached_and_identical(pipeline_run):
    config, root = pipeline_run
    before = (root / "metrics.json").read_text()
    lines = []
    run(config, log=lines.append)
    assert all(line.endswith("cached") for line in lines if line.startswith("["))
    assert (root / "metrics.json").read_text() == before


def test_changed_mitigation_reruns_only_mitigation(pipeline_run, tmp_path):
    import yaml

    config, root = pipeline_run
    changed = yaml.safe_load(config.read_text())
    changed["mitigation_common"]["lr"] = 0.002
    config.write_text(yaml.safe_dump(changed))
    lines = []
    run(config, log=lines.append)
    rerun = [line.split("]")[1].split(":")[0].strip() for line in lines if line.startswith("[") and "done" in line]
    assert rerun == ["Mitigation", "Re-evaluation", "Report"]


# the same audit with only the data keys changed (other models and the ECG data: test_model_task_matrix)
OTHER_DATA = {"image_folder": {"dataset_name": "image_folder", "img_size": 32, "layer_name": "features.6"}}


@pytest.mark.parametrize("name", list(OTHER_DATA))
def test_same_command_on_other_data(name, tmp_path):
    """Bring-your-own images (an export of the embedded data)."""
    import yaml

    from datasets.export_image_folder import main as export_main

    config = {**REDUCED, **OTHER_DATA[name], "output_dir": str(tmp_path / "outputs"),
              "mitigation": [{"method": "Vanilla"}, {"method": "RRR", "lamb": 10.0}]}
    if name == "image_folder":
        source = tmp_path / "source.yaml"
        source.write_text(yaml.safe_dump({k: REDUCED[k] for k in ("dataset_name", "img_size", "dataset_options")}))
        export_main(["--config_file", str(source), "--out", str(tmp_path / "images")])
        config.pop("dataset_options")
        config["data_paths"] = [str(tmp_path / "images")]
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in config.items() if v is not None}))
    root, results = run(path, log=lambda *_: None)
    metrics = json.loads((root / "metrics.json").read_text())
    assert SECTIONS <= set(metrics) and (root / "report.html").is_file()
    assert {row["method"] for row in metrics["evaluate"]["comparison"]} >= {"Vanilla", "RRR"}
    assert metrics["localize"]["n"] > 0 and 0.0 <= metrics["localize"]["iou_mean"] <= 1.0
    # image_folder: the annotated band-aids are pasted into the images without one (clean/attacked)
    assert set(metrics["train"]["test"]) == {"clean", "attacked", "ch"}
    assert all(row["attacked"] == row["attacked"] for row in metrics["evaluate"]["comparison"])  # not NaN


def _generated_files(base):
    """The files of readme_numbers.required_blocks() under ``base``, each with its blocks between prose."""
    from experiments.readme_numbers import required_blocks

    for relative, names in required_blocks().items():
        path = base / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("# Title\n\nprose before\n\n" + "".join(
            f"<!-- numbers:{name} -->\nold {name}\n<!-- /numbers:{name} -->\n\nprose between\n\n" for name in names))
    (base / "static").mkdir()


def test_readme_numbers_are_generated_from_the_outputs(pipeline_run, tmp_path):
    """Blocks hold the pipeline's own headline (its computed verdicts), stamped with commit and CPU, the
    step times and its figures; prose outside the blocks is kept; a hand edit is found by --check."""
    from experiments.readme_numbers import regenerate, required_blocks

    _, root = pipeline_run
    _generated_files(tmp_path)
    (tmp_path / "shapes.yaml").write_text(  # a training config named by a README block, shrunk
        "dataset_name: synth_shapes\nimg_size: 32\nmodel_name: tiny_vgg\nnum_epochs: 2\nbatch_size: 32\n"
        f"dataset_options: {{n_train: 60, n_val: 30, n_test: 30}}\noutput_dir: {tmp_path / 'outputs'}\n")
    rows = regenerate(root, base=tmp_path, trainings={"training_synth_shapes": "shapes.yaml"})
    readme = (tmp_path / "README.md").read_text()
    trained = json.loads((tmp_path / "outputs" / "training" / "synth_shapes" / "tiny_vgg" / "shapes" /
                          "metrics.json").read_text())
    assert (f"Test accuracy: clean {trained['test']['clean']['accuracy']:.3f}, attacked "
            f"{trained['test']['attacked']['accuracy']:.3f}, ch {trained['test']['ch']['accuracy']:.3f} "
            f"(best of 2 epochs: epoch {trained['best_epoch']};") in readme
    assert f"commit {trained['provenance']['commit']}" in readme
    assert "old training_synth_ecg" in readme  # not asked for: kept
    metrics = json.loads((root / "metrics.json").read_text())
    for row in metrics["headline"]:  # the verdicts as computed, never typed
        assert f"| {row['step']} | {row['result']} |" in readme
    assert "commit " in readme and "CPU " in readme and "seed 0, one run" in readme
    assert re.search(r"pipeline \d+ s \(data \d+ s, train \d+ s, preprocess \d+ s", readme)
    assert readme.startswith("# Title\n\nprose before\n\n") and readme.count("prose between") == len(required_blocks()["README.md"])
    assert "old benchmark_synth_derm_band_aid" in readme  # no benchmark given: kept
    states = {(r["file"], r["block"]): r["state"] for r in rows}
    assert states[("README.md", "benchmark_synth_derm_band_aid")] == "not measured: kept"
    assert (tmp_path / "static" / "annotation_curve.png").read_bytes()[:4] == b"\x89PNG"
    # the step READMEs get the reveal and localization tables as the pipeline recorded them
    records = {step: json.loads((root / "steps" / f"{step}.json").read_text())["result"]["tables"]
               for step in ("reveal", "localize")}
    reveal = (tmp_path / "experiments" / "reveal" / "README.md").read_text()
    (title, spray_rows), = [(k, v) for k, v in records["reveal"].items() if k.startswith("Does the reveal")]
    assert f"{title}:" in reveal and all(f"| {row['value']} | {row['passes']} |" in reveal for row in spray_rows)
    localization = (tmp_path / "experiments" / "localization" / "README.md").read_text()
    (masks,), = [v for k, v in records["localize"].items() if k.startswith("Localization against")]
    assert f"| {masks['split']} | {masks['layer']} | {masks['n']} | {masks['iou_mean']:.3f} |" in localization
    assert "seed 0, one run" in localization

    assert all(r["state"] != "rewritten" for r in regenerate(root, base=tmp_path, check=True))
    (tmp_path / "README.md").write_text(readme.replace("| original model | clean", "| original model | clean 0.999,"))
    rewritten = [r for r in regenerate(root, base=tmp_path, check=True) if r["state"] == "rewritten"]
    assert [(r["file"], r["block"]) for r in rewritten] == [("README.md", "demo_headline")]
    assert "clean 0.999," in (tmp_path / "README.md").read_text()  # --check writes nothing


def test_readme_numbers_refuse_a_file_without_its_block(pipeline_run, tmp_path):
    from experiments.readme_numbers import regenerate
    from utils.errors import UserError

    _, root = pipeline_run
    _generated_files(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(readme.read_text().replace("<!-- numbers:demo_timing -->", ""))
    with pytest.raises(UserError, match="no block <!-- numbers:demo_timing -->"):
        regenerate(root, base=tmp_path)


def test_readme_numbers_refuse_a_missing_benchmark_folder_before_running(tmp_path, capsys, monkeypatch):
    from experiments import readme_numbers

    monkeypatch.setattr("experiments.run_pipeline.run", lambda *a, **k: pytest.fail("the demo ran first"))
    with pytest.raises(SystemExit) as stop:
        readme_numbers.main(["--benchmark_dir", str(tmp_path / "nope")])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip() == (f"--benchmark_dir: {tmp_path / 'nope'} is not a folder; run python -m "
                                               "experiments.benchmarks.mitigation --output_dir DIR first")


def test_the_readmes_hold_every_generated_block():
    from experiments.readme_numbers import ROOT, required_blocks
    from utils.readme_blocks import block_names

    for relative, names in required_blocks().items():
        assert set(names) <= set(block_names((ROOT / relative).read_text())), relative


def test_recorded_annotations_are_used_as_they_are(pipeline_run, tmp_path):
    """annotation.simulate: false takes the audit's annotation_file; without one, a one-line error.

    Last in this file: it re-runs the shared pipeline folder with other annotations (reusing its training)."""
    import yaml

    from utils.errors import UserError

    config, root = pipeline_run
    recorded = yaml.safe_load(config.read_text())
    recorded.update(config_name="reduced", annotation={"simulate": False}, mitigation=[{"method": "PClarc"}])
    path = tmp_path / "recorded.yaml"
    path.write_text(yaml.safe_dump(recorded))
    with pytest.raises(UserError, match="'annotation.simulate': false needs 'audit.annotation_file'"):
        run(path, log=lambda *_: None)
    train = json.loads((root / "metrics.json").read_text())["annotate"]["seeds"]
    annotations = tmp_path / "annotations.json"
    annotations.write_text(json.dumps({"band_aid": train}))
    recorded["audit"] = {**recorded["audit"], "annotation_file": str(annotations)}
    path.write_text(yaml.safe_dump(recorded))
    _, results = run(path, log=lambda *_: None)
    assert results["annotate"]["metrics"]["recorded"] == len(train)
    assert results["retrieve"]["metrics"]["variants"]


def test_a_step_that_refuses_says_which_step_it_is(tmp_path, monkeypatch):
    """The pipeline calls library functions, never entry points: a step's UserError stays a UserError
    (no SystemExit escaping the pipeline), one line naming the step and its title."""
    from utils.errors import UserError
    from utils.pipeline import runner

    def refuse(ctx):
        raise UserError("no samples carry 'band_aid'")

    monkeypatch.setattr(runner, "STEPS", {"annotate": runner.Step("annotate", refuse, lambda ctx: {}, title="Annotation")})
    with pytest.raises(UserError, match=r"^step 'annotate' \(Annotation\): no samples carry 'band_aid'$"):
        runner.run_steps(runner.Context(config=None, root=tmp_path / "pipeline"), log=lambda *_: None)


def test_until_stops_after_its_step_and_a_later_run_continues(tmp_path, monkeypatch):
    from utils.errors import UserError
    from utils.pipeline import runner

    calls = []

    def step(name):
        return runner.Step(name, lambda ctx: calls.append(name) or {"metrics": {}}, lambda ctx: {},
                           depends=() if name == "first" else ("first",))

    monkeypatch.setattr(runner, "STEPS", {name: step(name) for name in ("first", "second", "third")})

    def run(**options):
        calls.clear()
        results = runner.run_steps(runner.Context(config=None, root=tmp_path / "pipeline"), log=lambda *_: None,
                                   **options)
        return sorted(results), list(calls)

    assert run(until="second") == (["first", "second"], ["first", "second"])
    assert run(until="second") == (["first", "second"], [])  # cached, and still nothing after it
    assert run() == (["first", "second", "third"], ["third"])
    with pytest.raises(UserError, match="--until: unknown step 'fourth'; steps: first, second, third"):
        run(until="fourth")


def test_reveal_seeds_states_each_models_verdicts_as_the_headline_does(pipeline_run, tmp_path):
    """train_seed 0 is the pipeline's own model (train_seed defaults to seed): its row repeats the
    headline's reveal verdicts; the seed's config keeps the pipeline's settings and adds seed and layout."""
    import yaml

    from experiments.benchmarks import reveal_seeds

    config, root = pipeline_run
    summary = reveal_seeds.measure(config, [0], "contiguous", tmp_path / "seeds", log=lambda *_: None)
    [row] = summary["rows"]
    reveal = next(r["result"] for r in json.loads((root / "metrics.json").read_text())["headline"]
                  if r["step"] == "reveal")
    assert reveal == (f"artifact cluster found by SpRAy: {row['spray']}; "
                      f"artifact neuron among top outliers: {row['neuron']}")
    assert summary["spray_found"] == (row["spray"] == "yes") and summary["models"] == 1
    assert 0 <= row["attacked"] <= 1 and 0 <= row["coverage"] <= 1
    written = yaml.safe_load((tmp_path / "seeds" / "configs" / "reduced_train_seed0_contiguous.yaml").read_text())
    assert written["training"] == {**REDUCED["training"], "train_seed": 0, "memory_format": "contiguous"}
    saved = json.loads((tmp_path / "seeds" / "reveal_seeds_reduced_contiguous.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(summary["rows"]))


def test_headline_seeds_repeats_the_headline_per_run_and_summarises_over_seeds(pipeline_run, tmp_path):
    """train_seed 0 in the default layout is the pipeline's own model: its values are the headline's; the
    table states a verdict as "k of n", a number as mean ± sd, and the paired difference of two layouts."""
    from experiments.benchmarks import headline_seeds

    config, root = pipeline_run
    headline = {r["step"]: r["result"] for r in json.loads((root / "metrics.json").read_text())["headline"]}
    _, results = run(config, log=lambda *_: None)  # cached: the fixture's run
    values = headline_seeds.headline_values(results, root, 0, "contiguous")
    assert headline["reveal"] == (f"artifact cluster found by SpRAy: {'yes' if values[headline_seeds.VERDICTS[0]] else 'no'}; "
                                  f"artifact neuron among top outliers: {'yes' if values[headline_seeds.VERDICTS[1]] else 'no'}")
    assert headline["best correction"].startswith(values["best correction"])
    comparison = json.loads((root / "metrics.json").read_text())["evaluate"]["comparison"]
    assert {(k, values[f"{r['method']}: {k.replace('_', ' ')}"]) for r in comparison if r["method"] != "original"
            for k in ("gap_closed", "clean_change")} == {(k, r[k]) for r in comparison if r["method"] != "original"
                                                          for k in ("gap_closed", "clean_change")}
    assert values["pipeline seconds"] > 0
    runs = {"contiguous": [values, {**values, "Vanilla: gap closed": 0.5, headline_seeds.VERDICTS[0]: True}],
            "channels_last": [{**values, "Vanilla: gap closed": 0.2, headline_seeds.VERDICTS[0]: False},
                              {**values, "Vanilla: gap closed": 0.7, headline_seeds.VERDICTS[0]: False}]}
    runs["contiguous"][0]["Vanilla: gap closed"] = 0.1
    rows = headline_seeds.table(runs, [0, 1], ["contiguous", "channels_last"])
    gap = [r for r in rows if r["number"] == "Vanilla: gap closed"]
    assert [r["over seeds"] for r in gap] == ["0.300 ± 0.283", "0.450 ± 0.354"]
    assert gap[1]["paired diff"] == "+0.150" and gap[1]["p"] == "0.2"  # differences 0.1 and 0.2: t = 3, df 1
    found = [r for r in rows if r["number"] == headline_seeds.VERDICTS[0]]
    assert found[1]["over seeds"] == "0 of 2" and found[1]["p"] == ""
    kept = [r["over seeds"] for r in rows if r["number"] == "RRR: strength kept"]  # which strength, how often
    assert values["RRR: strength kept"] in ("lamb=1", "lamb=10") and kept == [f"{values['RRR: strength kept']} 2"] * 2
    text = headline_seeds.markdown({"memory_formats": ["contiguous", "channels_last"], "train_seeds": [0, 1],
                                    "table": rows, "provenance": {"commit": "abc1234"}})
    assert "| number | contiguous | channels_last | paired diff (channels_last - contiguous) | p (paired t) |" in text
    assert "| Vanilla: gap closed | 0.300 ± 0.283 | 0.450 ± 0.354 | +0.150 | 0.2 |" in text
    assert "commit abc1234" in text and "training seeds 0, 1, one run each" in text


@pytest.mark.parametrize("benchmark", ["reveal_seeds", "headline_seeds"])
def test_seed_benchmarks_refuse_a_bad_config_before_training(benchmark, tmp_path, capsys):
    import importlib

    module = importlib.import_module(f"experiments.benchmarks.{benchmark}")
    with pytest.raises(SystemExit) as stop:
        module.main(["--config_file", str(tmp_path / "missing.yaml"), "--output_dir", str(tmp_path / "out")])
    assert stop.value.code == 2 and "missing.yaml" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
