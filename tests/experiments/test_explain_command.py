"""``python -m experiments.explain``: heatmap PNGs and index.json for a folder of images, from checkpoints
written by the project's own save function (a training checkpoint, a corrected one with its hook)."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from datasets.files import read_image
from experiments import explain as command
from model_training.corrections.loading import load_corrected_model
from models import get_model
from tests.conftest import ROOT
from utils.checkpoint import save_checkpoint
from utils.config.schemas import TrainingConfig
from utils.lrp import explain

SIZE = 16
SYNTH_DERM_MEAN, SYNTH_DERM_STD = (0.80, 0.61, 0.51), (0.13, 0.12, 0.12)  # datasets/synth_derm.py


def _checkpoint(path, model_name="tiny_vgg", **extra):
    torch.manual_seed(0)
    model = get_model(model_name, 3, img_size=SIZE)
    config = TrainingConfig(config_name="tiny", dataset_name="synth_derm", model_name=model_name, img_size=SIZE)
    return save_checkpoint(path, model, model_name, 3, config.model_dump(mode="json"), **extra)


def _images(folder):
    """Three tiny PNGs of other sizes (RGB, grey, RGBA) and a file that is no image."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(folder / "b.png")
    Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(rng.integers(0, 256, (16, 16, 4), dtype=np.uint8)).save(folder / "c.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def _as_the_model_reads(path):
    x = read_image(path, SIZE)
    return (x - torch.tensor(SYNTH_DERM_MEAN).view(3, 1, 1)) / torch.tensor(SYNTH_DERM_STD).view(3, 1, 1)


def _run(*argv):
    return command.main([str(a) for a in argv])


def test_training_checkpoint_end_to_end(tmp_path, capsys):
    ckpt, images, out = _checkpoint(tmp_path / "best.pt"), _images(tmp_path / "images"), tmp_path / "out"
    _run("--ckpt_path", ckpt, "--images", images, "--out", out)
    printed = capsys.readouterr().out
    assert "records no normalisation: using that of its data set 'synth_derm'" in printed
    assert "a.png" in printed and "relevance_sum" in printed  # the results table
    index = json.loads((out / "index.json").read_text())
    assert index["mean"] == list(SYNTH_DERM_MEAN) and index["std"] == list(SYNTH_DERM_STD)
    assert [row["image"] for row in index["samples"]] == ["a.png", "b.png", "c.png"]  # sorted; no notes.txt
    assert sorted(p.name for p in out.iterdir()) == ["a_heatmap.png", "b_heatmap.png", "c_heatmap.png", "index.json"]
    # the numbers are those of the model on the image as training normalised it
    model = load_corrected_model(ckpt)
    x = torch.stack([_as_the_model_reads(images / row["image"]) for row in index["samples"]])
    reference = explain(model, x)
    for i, row in enumerate(index["samples"]):
        assert row["predicted"] == row["explained"] == int(reference.target[i])
        assert row["logit"] == pytest.approx(float(reference.logits[i, reference.target[i]]), rel=1e-5)
        assert row["relevance_sum"] == pytest.approx(float(reference.heatmap[i].sum()), rel=1e-4, abs=1e-9)
        png = np.asarray(Image.open(out / row["heatmap"]))
        assert png.shape == (SIZE, SIZE, 3)
        # the pixel of largest |relevance| is saturated red (for the class) or blue (against it)
        relevance = reference.heatmap[i].sum(0)
        peak = np.unravel_index(int(relevance.abs().argmax()), relevance.shape)
        assert tuple(png[peak]) == ((255, 0, 0) if relevance[peak] > 0 else (0, 0, 255))


def test_rule_target_and_image_size(tmp_path, capsys):
    ckpt, images = _checkpoint(tmp_path / "best.pt"), _images(tmp_path / "images")
    _run("--ckpt_path", ckpt, "--images", images, "--out", tmp_path / "eps", "--target", 2)
    _run("--ckpt_path", ckpt, "--images", images, "--out", tmp_path / "zplus", "--target", 2, "--rule", "z_plus",
         "--img_size", 24)
    eps = json.loads((tmp_path / "eps" / "index.json").read_text())["samples"]
    zplus = json.loads((tmp_path / "zplus" / "index.json").read_text())
    assert all(row["explained"] == 2 for row in eps + zplus["samples"])
    assert zplus["rule"] == "z_plus" and zplus["img_size"] == 24
    assert np.asarray(Image.open(tmp_path / "zplus" / "a_heatmap.png")).shape == (24, 24, 3)
    assert eps[0]["relevance_sum"] != pytest.approx(zplus["samples"][0]["relevance_sum"], rel=1e-3)


def test_corrected_checkpoint_is_explained_with_its_hook(tmp_path, capsys):
    """A P-ClArC checkpoint as the mitigation step writes it: the projection hook changes the logits and
    the heatmaps, and the command gives the corrected model's."""
    images = _images(tmp_path / "images")
    plain = _checkpoint(tmp_path / "best.pt")
    torch.manual_seed(1)
    state = {"direction": torch.randn(64), "mu": 3.0, "mode": "cavs_max", "axis": 1}
    corrected = _checkpoint(tmp_path / "corrected.pt", in_channels=3, img_size=SIZE,
                            correction={"method": "PClarc", "layer_name": "features.10", "state": state})
    for rule in ("epsilon", "z_plus"):
        for ckpt in (plain, corrected):
            _run("--ckpt_path", ckpt, "--images", images, "--out", tmp_path / f"{ckpt.stem}_{rule}", "--rule", rule,
                 "--target", 0)
        rows = {ckpt.stem: json.loads((tmp_path / f"{ckpt.stem}_{rule}" / "index.json").read_text())["samples"]
                for ckpt in (plain, corrected)}
        model = load_corrected_model(corrected)
        assert model.correction_hook is not None
        x = _as_the_model_reads(images / "a.png")[None]
        with torch.no_grad():
            assert rows["corrected"][0]["logit"] == pytest.approx(float(model(x)[0, 0]), rel=1e-5)
        assert rows["corrected"][0]["logit"] != pytest.approx(rows["best"][0]["logit"], rel=1e-3)
        assert rows["corrected"][0]["relevance_sum"] != pytest.approx(rows["best"][0]["relevance_sum"], rel=1e-3)


def _error(capsys, *argv):
    """The error line (the last on stderr: a progress bar may precede it), after checking the exit code."""
    with pytest.raises(SystemExit) as stop:
        _run(*argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return err.splitlines()[-1]


def test_bad_input_is_one_line_exit_2(tmp_path, capsys):
    ckpt, images, out = _checkpoint(tmp_path / "best.pt"), _images(tmp_path / "images"), tmp_path / "out"
    assert _error(capsys, "--ckpt_path", tmp_path / "nope.pt", "--images", images, "--out", out).startswith(
        "checkpoint not found: ")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    assert "--images: no image files in" in _error(capsys, "--ckpt_path", ckpt, "--images", tmp_path / "empty",
                                                   "--out", out)
    assert "--images: folder not found" in _error(capsys, "--ckpt_path", ckpt, "--images", tmp_path / "nodir",
                                                  "--out", out)
    _run("--ckpt_path", ckpt, "--images", images, "--out", out)
    capsys.readouterr()
    (images / "broken.png").write_bytes(Image.open(images / "a.png").tobytes()[:40])  # no image at all
    with pytest.raises(SystemExit):
        _run("--ckpt_path", ckpt, "--images", images, "--out", out)
    # every file is checked before the first heatmap: the error is the only line
    assert capsys.readouterr().err.strip().startswith(f"cannot read image {images / 'broken.png'}: ")
    assert (out / "index.json").exists()  # refused before anything was written: the earlier run stays whole
    (images / "broken.png").unlink()
    assert "--target 3: the model in" in _error(capsys, "--ckpt_path", ckpt, "--images", images, "--out", out,
                                                "--target", 3)
    assert "--mean and --std go together" in _error(capsys, "--ckpt_path", ckpt, "--images", images, "--out", out,
                                                    "--mean", 0.5)
    signal = _checkpoint(tmp_path / "ecg.pt", model_name="tiny_cnn1d")
    assert "holds 'tiny_cnn1d', a signal model" in _error(capsys, "--ckpt_path", signal, "--images", images,
                                                          "--out", out)
    (tmp_path / "foreign.pt").write_bytes(b"not a checkpoint")
    assert "cannot read checkpoint" in _error(capsys, "--ckpt_path", tmp_path / "foreign.pt", "--images", images,
                                              "--out", out)


def test_unsupported_model_is_refused_in_one_line(tmp_path, capsys, monkeypatch):
    """What explain refuses (a network differentiable LRP cannot explain) reaches the command line as one
    line: a tiny_vgg checkpoint whose model computes a ReLU in its forward instead of with its module."""
    from torch.nn import functional as F

    ckpt, images = _checkpoint(tmp_path / "best.pt"), _images(tmp_path / "images")
    loaded = load_corrected_model

    def with_functional_relu(path, device="cpu"):
        model = loaded(path, device)
        model.forward = lambda x: model.classifier(F.relu(model.avgpool(model.features(x))))
        return model

    monkeypatch.setattr("model_training.corrections.loading.load_corrected_model", with_functional_relu)
    err = _error(capsys, "--ckpt_path", ckpt, "--images", images, "--out", tmp_path / "out")
    assert err.startswith("model (TinyVGG): its forward calls torch.nn.functional.relu")


def test_the_command_line(tmp_path):
    """As a user runs it: a missing checkpoint is one line on stderr and exit code 2."""
    images = _images(tmp_path / "images")
    done = subprocess.run([sys.executable, "-m", "experiments.explain", "--ckpt_path", str(tmp_path / "x.pt"),
                           "--images", str(images), "--out", str(tmp_path / "out")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("checkpoint not found: ") and "\n" not in done.stderr.strip()
