"""One small registry class for every "name -> implementation" table of the project.

``REG = Registry("clustering")``; ``@REG.register("kmeans")`` adds an entry (a fixed table can be
given at once: ``Registry("rrr_penalty", {"squared": ..., "share": ...})``) (a second entry under
one name is refused: two modules silently replacing each other's method is a bug); ``REG.get(name)``
returns it, or stops with one line naming the unknown name, the closest valid one and all valid
names; ``REG.names()`` lists them (sorted). Entries are added when the module defining them is
imported, so a package's ``__init__`` imports its implementations.
"""
import difflib

from utils.errors import UserError


class Registry:
    def __init__(self, kind, entries=None):
        self.kind = kind  # what an entry is, for messages ("model", "correction method", ...)
        self._entries = {}
        for name, entry in (entries or {}).items():
            self.register(name, entry)

    def register(self, name, entry=None):
        """Decorator adding ``entry`` under ``name`` (or, given ``entry``, add it at once)."""

        def add(obj):
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = obj
            return obj

        return add if entry is None else add(entry)

    def get(self, name, key=None):
        """The entry of ``name``; an unknown name stops with one line (``key``: the config key or option
        that named it, said instead of the kind)."""
        if name not in self._entries:
            raise UserError(self.unknown(name, key))
        return self._entries[name]

    def find(self, name):
        """The entry of ``name``, or ``None``."""
        return self._entries.get(name)

    def unknown(self, name, key=None, valid=None):
        """The one-line message for an unknown ``name`` (``valid``: the names to offer, default all)."""
        valid = self.names() if valid is None else list(valid)
        close = difflib.get_close_matches(str(name), valid, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"unknown {key or self.kind} '{name}'{hint}; valid names: {', '.join(valid)}"

    def names(self):
        return sorted(self._entries)

    def __getitem__(self, name):
        return self.get(name)

    def __contains__(self, name):
        return name in self._entries

    def __iter__(self):
        return iter(self._entries)

    def __len__(self):
        return len(self._entries)

    def items(self):
        return self._entries.items()
