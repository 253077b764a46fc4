"""One exception family. Every message names the file, step or parameter, what was wrong, and the fix."""

from __future__ import annotations


class AugstudioError(Exception):
    """Base of every error augstudio raises on purpose."""


class ImageError(AugstudioError):
    """An image file could not be read, or an image has a form augstudio cannot use."""

    def __init__(self, path, cause: str):
        self.path = str(path) if path is not None else None
        self.cause = cause
        where = f"{self.path}: " if self.path else ""
        super().__init__(f"{where}{cause}")


class DatasetError(AugstudioError):
    """A dataset folder cannot be used (missing, not a folder, no images)."""


class RecipeError(AugstudioError):
    """A recipe is malformed or asks for an op or parameter value that does not exist."""


class ParamError(RecipeError):
    """One parameter of one op has a bad value."""


class JobCancelled(AugstudioError):
    """A job stopped because its cancel token was set."""


class ModelError(AugstudioError):
    """A model or weights file is missing, unsafe to load, or does not fit."""


class OutputError(AugstudioError):
    """An output location cannot be written (inside the source, read-only, disk full, escapes the folder)."""


class WriteError(OutputError):
    """Writing the outputs failed part-way (disk full, I/O error). The CLI exits with 1, not 2: the
    arguments were fine; free space and run the same command again to resume."""
