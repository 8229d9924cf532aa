"""User-facing errors.

Anything a user can fix (a bad config, a missing file, an unknown name) raises
:class:`UserError`. Entry points wrapped by :func:`utils.cli.main_entry` print its
one-line message to stderr and exit with code 2 instead of showing a traceback.
"""
import re

# torch re-raises an error of a DataLoader worker process as ``type(error)(text)`` where the text is
# "Caught <type> in DataLoader worker process <n>." followed by the worker's traceback, whose last
# line holds the original message
_WORKER_WRAPPED = re.compile(r"Caught (\w+) in DataLoader worker process \d+\.\nOriginal Traceback")


def worker_message(text):
    """The original message of an error re-raised from a DataLoader worker, else ``None``."""
    match = _WORKER_WRAPPED.match(text or "")
    if not match:
        return None
    pattern = re.compile(rf"^(?:[\w.]+\.)?{match.group(1)}: (.*)$")
    for line in reversed(text.splitlines()):
        found = pattern.match(line)
        if found:
            return found.group(1)
    return None


class UserError(Exception):
    """An error caused by user input; its message is shown as a single line.

    Raised in a DataLoader worker process (``num_workers > 0``), it reaches the main process with the
    same one-line message as without workers, not torch's "Caught UserError in DataLoader worker".
    """

    def __init__(self, *args):
        if len(args) == 1 and isinstance(args[0], str) and worker_message(args[0]) is not None:
            args = (worker_message(args[0]),)
        super().__init__(*args)


class ConfigError(UserError):
    """A config file is missing, unreadable, or has a bad key or value."""

    def __init__(self, file, key, expected, got=None, hint=""):
        from utils.secrets import REDACTED, is_secret_key

        if got is not None and is_secret_key(str(key).split(".")[-1]):
            got = REDACTED  # an error message is an output too: a mistyped secret is not shown
        self.file, self.key, self.expected, self.got = str(file), key, expected, got
        message = f"config error in {file}: '{key}': {expected}"
        if got is not None:
            message += f", got {got!r}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)
