"""The exception types a user can cause.

Every error a user can trigger (bad file, bad YAML, unknown model) raises one of these with a
message that says what was wrong, where, and how to fix it. The CLI prints the message as one
line and exits with status 2; a batch records it per item and exits with status 1.
"""

from __future__ import annotations

from pathlib import Path


class FlambientError(Exception):
    """Base class for errors a user can cause; ``str(err)`` is the one-line message."""

    exit_code: int = 2

    def __init__(self, message: str, path: str | Path | None = None, hint: str | None = None):
        self.message = message
        self.path = Path(path) if path is not None else None
        self.hint = hint
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path is not None else ""
        hint = f" ({self.hint})" if self.hint else ""
        return f"{where}{self.message}{hint}"


class InputError(FlambientError):
    """An input file or folder is missing, unreadable, corrupt or of an unsupported kind."""


class ConfigError(FlambientError):
    """A preset or config file is malformed, or a value in it is out of range."""


class ModelError(FlambientError):
    """A model cannot be found, is not a flambient model, or does not fit the input."""


class DeviceError(FlambientError):
    """A requested device or runtime (CUDA, TensorRT) is not available."""


def describe_os_error(exc: OSError, with_path: bool = True) -> str:
    """One line for an OS error: ``"No space left on device: /shoot/final/a.jpg"``.

    Used wherever a disk-full, read-only, permission or vanished-file error ends up in front of
    a user (a failed item, or the CLI's one-line error), instead of a Python traceback.
    """
    text = exc.strerror or str(exc) or type(exc).__name__
    if with_path and exc.filename is not None:
        text += f": {exc.filename}"
        if exc.filename2 is not None:
            text += f" -> {exc.filename2}"
    return text


def first_line(exc: BaseException | str, limit: int | None = None, empty: str | None = None) -> str:
    """The first line of an exception's text (or of a string), cut to ``limit`` characters.

    A third-party error's message can run over many lines (a stack of causes, a dump);
    a one-line report shows only its first. An empty text gives ``empty``, or the
    exception's type name.
    """
    text = str(exc).strip()
    if not text:
        return empty if empty is not None else (type(exc).__name__ if isinstance(exc, BaseException) else "")
    line = text.splitlines()[0]
    return line[:limit] if limit is not None else line
