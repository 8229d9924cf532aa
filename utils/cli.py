"""Helpers shared by every ``python -m`` entry point: argument parsing and error handling."""
import argparse
import functools
import sys

from utils.allocator import keep_freed_memory
from utils.errors import UserError, worker_message


def config_parser(description: str, config_help="YAML config for this step") -> argparse.ArgumentParser:
    """An argument parser with the ``--config_file`` option every step takes; ``description`` (the entry
    point's docstring) is shown as written."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config_file", required=True, help=config_help)
    return parser


def main_entry(func):
    """Run ``func``; turn a :class:`UserError` into one line on stderr and exit code 2. Freed memory is
    kept in the process while it runs (:mod:`utils.allocator`: faster, the same results)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            keep_freed_memory()
            return func(*args, **kwargs)
        except UserError as err:
            _exit_with(str(err) or type(err).__name__)
        except RuntimeError as err:
            # a UserError subclass that torch could not rebuild from a worker's text arrives as RuntimeError
            message = worker_message(str(err))
            if message is None:
                raise
            _exit_with(message)
        except KeyboardInterrupt:
            print("interrupted; completed outputs are kept and the step can be resumed", file=sys.stderr)
            sys.exit(130)

    return wrapper


def _exit_with(message):
    print(message.splitlines()[0], file=sys.stderr)
    sys.exit(2)
