"""Helpers shared by every ``python -m`` entry point: argument parsing and error handling."""
import argparse
import functools
import sys

from utils.errors import UserError


def config_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the ``--config_file`` option every step takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config_file", required=True, help="YAML config for this step")
    return parser


def main_entry(func):
    """Run ``func``; turn a :class:`UserError` into one line on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except UserError as err:
            print(str(err).splitlines()[0] if str(err) else type(err).__name__, file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("interrupted; completed outputs are kept and the step can be resumed", file=sys.stderr)
            sys.exit(130)

    return wrapper
