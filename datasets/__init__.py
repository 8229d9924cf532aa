"""Dataset registry. Importing this package registers every data set."""
from datasets.base import BaseDataset, DataSplits
from datasets.registry import get_dataset, get_dataset_entry, get_dataset_from_config, list_datasets, register_dataset
from datasets.synth_derm import DEFAULT_ARTIFACTS, build_synth_derm
# each module registers its data set(s) on import
from datasets import chexpert, hyper_kvasir, image_folder, isic, ptbxl, synth_ecg, synth_shapes  # noqa: F401,E402

register_dataset("synth_derm", default_artifacts=DEFAULT_ARTIFACTS,
                 attacked_default={"artifact_type": "band_aid", "attacked_classes": ["benign"],
                                   "p_artifact": 0.33})(build_synth_derm)

__all__ = ["BaseDataset", "DataSplits", "get_dataset", "get_dataset_entry", "get_dataset_from_config",
           "list_datasets", "register_dataset"]
