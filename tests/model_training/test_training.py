import copy
import json

import pytest
import torch

from model_training.start_training import main
from model_training.trainer import run_training
from tests.conftest import TINY_DATA
from utils.checkpoint import load_checkpoint
from utils.config import TrainingConfig, load_config
from utils.errors import UserError

TINY_TRAINING = {**TINY_DATA, "model_name": "tiny_vgg", "batch_size": 16, "lr": 0.003, "seed": 0}


def test_training_reduces_loss_and_writes_outputs(write_config, tmp_path):
    path = write_config("train", **TINY_TRAINING, num_epochs=4)
    metrics = main(["--config_file", str(path)])
    out = tmp_path / "outputs" / "training" / "synth_derm" / "tiny_vgg" / "train"
    losses = [row["train_loss"] for row in metrics["history"]]
    assert losses[-1] < losses[0]
    for name in ("config.yaml", "metrics.csv", "metrics.json", "training_curves.png",
                 "checkpoints/best.pt", "checkpoints/last.pt"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "metrics.json").read_text())
    assert set(saved["test"]) == {"clean", "attacked", "ch"}
    assert load_checkpoint(out / "checkpoints" / "best.pt")["model_name"] == "tiny_vgg"


def test_resume_continues_exactly(write_config, tmp_path):
    full = load_config(write_config("full", **TINY_TRAINING, num_epochs=3), TrainingConfig)
    run_training(full)
    path = write_config("stopped", **TINY_TRAINING, num_epochs=2)
    run_training(load_config(path, TrainingConfig))
    with pytest.raises(UserError, match="already holds a training run; pass --resume"):
        run_training(load_config(path, TrainingConfig))
    resumed = load_config(path, TrainingConfig, overrides={"num_epochs": 3})
    run_training(resumed, resume=True)
    root = tmp_path / "outputs" / "training" / "synth_derm" / "tiny_vgg"
    a = load_checkpoint(root / "full" / "checkpoints" / "last.pt")
    b = load_checkpoint(root / "stopped" / "checkpoints" / "last.pt")
    assert b["epoch"] == 3 and len(b["history"]) == 3
    for key, value in a["model_state_dict"].items():
        assert torch.allclose(value.float(), b["model_state_dict"][key].float(), atol=1e-6), key


def test_channels_last_trains_in_that_layout_and_later_steps_load_its_checkpoint_in_it(write_config):
    from model_training.resume import resume_mismatch
    from model_training.trainer import Trainer
    from model_training.corrections.loading import load_corrected_model
    from models import get_model
    from utils.device import use_memory_format

    path = write_config("layout", **TINY_TRAINING, num_epochs=1, memory_format="channels_last")
    trainer = Trainer(load_config(path, TrainingConfig))
    weights = [m.weight for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert weights and all(w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
                           for w in weights)
    trainer.fit()
    last = trainer.ckpt_dir / "last.pt"
    # later steps load it in the layout it was trained in; in the usual one it is the same function
    loaded = [get_model("tiny_vgg", trainer.splits.n_classes, ckpt_path=last), load_corrected_model(last)]
    for model in loaded:
        assert all(m.weight.is_contiguous(memory_format=torch.channels_last) and not m.weight.is_contiguous()
                   for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    plain = use_memory_format(copy.deepcopy(loaded[0]), "contiguous")
    assert all(m.weight.is_contiguous() for m in plain.modules() if isinstance(m, torch.nn.Conv2d))
    x = torch.stack([trainer.splits.test[i][0] for i in range(8)])
    trainer.model.eval()
    with torch.no_grad():  # the same function; only the rounding of the convolutions differs
        assert torch.equal(trainer.model(x), loaded[0](x)) and torch.equal(loaded[0](x), loaded[1](x))
        assert torch.allclose(trainer.model(x), plain(x), atol=1e-5)
    # continuing in the other layout would not equal an uninterrupted run
    with pytest.raises(UserError, match=r"memory_format \('channels_last' -> 'contiguous'\)"):
        run_training(load_config(path, TrainingConfig, overrides={"memory_format": "contiguous", "num_epochs": 2}),
                     resume=True)
    # a checkpoint of a version without the setting was trained in the default layout
    older = load_checkpoint(last)
    older["config"] = {k: v for k, v in older["config"].items() if k != "memory_format"}
    torch.save(older, trainer.ckpt_dir / "older.pt")
    assert all(m.weight.is_contiguous() for m in get_model("tiny_vgg", trainer.splits.n_classes,
               ckpt_path=trainer.ckpt_dir / "older.pt").modules() if isinstance(m, torch.nn.Conv2d))
    default = load_config(path, TrainingConfig, overrides={"memory_format": "contiguous", "num_epochs": 2})
    assert resume_mismatch(older, default, {}) == []
    assert resume_mismatch(older, load_config(path, TrainingConfig), {}) == [
        "memory_format ('contiguous' -> 'channels_last')"]
    with pytest.raises(UserError, match="memory_format"):
        load_config(write_config("bad", **TINY_TRAINING, memory_format="nhwc"), TrainingConfig)


def test_mixed_precision_is_bfloat16_autocast_on_cuda_only(write_config, capsys):
    import contextlib

    from utils.device import autocast, mixed_precision_enabled

    assert not mixed_precision_enabled(True, torch.device("cpu"))
    assert "'mixed_precision' needs a CUDA device" in capsys.readouterr().err
    assert mixed_precision_enabled(True, torch.device("cuda")) and not mixed_precision_enabled(False, torch.device("cuda"))
    assert isinstance(autocast(torch.device("cpu"), True), contextlib.nullcontext)
    assert isinstance(autocast(torch.device("cuda"), False), contextlib.nullcontext)
    with pytest.warns(UserWarning) if not torch.cuda.is_available() else contextlib.nullcontext():
        context = autocast(torch.device("cuda"), True)  # built, not entered: no GPU needed
    assert isinstance(context, torch.autocast) and context.fast_dtype == torch.bfloat16
    # a CPU run of a config asking for it trains in float32, like the same config without it
    config = load_config(write_config("amp", **TINY_TRAINING, num_epochs=1, device="cpu", mixed_precision=True),
                         TrainingConfig)
    assert "mixed_precision" in TrainingConfig.model_fields and config.mixed_precision
    from model_training.trainer import Trainer

    assert Trainer(config).mixed_precision is False


def test_a_loss_that_does_not_fit_the_labels_is_refused():
    """Cross-entropy on multi-hot labels would not fail: PyTorch reads them as class probabilities."""
    from model_training.losses import build_loss
    from utils.errors import UserError

    with pytest.raises(UserError, match="'loss': cross_entropy needs one label per sample, .* use loss: bce"):
        build_loss("cross_entropy", [3, 4], multi_label=True)
    with pytest.raises(UserError, match="'loss': bce needs multi-hot labels"):
        build_loss("bce", [3, 4], multi_label=False)
    assert build_loss("bce", [3, 4], multi_label=True) is not None and build_loss("cross_entropy", [3, 4]) is not None
