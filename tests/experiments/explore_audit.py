"""A tiny real audit for the explorer's tests: an untrained tiny_vgg on 32-px synth_derm, preprocessed,
revealed (SpRAy, DORA with real references, CRP) and localized by the steps' own library functions.

Built once per test session (about 20 s on 2 busy cores) and copied by each test that changes it.
Settings are the smallest the steps accept; DORA's real references and CRP without cropping need no
optimisation or conditional LRP, the two costly parts of the reveal step.
"""
import shutil
from pathlib import Path

import yaml

AUDIT = {"dataset_name": "synth_derm", "img_size": 32, "seed": 0,
         "dataset_options": {"n_train": 96, "n_val": 16, "n_test": 24},
         "artifacts": {"band_aid": {"benign": 0.4}}, "artifact": "band_aid", "model_name": "tiny_vgg",
         "batch_size": 32, "layer_name": "features.10", "neuron_layer_name": "features.14", "heatmap_size": 16,
         "spray_space": "latent", "spray_clusterings": ["kmeans"], "spray_n_clusters": [2, 3],
         "spray_default_clustering": "kmeans_3", "spray_n_neighbors": 8, "spray_n_eigval": 8, "lof_n_neighbors": 5,
         "embedding_2d": "mds", "dora_reference": "real_act", "dora_n_refs": 2, "crp_n_refs": 2, "crp_crop": False,
         "crp_class_indices": [0], "n_outliers": 4, "retrieval_top_k": 6, "cav_labels": "ground_truth",
         "device": "cpu"}


def build(folder) -> Path:
    """Write the audit config in ``folder`` and run its steps (once: a finished folder is reused)."""
    folder = Path(folder)
    path = folder / "audit.yaml"
    if (folder / "built").is_file():
        return path
    import torch

    from models import get_model
    from utils.bias.steps import prepare_step, run_localization
    from utils.checkpoint import save_checkpoint
    from utils.config import AuditConfig, load_config
    from utils.preprocessing import preprocess
    from utils.reveal.steps import crp_step, dora_step, spray_step

    folder.mkdir(parents=True, exist_ok=True)
    ckpt = folder / "model.pt"
    path.write_text(yaml.safe_dump({**AUDIT, "ckpt_path": str(ckpt), "output_dir": str(folder / "outputs")}))
    torch.manual_seed(0)
    save_checkpoint(ckpt, get_model("tiny_vgg", 2, img_size=AUDIT["img_size"]).eval(), "tiny_vgg", 2)
    config = load_config(path, AuditConfig)
    preprocess(config, progress=False)
    spray_step(config)
    dora_step(config)
    crp_step(config)
    run_localization(prepare_step(config, config.artifact, "localization"))
    (folder / "built").write_text("")
    return path


def copy(source_config, folder, **changes) -> Path:
    """A copy of the audit (config and outputs) in ``folder``, config values changed by ``changes``:
    a test that records decisions works on its own copy."""
    source = Path(source_config).parent
    folder = Path(folder)
    shutil.copytree(source / "outputs", folder / "outputs")
    values = {**yaml.safe_load(Path(source_config).read_text()), "output_dir": str(folder / "outputs"), **changes}
    path = folder / "audit.yaml"  # the same stem: the same config_name, so the same output folders
    path.write_text(yaml.safe_dump(values))
    return path
