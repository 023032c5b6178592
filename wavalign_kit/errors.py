"""The kit's error types. Each names the file, field or argument at fault and what would fix it; every command
prints a `KitError` (and bad values, OS errors) as one line and exits 2 (`wavalign_kit.cli`)."""

from __future__ import annotations


class KitError(Exception):
    """An error the user can fix from its message alone."""


class ConfigError(KitError, ValueError):
    """A configuration value or key that cannot be used; the message names where it came from."""


class NonFiniteError(KitError, RuntimeError):
    """Training kept producing NaN or inf losses or gradients; the weights were left as they were."""


class RunLocked(KitError, RuntimeError):
    """Another process holds the run directory."""


class JudgeFailure(KitError, RuntimeError):
    """Too many reward calls fell back to a default score in one step (e.g. an API that rejects audio)."""
