"""A quiet stage's standard error: other programs' output (native, child processes, Python streams, other
loggers) goes to its log file; avf's records, its console and errors stay on the terminal; all is undone after."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from avf.cli import common
from avf.utils import terminal


@pytest.fixture
def screen(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], io.StringIO]]:
    """Makes the terminal a stand-in ``sys.stderr`` (as typer's CliRunner gives) with the CLI's logging on it; in
    the test's own phase, since pytest swaps ``sys.stderr`` and resets the root logger's level between phases."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level

    def make() -> io.StringIO:
        out = io.StringIO()
        monkeypatch.setattr(sys, "stderr", out)
        common.setup_logging(0)
        return out

    yield make
    root.handlers[:] = handlers
    root.setLevel(level)


def test_other_programs_output_goes_to_the_log_and_avfs_to_the_terminal(
    screen: Callable[[], io.StringIO],
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    shown_on = screen()
    path = tmp_path / "logs" / "faces-demo.log"
    stage_log = terminal.quiet(path)
    try:
        os.write(2, b"INFO: Creating LiteRT environment with options\n")  # what C++ logging does
        child = "import os; os.write(2, b'W0000 Input tensor memory is not aligned\\n')"
        subprocess.run([sys.executable, "-c", child], check=True)  # a worker process inherits the file
        print("Downloading artifacts: 100%", file=sys.stderr)
        logging.getLogger("somelib").warning("started monitoring system metrics")
        logging.getLogger("somelib").error("somelib failed")
        logging.getLogger("avf.data").info("faces demo: 3 processed")
        common.console.print("summary table")
        assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false"
    finally:
        stage_log.restore()
    shown, logged = shown_on.getvalue(), path.read_text()
    for noise in ("Creating LiteRT", "Input tensor memory", "Downloading artifacts", "system metrics"):
        assert noise in logged and noise not in shown, noise
    for own in ("faces demo: 3 processed", "somelib failed", "summary table"):
        assert own in shown, own
    assert "faces demo: 3 processed" in logged and "somelib failed" in logged  # the log has the context too
    assert (
        sys.stderr is shown_on
        and terminal.active() is None
        and "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR" not in os.environ
    )
    os.write(2, b"fd 2 is back\n")
    assert "fd 2 is back" in capfd.readouterr().err


def test_an_uncaught_error_is_on_the_terminal_and_in_the_log(screen: Callable[[], io.StringIO], tmp_path: Path) -> None:
    shown_on = screen()
    stage_log = terminal.quiet(tmp_path / "stage.log")
    try:
        try:
            raise RuntimeError("boom in the stage")
        except RuntimeError as exc:
            sys.excepthook(type(exc), exc, exc.__traceback__)  # what the interpreter does with it
    finally:
        stage_log.restore()
    assert "RuntimeError: boom in the stage" in shown_on.getvalue()
    assert "RuntimeError: boom in the stage" in (tmp_path / "stage.log").read_text()


def test_without_a_quiet_stage_everything_stays_on_the_terminal(screen: Callable[[], io.StringIO]) -> None:
    shown_on = screen()
    logging.getLogger("somelib").info("third-party detail")
    assert "third-party detail" in shown_on.getvalue() and terminal.stream() is shown_on
