"""``make demo``: train the default model on the embedded data and show the shortcut.

Prints accuracy on the clean, attacked (band-aid in every image) and training-distribution test
subsets, per class. Re-running resumes (or reuses) the finished run instead of training again.
"""
import argparse
import time
from pathlib import Path

from model_training.trainer import run_training
from utils.cli import main_entry
from utils.config import TrainingConfig, load_config
from utils.table import format_table

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config_files" / "training" / "synth_derm" / "tiny_vgg_adam_lr0.003.yaml"


def shortcut_rows(test_metrics):
    rows = []
    for subset, metrics in test_metrics.items():
        row = {"subset": subset, "n": metrics["n"], "accuracy": metrics["accuracy"], "± se": metrics["accuracy_se"]}
        row.update({f"acc {name}": value for name, value in metrics["per_class_accuracy"].items()})
        rows.append(row)
    return rows


@main_entry
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config_file", default=str(DEFAULT_CONFIG))
    args = parser.parse_args(argv)
    start = time.time()
    config = load_config(args.config_file, TrainingConfig)
    out_dir, metrics = run_training(config, resume=True)
    print("\nTest accuracy of the trained model by subset")
    print(format_table(shortcut_rows(metrics["test"])))
    print(f"\noutputs: {out_dir}  ({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
