"""The CLI's log handler follows ``sys.stderr`` (pytest and CliRunner swap and close it)."""

from __future__ import annotations

import io
import logging
import sys

import pytest

from avf.cli import common


@pytest.fixture
def restore_root_logger():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_handler_writes_to_the_current_stderr_after_the_old_one_closed(monkeypatch, restore_root_logger) -> None:
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    common.setup_logging(0)
    logging.getLogger("avf.test").info("to the first stream")
    assert "to the first stream" in first.getvalue()

    first.close()  # what a finished CliRunner invocation / capture does to its stream
    second = io.StringIO()
    monkeypatch.setattr(sys, "stderr", second)
    logging.getLogger("prefect.flow_runs").info("after the swap")  # raised 'I/O operation on closed file'
    assert "INFO prefect.flow_runs: after the swap" in second.getvalue()
    assert "Logging error" not in second.getvalue()
