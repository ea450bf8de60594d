"""Errors a user can act on: each says what was wrong and, where it can, how to fix it.

The CLI prints these without a traceback and exits with status 2.
"""

from __future__ import annotations


class StudioError(Exception):
    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  how to fix: {self.hint}" if self.hint else self.message


class ModelConfigError(StudioError):
    """model_config.json is missing, malformed or asks for something Studio does not run."""


class CheckpointError(StudioError):
    """Weights are missing, unreadable, or do not match the config."""


class ModelNotFoundError(StudioError):
    """A model name or folder could not be resolved to files on disk."""


class TextEncoderError(StudioError):
    """The prompt encoder (T5, MiniLM) could not be loaded."""


class RequestError(StudioError):
    """A generation request asked for something impossible or absurd."""


class AudioError(StudioError):
    """An audio file could not be read or written."""
