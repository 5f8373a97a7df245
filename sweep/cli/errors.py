"""Errors that mean bad input (exit 2, one line) rather than a bug (traceback)."""
from __future__ import annotations

from data_pipeline.folder import DataFolderError
from training.checkpoints import CheckpointError
from training.errors import error_line
from training.settings import ConfigError

USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, CheckpointError, DataFolderError,
                                            FileNotFoundError)


def one_line(error: Exception) -> str:
    """The message as one line; a data folder's faults keep their own line each."""
    if isinstance(error, DataFolderError):
        return str(error)
    return error_line(error, limit=None, named=False)
