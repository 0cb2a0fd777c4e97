"""The terminal and the stage log: avf's own output on the terminal, other programs' internals in a file.

:func:`quiet` (every pipeline stage, unless ``-v``) sends what the process writes to standard error to
``$AVF_LOG_DIR/<name>.log`` (default ``runs/logs/<name>.log``): ``sys.stderr`` (Python warnings, the log
handlers of MLflow and Ray, MLflow's ``eprint`` lines, the worker output Ray forwards to the driver) and
file descriptor 2 itself, which the C++ logging of mediapipe/LiteRT and Ray writes to directly and which
child processes (the per-clip worker pool, a private Ray cluster) inherit. avf's own output (its loggers,
progress bars, summaries, errors) goes to :data:`console` / :func:`stream`: the standard error the command
started with. Records of other loggers that reach the root logger go to the file, and at ``ERROR`` to the
terminal too (:class:`OwnRecords`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from rich.console import Console

__all__ = [
    "DEFAULT_LOG_DIR",
    "LOG_DIR_ENV",
    "OwnRecords",
    "StageLog",
    "TerminalHandler",
    "active",
    "console",
    "is_tty",
    "log_path",
    "quiet",
    "stream",
]

LOG_DIR_ENV = "AVF_LOG_DIR"
DEFAULT_LOG_DIR = "runs/logs"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# MLflow's artifact download bars are carriage-return animations: unreadable in a file
QUIET_ENV = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


def _dup(fd: int) -> int | None:
    try:
        return os.dup(fd)
    except OSError:
        return None


def _fileno(f: Any) -> int | None:
    try:
        return int(f.fileno())
    except (AttributeError, OSError, ValueError):
        return None


def _isatty(f: Any) -> bool:
    try:
        return bool(f.isatty())
    except (AttributeError, OSError, ValueError):
        return False


def log_path(name: str) -> Path:
    """The log file of stage ``name``: ``$AVF_LOG_DIR/<name>.log``, else ``runs/logs/<name>.log``."""
    return Path(os.environ.get(LOG_DIR_ENV) or DEFAULT_LOG_DIR) / f"{name}.log"


class StageLog:
    """An installed redirect of standard error to ``path`` (see the module doc); :meth:`restore` undoes it."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
        self.path = path
        # O_APPEND: this process, its C++ libraries and its children all append to the one file
        self.file = path.open("a", encoding="utf-8", errors="backslashreplace", buffering=1)
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        self._stderr = sys.stderr
        self._fd2 = _dup(2)
        if self._fd2 is not None and _fileno(sys.stderr) == 2:
            encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
            self.terminal: TextIO = open(  # noqa: SIM115 - closed by restore()
                os.dup(self._fd2), "w", encoding=encoding, errors="backslashreplace", buffering=1
            )
            self._own_terminal = True
        else:  # an embedding program's stream (typer's CliRunner, a notebook)
            self.terminal = sys.stderr
            self._own_terminal = False
        if self._fd2 is not None:
            os.dup2(self.file.fileno(), 2)
        sys.stderr = self.file
        self._handler = logging.StreamHandler(self.file)
        self._handler.setFormatter(logging.Formatter(LOG_FORMAT))
        logging.getLogger().addHandler(self._handler)
        self._env = {k: os.environ.get(k) for k in QUIET_ENV}
        for k, v in QUIET_ENV.items():
            os.environ.setdefault(k, v)
        self._excepthook = sys.excepthook
        sys.excepthook = self._show_uncaught

    def _show_uncaught(self, kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        """An uncaught exception's traceback goes to the terminal, and to the log."""
        with contextlib.suppress(OSError, ValueError):
            traceback.print_exception(kind, value, tb, file=self.terminal)
            self.terminal.flush()
        self._excepthook(kind, value, tb)

    def restore(self) -> None:
        """Put standard error, the root logger, the environment and the exception hook back."""
        global _active
        if _active is self:
            _active = None
        logging.getLogger().removeHandler(self._handler)
        sys.excepthook = self._excepthook
        for k, v in self._env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        sys.stderr = self._stderr
        if self._fd2 is not None:
            os.dup2(self._fd2, 2)
            os.close(self._fd2)
        if self._own_terminal:
            self.terminal.close()
        self.file.close()


_active: StageLog | None = None


def quiet(path: Path) -> StageLog:
    """Send other programs' output of this process to ``path`` from now on (replacing an earlier redirect)."""
    global _active
    if _active is not None:
        _active.restore()
    _active = StageLog(path)
    return _active


def active() -> StageLog | None:
    """The installed redirect, if any."""
    return _active


def stream() -> TextIO:
    """Where avf's own output goes: the terminal a quiet command started with, else ``sys.stderr``."""
    return _active.terminal if _active is not None else sys.stderr


def is_tty() -> bool:
    return _isatty(stream())


class _TerminalFile:
    """:func:`stream` of the moment, as one file object (for the rich console); closing it is not its to do."""

    def write(self, s: str) -> int:
        return stream().write(s)

    def flush(self) -> None:
        stream().flush()

    def isatty(self) -> bool:
        return is_tty()

    def fileno(self) -> int:
        return stream().fileno()

    @property
    def encoding(self) -> str:
        return getattr(stream(), "encoding", None) or "utf-8"


console = Console(file=_TerminalFile())


class TerminalHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to :func:`stream` at emit time.

    A plain ``StreamHandler(sys.stderr)`` keeps the stream it was given; when the CLI runs inside another
    program that swaps ``sys.stderr`` (pytest's capture, typer's ``CliRunner``, a notebook), the root logger
    is left holding a closed file and every later log record raises.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return stream()

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


class OwnRecords(logging.Filter):
    """While a command is quiet, the terminal shows avf's records and other loggers' errors only."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _active is None or record.levelno >= logging.ERROR:
            return True
        return record.name == "avf" or record.name.startswith("avf.")
