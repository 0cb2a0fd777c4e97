"""Progress: a rich bar on a terminal; without one, a log line per tenth done (at most one per ``min_s``
seconds), a heartbeat every ``every_s`` seconds and a line at the end."""

from __future__ import annotations

import io
import logging

import pytest
from rich.console import Console

from avf.utils import progress, terminal
from avf.utils.progress import Progress, track


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    return now


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> pytest.LogCaptureFixture:
    """The progress lines logged by the test (no terminal)."""
    monkeypatch.setattr(progress, "is_tty", lambda: False)
    caplog.set_level(logging.INFO, logger="avf.progress")
    return caplog


def test_a_line_per_tenth_at_most_every_min_s_and_one_at_the_end(
    clock: list[float], log: pytest.LogCaptureFixture
) -> None:
    with Progress("faces demo", 100, min_s=30) as bar:
        for second in range(1, 101):
            clock[0] = second
            bar.advance()
    assert log.messages == [
        "faces demo: 30/100 (30%), 30s elapsed, ETA 1m10s",
        "faces demo: 60/100 (60%), 1m00s elapsed, ETA 40s",
        "faces demo: 90/100 (90%), 1m30s elapsed, ETA 10s",
        "faces demo: 100/100 (100%), 1m40s elapsed",
    ]


def test_fields_rate_from_the_first_update_and_the_last_fields_at_the_end(
    clock: list[float], log: pytest.LogCaptureFixture
) -> None:
    with Progress("pretrain", unit="steps", min_s=0) as bar:
        clock[0] = 40.0  # start-up (a Ray cluster) before the first step: not part of the ETA
        bar.update(1, 10, epoch="1/2", loss="2.3")
        clock[0] = 45.0
        bar.update(5, epoch="1/2", loss="2.1")
        bar.update(10, epoch="2/2", loss="1.9")
        bar.update(10, **{"val/uar": "50"})
    assert log.messages == [
        "pretrain: 1/10 steps (10%), epoch 1/2, loss 2.3, 40s elapsed",
        "pretrain: 5/10 steps (50%), epoch 1/2, loss 2.1, 45s elapsed, ETA 6s",
        "pretrain: 10/10 steps (100%), epoch 2/2, loss 1.9, val/uar 50, 45s elapsed",
    ]


def test_without_a_total_a_line_every_every_s(clock: list[float], log: pytest.LogCaptureFixture) -> None:
    with Progress("scan", every_s=60) as bar:
        for second in range(10, 200, 10):
            clock[0] = second
            bar.advance()
    assert log.messages == [
        "scan: 6, 1m00s elapsed",
        "scan: 12, 2m00s elapsed",
        "scan: 18, 3m00s elapsed",
        "scan: 19, 3m10s elapsed",
    ]


def test_a_failed_run_has_no_last_line(clock: list[float], log: pytest.LogCaptureFixture) -> None:
    with pytest.raises(RuntimeError), Progress("faces demo", 10) as bar:
        bar.advance()
        raise RuntimeError("stage failed")
    assert log.messages == []


def test_track_yields_every_item(log: pytest.LogCaptureFixture) -> None:
    assert list(track(iter(range(5)), total=5, desc="audio demo")) == [0, 1, 2, 3, 4]
    assert len(log.messages) == 1 and log.messages[0].startswith("audio demo: 5/5 (100%)")


def test_on_a_terminal_one_bar_with_the_fields(monkeypatch: pytest.MonkeyPatch, log: pytest.LogCaptureFixture) -> None:
    screen = io.StringIO()
    monkeypatch.setattr(progress, "is_tty", lambda: True)
    monkeypatch.setattr(terminal, "console", Console(file=screen, force_terminal=True, width=120))
    with Progress("finetune", unit="steps") as bar:
        bar.update(3, 8, epoch="1/2", loss="1.25")
    assert (
        "finetune" in screen.getvalue() and "3/8" in screen.getvalue() and "epoch 1/2, loss 1.25" in screen.getvalue()
    )
    assert log.messages == []
