"""Errors the appliance raises on purpose.

Every error the appliance raises on purpose derives from :class:`ApplianceError`, so callers
(the CLI, the web layer, the daemon) can tell a refusal with a message meant for a person from a
bug. Each specific error also subclasses the builtin that fits, so generic code (``except
ValueError``, ``except FileNotFoundError``) keeps working. Messages say what was wrong and what
to do about it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class ApplianceError(Exception):
    """Root of every error the appliance raises on purpose."""


# --- configuration -----------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a config file: where (dotted key path) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(ApplianceError, ValueError):
    """The configuration file is missing, unreadable or invalid."""

    def __init__(self, source: str, issues: Sequence[ConfigIssue]) -> None:
        self.source = source
        self.issues = tuple(issues)
        lines = "\n".join(f"  {issue}" for issue in self.issues)
        super().__init__(f"invalid configuration in {source}:\n{lines}")


# --- images --------------------------------------------------------------------------------


class ImageError(ApplianceError, ValueError):
    """Bytes that cannot be used as a photo (not an image, truncated, corrupt)."""


class ImageTooLargeError(ImageError):
    """An image over the configured pixel limit (a decompression bomb or a huge scan)."""


# --- models and runtime ------------------------------------------------------------------------


class ModelError(ApplianceError, RuntimeError):
    """A model file cannot be used."""


class ModelMissingError(ModelError, FileNotFoundError):
    """A model file is not where it should be."""


class ModelIntegrityError(ModelError):
    """A model file is present but its sha256 differs from the pinned value."""


class ModelFetchError(ModelError):
    """The pinned package holding the models could not be downloaded or read."""


class RuntimeUnavailableError(ApplianceError, ImportError):
    """Neither LiteRT nor tflite-runtime can be imported, or the one found cannot run a model."""


class AcceleratorError(ApplianceError, RuntimeError):
    """The configured accelerator (delegate) cannot be loaded."""


# --- faces -----------------------------------------------------------------------------------


class FaceError(ApplianceError, LookupError):
    """The photo does not hold exactly one usable face."""


class NoFaceError(FaceError):
    """No face was found."""


class MultipleFacesError(FaceError):
    """More than one face was found."""

    def __init__(self, count: int) -> None:
        self.count = count
        super().__init__(f"{count} faces found: ask the others to step out of the frame and retake")


class FaceTooSmallError(FaceError):
    """The face has too few pixels for the document at the size it must be printed."""


class SubjectCutError(ApplianceError, ValueError):
    """A part of the subject the document needs (top of the head, chin, shoulders) is outside
    the photo."""
