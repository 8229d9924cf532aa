"""Two runs on one folder at once: the second stops at once with one line naming the folder and the live
owner, and the first finishes undisturbed (the issue's row: run B took A's store for a crashed one and
deleted it)."""
import pytest
import torch
import yaml

from tests.conftest import assert_same_h5
from tests.reliability.harness import PausedRun


def _audit(folder, ckpt):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "audit.yaml"
    path.write_text(yaml.safe_dump({
        "dataset_name": "synth_derm", "img_size": 16, "dataset_options": {"n_train": 32, "n_val": 8, "n_test": 8},
        "model_name": "tiny_vgg", "batch_size": 4, "splits": ["train"], "heatmap_size": 8, "ckpt_path": str(ckpt),
        "output_dir": str(folder / "outputs")}))
    return ["--config_file", str(path)]


def test_a_second_preprocessing_run_stops_and_the_first_finishes_its_store(tmp_path, capsys):
    from experiments.preprocessing.run_preprocessing import main
    from models import get_model
    from utils.checkpoint import save_checkpoint

    torch.manual_seed(0)
    ckpt = tmp_path / "model.pt"
    save_checkpoint(ckpt, get_model("tiny_vgg", 2, img_size=16), "tiny_vgg", 2)
    main(_audit(tmp_path / "reference", ckpt))
    argv = _audit(tmp_path / "shared", ckpt)
    store = tmp_path / "shared" / "outputs" / "preprocessing" / "synth_derm" / "tiny_vgg" / "audit" / "train.h5"
    first = PausedRun("experiments.preprocessing.run_preprocessing:main", (argv,), 4, tmp_path / "signals")
    try:
        assert store.exists()  # half written: the run is past its third batch
        capsys.readouterr()
        with pytest.raises(SystemExit) as stopped:
            main(argv)
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert stopped.value.code == 2 and len(lines) == 1
        assert f"{store.parent} is in use by another run (pid {first.pid} on host " in lines[0]
    finally:
        assert first.resume() == 0
    assert_same_h5(tmp_path / "reference" / store.relative_to(tmp_path / "shared"), store)
