"""Secrets (API keys, tokens, passwords) are used, never written.

A config key named like ``*api_key*``, ``*token*``, ``*password*`` or ``*secret*`` holds a secret: it
may come from the config or the environment (``WANDB_API_KEY``) and is handed to the library that
needs it, but every file the framework writes (configs, checkpoints, metrics, reports, the W&B run
config) and every error message shows :data:`REDACTED` instead. :func:`redact` is applied where
files are written (:mod:`utils.io`, :mod:`utils.checkpoint`), so a new output cannot forget it.
"""
SECRET_PATTERNS = ("api_key", "apikey", "token", "password", "secret")
REDACTED = "***"


def is_secret_key(name) -> bool:
    """Whether a key named ``name`` holds a secret (case-insensitive; ``-`` counts as ``_``)."""
    text = str(name).lower().replace("-", "_")
    return any(pattern in text for pattern in SECRET_PATTERNS)


def redact(obj):
    """``obj`` with the value of every secret key, at any depth, replaced by :data:`REDACTED`
    (``None`` stays ``None``: an unset secret is not hidden, there is nothing to hide)."""
    if isinstance(obj, dict):
        return {k: (REDACTED if is_secret_key(k) and v is not None else redact(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(redact(v) for v in obj)
    return obj


def without_secrets(mapping: dict) -> dict:
    """``mapping`` without its secret keys (top level): for hashes and comparisons of settings, which a
    changed API key must not change."""
    return {k: v for k, v in mapping.items() if not is_secret_key(k)}


def secret_value(value):
    """A configured secret, or ``None`` when it is unset or is the redaction marker (a config written by
    this framework and read back holds the marker, never the secret)."""
    return None if value in (None, "", REDACTED) else value
