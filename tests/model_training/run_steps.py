"""Run several entry points one after another in one process: ``python -m tests.model_training.run_steps
MODULE CONFIG [MODULE CONFIG ...]`` calls ``MODULE.main(["--config_file", CONFIG])`` for each pair.

The distributed tests start it under ``torchrun``: each worker then pays the start-up of Python,
torch and the process group once for several steps instead of once per step, which is most of
the time a tiny multi-process run takes on two CPU cores.
"""
import importlib
import sys


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or len(argv) % 2:
        raise SystemExit("usage: run_steps MODULE CONFIG [MODULE CONFIG ...]")
    for module, config in zip(argv[::2], argv[1::2]):
        importlib.import_module(module).main(["--config_file", config])


if __name__ == "__main__":
    main()
