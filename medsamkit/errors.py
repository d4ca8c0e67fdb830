"""Exception types of medsamkit.

Every error a user can trigger carries a message that says what went wrong *and what to do*.
Callers (CLI, Slicer effect, server) catch :class:`MedSAMError` and show ``str(err)``; anything
else is a bug.
"""
from __future__ import annotations


class MedSAMError(Exception):
    """Base class of all user-facing medsamkit errors."""


class InputError(MedSAMError, ValueError):
    """Bad image, prompt or option given by the caller."""


class OutputError(MedSAMError):
    """An output cannot be written (full disk, read-only folder, a folder where a file was asked for)."""


class NonFiniteError(InputError):
    """The image/volume holds NaN or infinite values (one rule everywhere: refused, never blanked)."""


class ConstantImageError(InputError):
    """The image (or slice) is constant after normalisation: nothing to segment."""


class CheckpointError(MedSAMError):
    """A checkpoint file cannot be read or does not match the requested model kind."""


class DependencyError(MedSAMError, ImportError):
    """An optional dependency needed for the requested feature is missing."""


def require(module: str, feature: str, extra: str | None = None):
    """Import ``module`` or raise :class:`DependencyError` naming the pip command to run."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on environment
        pkg = f'"medsamkit[{extra}]"' if extra else module
        raise DependencyError(
            f"{feature} needs the Python package '{module}', which could not be imported ({exc}). "
            f"Install it with: python -m pip install {pkg}"
        ) from exc
