"""Progress reporting: a rich bar on a terminal, throttled log lines otherwise (DVC, Prefect, CI).

Both go where avf's own output goes (:mod:`avf.utils.terminal`), never into a quiet command's log file.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any, TypeVar

from avf.utils import terminal

__all__ = ["Progress", "is_tty", "track"]

T = TypeVar("T")
log = logging.getLogger("avf.progress")


def is_tty() -> bool:
    return terminal.is_tty()


class Progress:
    """Progress of ``desc`` toward ``total`` (``update`` / ``advance``; use it as a context manager).

    On a terminal: one rich bar with the count, ``fields`` (e.g. epoch, loss), elapsed time and ETA.
    Otherwise a log line each time another ``every_frac`` of ``total`` is done, at most one per ``min_s``
    seconds and at least one per ``every_s`` seconds of updates, and one at the end (unless it failed).
    """

    def __init__(
        self,
        desc: str,
        total: int | None = None,
        *,
        unit: str = "",
        every_frac: float = 0.1,
        min_s: float = 30.0,
        every_s: float = 60.0,
    ) -> None:
        self.desc, self.total, self.unit = desc, total, unit
        self.every_frac, self.min_s, self.every_s = every_frac, min_s, every_s
        self.done = 0
        self.fields: dict[str, str] = {}
        self._bar: Any = None
        self._task: Any = None
        self._start = self._last = time.monotonic()
        self._next = 1  # crossing this multiple of every_frac is the next line's occasion
        self._logged: tuple[int, dict[str, str]] = (0, {})
        self._first: tuple[float, int] | None = None  # the first update: the rate is measured from there

    def __enter__(self) -> Progress:
        self._start = self._last = time.monotonic()
        if is_tty():
            self._bar = _rich_progress()
            self._bar.start()
            self._task = self._bar.add_task(self.desc, total=self.total, info="")
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif kind is None and (self.done, self.fields) != self._logged:
            self._log_line(time.monotonic())

    def advance(self, n: int = 1) -> None:
        self.update(self.done + n)

    def update(self, done: int, total: int | None = None, **fields: str) -> None:
        """``done`` of ``total`` (unchanged when None); ``fields`` replace the shown ones of the same name."""
        self.done = done
        if total is not None:
            self.total = total
        self.fields.update(fields)
        if self._first is None:
            self._first = (time.monotonic(), done)
        if self._bar is not None:
            info = ", ".join(f"{k} {v}" for k, v in self.fields.items())
            self._bar.update(self._task, completed=done, total=self.total, info=info)
            return
        now, total = time.monotonic(), self.total or 0
        if total and done >= total:
            return  # the line at the end says it, with the fields of the last update
        since = now - self._last
        if since >= self.every_s or (total and self._steps(done / total) >= self._next and since >= self.min_s):
            self._log_line(now)

    def _steps(self, frac: float) -> int:
        """Whole ``every_frac`` steps in ``frac`` (the epsilon counts 0.3 / 0.1 = 2.999... as 3)."""
        return math.floor(frac / self.every_frac + 1e-9)

    def _log_line(self, now: float) -> None:
        elapsed = now - self._start
        count = f"{self.done}/{self.total}" if self.total else str(self.done)
        count += f" {self.unit}" if self.unit else ""
        parts = [f"{k} {v}" for k, v in self.fields.items()]
        timing = f"{_duration(elapsed)} elapsed"
        if self.total:
            frac = self.done / self.total
            count += f" ({frac:.0%})"
            t0, done0 = self._first or (now, self.done)
            if done0 < self.done < self.total:  # from the first update on: not the start-up before it
                timing += f", ETA {_duration((now - t0) / (self.done - done0) * (self.total - self.done))}"
            self._next = self._steps(frac) + 1
        log.info("%s: %s", self.desc, ", ".join([count, *parts, timing]))
        self._last, self._logged = now, (self.done, dict(self.fields))


def track(items: Iterable[T], total: int | None = None, desc: str = "working", **options: Any) -> Iterator[T]:
    """Iterate ``items`` while reporting progress (:class:`Progress`, ``options`` are its keywords)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(desc, total, **options) as bar:
        for item in items:
            yield item
            bar.advance()


def _rich_progress() -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as Bar

    return Bar(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=terminal.console,
        # a quiet command's sys.stderr is its log file: the bar must not pull that onto the terminal
        redirect_stderr=terminal.active() is None,
    )


def _duration(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
