"""Shared CLI plumbing: the global options, params loading, exit codes, console and logging."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console

if TYPE_CHECKING:
    from avf.config import Params
    from avf.predict.heads import DatasetHead

# Exit codes (documented in the README).
EXIT_OK = 0
EXIT_FAILED = 1  # the stage ran but failed (e.g. too many clips failed, a metric gate not met)
EXIT_USAGE = 2  # bad command line or invalid params.yaml
EXIT_MISSING = 3  # a required input, asset or service is missing

console = Console(stderr=True)


@dataclass
class State:
    params_path: Path = Path("params.yaml")
    verbose: int = 0


STATE = State()


class _CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at emit time.

    A plain ``StreamHandler(sys.stderr)`` keeps the stream it was given; when the CLI runs inside
    another program that swaps ``sys.stderr`` (pytest's capture, typer's ``CliRunner``, a notebook),
    the root logger is left holding a closed file and every later log record raises.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(console=console, show_path=False, rich_tracebacks=False)
        fmt = "%(message)s"
    else:
        handler = _CurrentStderrHandler()
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level, format=fmt, handlers=[handler], force=True)
    for noisy in ("absl", "urllib3", "matplotlib", "PIL", "filelock", "alembic", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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
