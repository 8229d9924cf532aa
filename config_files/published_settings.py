"""The published controlled settings, shared by the revealing and mitigation config generators.

One entry per data set: the models the published experiments audit and correct, each with the
committed training config of its ``<name>_attacked`` variant (``config_files/training/<name>/``,
written by ``config_generator_training_<name>.py``). The data keys of every audit and mitigation
config (data set, artifact, attacked classes, rate, options, image size, seed, model, loss) are
copied from that training config, so the three steps always describe the same data, and
``ckpt_path`` is the checkpoint that training config writes (relative to the repository root,
where every step is run). Configs hold no data paths: the root of ``<name>_attacked`` is
``data_paths.<name>`` in ``config_files/local_config.yaml`` (see ``local_config.example.yaml``).
"""
import yaml

from config_files.generate import CONFIG_FILES, grid_configs
from models import get_model_spec
from utils.lrp.differentiable import unsupported_reason

TRAINING_DIR = CONFIG_FILES / "training"

IMAGE_MODELS = ("vgg16", "resnet50", "vit_b_16")
SIGNAL_MODELS = ("xresnet1d50",)
# data set (the root the _attacked variant reads) -> models of the published experiments
MODELS = {"isic": IMAGE_MODELS, "hyper_kvasir": IMAGE_MODELS, "chexpert": IMAGE_MODELS,
          "ptbxl": SIGNAL_MODELS, "synth_ecg": SIGNAL_MODELS}

# the training grids of the real image data sets (ISIC, HyperKvasir, CheXpert): the CNNs with SGD, and a vision
# transformer with Adam at a small learning rate (SGD at 0.005 is a setting for convolutions); not tuned on this data
IMAGE_TRAINING_GRIDS = ({"model_name": ["vgg16", "resnet18", "resnet50"], "optimizer": ["sgd"], "lr": [0.005]},
                        {"model_name": ["vit_b_16"], "optimizer": ["adam"], "lr": [0.0001]})

# keys copied from the training config: what data, what model (and, for mitigation, the loss it was trained with)
DATA_KEYS = ("dataset_name", "img_size", "seed", "model_name", "dataset_options", "artifacts", "artifact_type",
             "attacked_classes", "p_artifact")


def layer(model):
    """The layer every audit and correction of ``model`` uses: the model's default layer (``models/``),
    written into each config so that it can be read there and changed."""
    return get_model_spec(model).default_layer


def differentiable_lrp(model):
    """Whether heatmap losses (RRR with ``rrr_explanation: lrp``/``lrp_composite``, ISNet with LRP heatmaps) can
    train ``model``; the same rule the mitigation config's validation applies (not for transformers, which ISNet
    with ``heatmap: grad_x_input`` and RRR with ``rrr_explanation: gradient`` can train)."""
    return unsupported_reason(get_model_spec(model)) is None


def training_config(dataset, model):
    """``(file stem, keys)`` of the committed training config of ``model`` on ``<dataset>_attacked``."""
    paths = sorted((TRAINING_DIR / dataset).glob(f"{model}_*_attacked.yaml"))
    paths = [p for p in paths if yaml.safe_load(p.read_text()).get("model_name") == model]
    if len(paths) != 1:
        raise SystemExit(f"expected one training config of {model} for {dataset}_attacked in "
                         f"{TRAINING_DIR / dataset}, found {len(paths)}: run "
                         f"python -m config_files.training.config_generator_training_{dataset} first")
    return paths[0].stem, yaml.safe_load(paths[0].read_text())


def data_keys(training, keys=DATA_KEYS):
    return {k: training[k] for k in keys if k in training}


def ckpt_path(stem, training):
    """The checkpoint ``start_training`` writes for the training config ``stem``."""
    return f"outputs/training/{training['dataset_name']}/{training['model_name']}/{stem}/checkpoints/best.pt"


def image_training_configs(base, attacked):
    """The training configs of a real image data set: ``base`` over :data:`IMAGE_TRAINING_GRIDS`, each with its
    ``_attacked`` variant (``attacked``: the published controlled setting's keys)."""
    return {name: config for grid in IMAGE_TRAINING_GRIDS
            for name, config in grid_configs(base, grid, attacked).items()}
