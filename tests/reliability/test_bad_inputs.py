"""Bad inputs from the issue's table (and their neighbours): each must stop the command with exit code 2
and one line naming the file, row, key or folder at fault — never a traceback, never a silent result.

Every case prepares its input in a temporary folder and returns the entry point, its arguments and what
the line must say. The entry points are called in this process (the same ``main_entry`` path as on the
command line); the cases that need a second process (a run holding a folder, a store open elsewhere)
start a small one.
"""
import os
import subprocess
import sys

import pytest
import torch
import yaml

from tests.conftest import ROOT
from tests.datasets.fixture_trees import image_folder_tree, truncate, write_mask

TINY = {"dataset_name": "synth_derm", "img_size": 16, "dataset_options": {"n_train": 24, "n_val": 8, "n_test": 8},
        "model_name": "tiny_vgg", "batch_size": 8, "seed": 0}


def _config(tmp_path, name="config", **values):
    values.setdefault("output_dir", str(tmp_path / "outputs"))
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


def _train(tmp_path, **values):
    from model_training.start_training import main

    config = _config(tmp_path, "run", **{**TINY, "num_epochs": 1, "lr": 0.003, **values})
    main(["--config_file", config])
    return config


def _tiny_checkpoint(tmp_path, drop=None):
    from models import get_model
    from utils.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = get_model("tiny_vgg", 2, img_size=16)
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, "tiny_vgg", 2)
    if drop:
        checkpoint = torch.load(path, weights_only=True)
        del checkpoint["model_state_dict"][drop]
        torch.save(checkpoint, path)
    return path


def _images(tmp_path, edit_rows=None, **options):
    """An image folder whose labels.csv rows pass through ``edit_rows``; the export entry point reads it all."""
    root = image_folder_tree(tmp_path / "data")
    if edit_rows is not None:
        lines = (root / "labels.csv").read_text().splitlines()
        (root / "labels.csv").write_text("\n".join(edit_rows(lines)) + "\n")
    config = _config(tmp_path, "images", dataset_name="image_folder", data_paths=[str(root)], img_size=16,
                     dataset_options=options)
    from datasets.export_image_folder import main

    return main, ["--config_file", config, "--out", str(tmp_path / "export")], root


def _replace_row(index, row):
    return lambda lines: lines[:index] + [row] + lines[index + 1:]


# --- the cases --------------------------------------------------------------------------------
def resume_with_other_settings(tmp_path):
    from model_training.start_training import main

    _train(tmp_path)
    changed = _config(tmp_path, "run", **{**TINY, "num_epochs": 2, "lr": 0.5, "optimizer": "sgd"})
    expected = r"cannot resume .*run: .*lr \(0\.003 -> 0\.5\); optimizer \('adam' -> 'sgd'\)"
    return main, ["--config_file", changed, "--resume"], expected


def resume_without_optimizer_state(tmp_path):
    from model_training.start_training import main

    config = _train(tmp_path)
    last = tmp_path / "outputs" / "training" / "synth_derm" / "tiny_vgg" / "run" / "checkpoints" / "last.pt"
    checkpoint = torch.load(last, weights_only=True)
    del checkpoint["optimizer_state_dict"]
    torch.save(checkpoint, last)
    return main, ["--config_file", config, "--resume"], r"checkpoint .*last\.pt has no 'optimizer_state_dict'"


def config_name_outside_the_output_root(tmp_path):
    from model_training.start_training import main

    config = _config(tmp_path, **TINY, config_name="../../x")
    return main, ["--config_file", config], r"'config_name': a name usable as one folder"


def artifact_name_with_a_separator(tmp_path):
    from model_training.start_training import main

    config = _config(tmp_path, **TINY, artifact="a/../../b")
    return main, ["--config_file", config], r"'artifact': a name usable as one folder"


def secret_in_a_bad_value(tmp_path):
    from model_training.start_training import main

    config = _config(tmp_path, **TINY, wandb_api_key=["sk-secret-value-1234"])
    return main, ["--config_file", config], r"'wandb_api_key': .*got '\*\*\*'"


def checkpoint_missing_a_weight(tmp_path):
    from experiments.preprocessing.run_preprocessing import main

    ckpt = _tiny_checkpoint(tmp_path, drop="features.0.weight")
    config = _config(tmp_path, **TINY, ckpt_path=str(ckpt), splits=["train"])
    return main, ["--config_file", config], r"checkpoint .*model\.pt lacks the weight 'features\.0\.weight'"


def row_with_parent_traversal(tmp_path):
    secret = tmp_path / "secret" / "private.png"
    secret.parent.mkdir()
    secret.write_bytes(b"not an image of this data set")
    main, argv, _ = _images(tmp_path, _replace_row(2, "../../secret/private.png,benign,train"))
    return main, argv, (r"labels\.csv line 3: file .*images/\.\./\.\./secret/private\.png resolves to .*, "
                        r"outside the data root")


def row_with_an_absolute_path(tmp_path):
    (tmp_path / "elsewhere.png").write_bytes(b"not an image of this data set")
    main, argv, _ = _images(tmp_path, _replace_row(2, f"{tmp_path / 'elsewhere.png'},benign,train"))
    return main, argv, r"labels\.csv line 3: file .*elsewhere\.png resolves to .*, outside the data root"


def image_symlink_out_of_the_root(tmp_path):
    main, argv, root = _images(tmp_path)
    outside = tmp_path / "outside.png"
    os.replace(root / "images" / "img_01.png", outside)
    (root / "images" / "img_01.png").symlink_to(outside)
    return main, argv, r"labels\.csv line 3: file .*img_01\.png resolves to .*outside\.png, outside the data root"


def mask_symlink_out_of_the_root(tmp_path):
    main, argv, root = _images(tmp_path)
    outside = write_mask(tmp_path / "outside_mask.png")
    (root / "masks" / "ruler" / "img_00.png").unlink()
    (root / "masks" / "ruler" / "img_00.png").symlink_to(outside)
    return main, argv, r"sample 'img_00\.png': mask .*img_00\.png resolves to .*outside_mask\.png, outside the data"


def image_listed_twice(tmp_path):
    main, argv, _ = _images(tmp_path, lambda lines: lines + ["img_00.png,benign,train"])
    return main, argv, r"sample 'img_00\.png' is listed in split 'train' twice \(.*line 2 and .*line 14\)"


def image_in_train_and_test(tmp_path):
    main, argv, _ = _images(tmp_path, lambda lines: lines + ["img_00.png,benign,test"])
    return main, argv, r"sample 'img_00\.png' is listed in splits 'train' and 'test'"


def blank_label(tmp_path):
    main, argv, _ = _images(tmp_path, _replace_row(4, "img_03.png,,train"))
    return main, argv, r"labels\.csv line 5: column 'label' is blank"


def blank_image(tmp_path):
    main, argv, _ = _images(tmp_path, _replace_row(4, ",benign,train"))
    return main, argv, r"labels\.csv line 5: column 'image' is blank"


def unknown_label(tmp_path):
    main, argv, _ = _images(tmp_path, _replace_row(4, "img_03.png,benin,train"), classes=["benign", "malignant"])
    return main, argv, r"labels\.csv line 5: column 'label' holds 'benin', which is not in 'classes'"


def corrupt_image_in_a_worker_process(tmp_path):
    from model_training.start_training import main

    root = image_folder_tree(tmp_path / "data")
    truncate(root / "images" / "img_03.png")
    config = _config(tmp_path, dataset_name="image_folder", data_paths=[str(root)], img_size=16, batch_size=4,
                     num_epochs=1, num_workers=1, augment=False)
    return main, ["--config_file", config], r"^dataset 'image_folder', train sample 3 \('img_03\.png'\): cannot read .*img_03"


def _holder(code, ready="ready"):
    """A second process running ``code`` (with the repository importable) until the test ends."""
    process = subprocess.Popen([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r})\n{code}"],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == ready
    return process


def preprocessing_folder_in_use(tmp_path):
    from experiments.preprocessing.run_preprocessing import main

    config = _config(tmp_path, **TINY, ckpt_path=str(_tiny_checkpoint(tmp_path)), splits=["train"], config_name="busy")
    folder = tmp_path / "outputs" / "preprocessing" / "synth_derm" / "tiny_vgg" / "busy"
    holder = _holder(f"import time\nfrom utils.locks import folder_lock\nwith folder_lock({str(folder)!r}):\n"
                     "    print('ready', flush=True)\n    time.sleep(600)")
    CLEANUP.append(holder)
    return main, ["--config_file", config], rf"{folder} is in use by another run \(pid {holder.pid} on host "


def store_open_in_another_process(tmp_path):
    from experiments.preprocessing.run_preprocessing import main

    config = _config(tmp_path, **TINY, ckpt_path=str(_tiny_checkpoint(tmp_path)), splits=["train"], config_name="open")
    store = tmp_path / "outputs" / "preprocessing" / "synth_derm" / "tiny_vgg" / "open" / "train.h5"
    store.parent.mkdir(parents=True)
    holder = _holder(f"import h5py, time\nf = h5py.File({str(store)!r}, 'a')\n"
                     "print('ready', flush=True)\ntime.sleep(600)")
    CLEANUP.append(holder)
    return main, ["--config_file", config], r"train\.h5 is open in another process"


def pipeline_folder_in_use(tmp_path):
    from experiments.run_pipeline import main

    config = _config(tmp_path, **TINY, config_name="shared")
    folder = tmp_path / "outputs" / "pipeline" / "synth_derm" / "tiny_vgg" / "shared"
    holder = _holder(f"import time\nfrom utils.locks import folder_lock\nwith folder_lock({str(folder)!r}):\n"
                     "    print('ready', flush=True)\n    time.sleep(600)")
    CLEANUP.append(holder)
    return main, ["--config_file", config], rf"{folder} is in use by another run \(pid {holder.pid} on host "


CLEANUP = []
CASES = [resume_with_other_settings, resume_without_optimizer_state, config_name_outside_the_output_root,
         artifact_name_with_a_separator, secret_in_a_bad_value, checkpoint_missing_a_weight, row_with_parent_traversal,
         row_with_an_absolute_path, image_symlink_out_of_the_root, mask_symlink_out_of_the_root, image_listed_twice,
         image_in_train_and_test, blank_label, blank_image, unknown_label, corrupt_image_in_a_worker_process,
         preprocessing_folder_in_use, store_open_in_another_process, pipeline_folder_in_use]


@pytest.fixture
def cleanup():
    yield
    while CLEANUP:
        process = CLEANUP.pop()
        process.kill()
        process.wait()


@pytest.mark.parametrize("case", CASES, ids=[case.__name__ for case in CASES])
def test_bad_input_exits_2_with_one_line(case, tmp_path, capsys, cleanup, monkeypatch):
    import re

    monkeypatch.chdir(tmp_path)  # nothing may land in the repository
    main, argv, expected = case(tmp_path)
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not _progress(line)]
    assert stopped.value.code == 2, err
    assert len(lines) == 1, err
    assert re.search(expected, lines[0]), lines[0]
    assert "Traceback" not in err


def _progress(line):
    # tqdm bars and warnings of the libraries are not the error line
    return "it/s" in line or "s/it" in line or "%|" in line or "Warning" in line or line.startswith("  warnings.warn")


def test_a_corrupt_image_gives_the_same_line_with_and_without_workers(tmp_path, capsys):
    from model_training.start_training import main

    root = image_folder_tree(tmp_path / "data")
    truncate(root / "images" / "img_03.png")
    lines = []
    for workers in (0, 1):
        config = _config(tmp_path, f"w{workers}", dataset_name="image_folder", data_paths=[str(root)], img_size=16,
                         batch_size=4, num_epochs=1, num_workers=workers, augment=False)
        with pytest.raises(SystemExit):
            main(["--config_file", config])
        lines.append([line for line in capsys.readouterr().err.splitlines() if "cannot read" in line])
    assert lines[0] == lines[1] and len(lines[0]) == 1
