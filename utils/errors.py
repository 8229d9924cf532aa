"""User-facing errors.

Anything a user can fix (a bad config, a missing file, an unknown name) raises
:class:`UserError`. Entry points wrapped by :func:`utils.cli.main_entry` print its
one-line message to stderr and exit with code 2 instead of showing a traceback.
"""


class UserError(Exception):
    """An error caused by user input; its message is shown as a single line."""


class ConfigError(UserError):
    """A config file is missing, unreadable, or has a bad key or value."""

    def __init__(self, file, key, expected, got=None, hint=""):
        self.file, self.key, self.expected, self.got = str(file), key, expected, got
        message = f"config error in {file}: '{key}': {expected}"
        if got is not None:
            message += f", got {got!r}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)
