"""Shared CLI plumbing: the global options, params loading, exit codes, console and logging."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import RenderableType

from avf.utils import terminal

if TYPE_CHECKING:
    from avf.config import Params
    from avf.predict.heads import DatasetHead

# Exit codes (documented in the README).
EXIT_OK = 0
EXIT_FAILED = 1  # the stage ran but failed (e.g. too many clips failed, a metric gate not met)
EXIT_USAGE = 2  # bad command line or invalid params.yaml
EXIT_MISSING = 3  # a required input, asset or service is missing

console = terminal.console  # avf's own output: the terminal, also while a quiet stage logs the rest to a file


@dataclass
class State:
    params_path: Path = Path("params.yaml")
    verbose: int = 0
    # the command is the whole process (the `avf` script): a quiet stage's redirect then stays until the process
    # exits, so what Ray, MLflow and mediapipe print while shutting down goes to its log too
    whole_process: bool = False


STATE = State()


def setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO
    if terminal.is_tty():
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(console=console, show_path=False, rich_tracebacks=False)
        fmt = "%(message)s"
    else:
        handler = terminal.TerminalHandler()
        fmt = terminal.LOG_FORMAT
    handler.addFilter(terminal.OwnRecords())
    logging.basicConfig(level=level, format=fmt, handlers=[handler], force=True)
    for noisy in ("absl", "urllib3", "matplotlib", "PIL", "filelock", "alembic", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def quiet_stage(name: str) -> None:
    """Other programs' output of this stage goes to its log file (:mod:`avf.utils.terminal`), unless ``-v``.

    In-process (tests, notebooks) the redirect ends with the command (:func:`end_quiet`); run as the `avf`
    script it lasts until the process exits.
    """
    if not STATE.verbose:
        terminal.quiet(terminal.log_path(name))


def end_quiet() -> None:
    """Undo :func:`quiet_stage` at the end of an in-process command (the root command's close callback)."""
    stage_log = terminal.active()
    if stage_log is not None and not STATE.whole_process:
        stage_log.restore()


def summary(table: RenderableType, line: str, note: str | None = None) -> None:
    """A stage's closing summary: ``table`` and then ``note`` on a terminal; ``line`` and ``note`` as one line
    in a log (DVC, CI)."""
    if terminal.is_tty():
        console.print(table)
        if note:
            console.print(note, highlight=False, markup=False)
    else:
        console.print(f"{line}; {note}" if note else line, soft_wrap=True, highlight=False, markup=False)


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Print a one-line error (no traceback) and exit with ``code``."""
    console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


def load() -> Params:
    """Load and validate the params file given by ``--params`` (exit 2 on any problem)."""
    from avf.config import ParamsError, load_params

    try:
        return load_params(STATE.params_path)
    except ParamsError as e:
        fail(str(e), EXIT_USAGE)


def dataset_head(name: str) -> DatasetHead:
    """The output names of a model fine-tuned on ``name``: a dataset of ``params.yaml`` (its adapter with
    its options, e.g. ``cremad`` with ``classes: 4``) or else an adapter name; exit 2 when neither fits."""
    from avf.data.adapters import get_adapter
    from avf.predict.heads import dataset_head as head_of

    try:
        datasets = load().data.datasets if Path(STATE.params_path).is_file() else {}
        spec = datasets.get(name)
        adapter = get_adapter(spec.adapter, **spec.options) if spec is not None else get_adapter(name)
        head = head_of(adapter)
    except (KeyError, ValueError) as e:
        fail(str(e).strip('"'), EXIT_USAGE)
    return head if spec is None else replace(head, dataset=name)


def require_file(path: Path, what: str) -> Path:
    if not path.exists():
        fail(f"{what} not found: {path}", EXIT_MISSING)
    return path
