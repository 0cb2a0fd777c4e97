"""Progress reporting: a rich bar on a terminal, throttled log lines otherwise (DVC, Prefect, CI)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger("avf.progress")


def is_tty() -> bool:
    return sys.stderr.isatty()


def track(
    items: Iterable[T], total: int | None = None, desc: str = "working", every_s: float = 30.0, every_frac: float = 0.1
) -> Iterator[T]:
    """Iterate ``items`` while reporting progress.

    On a terminal this shows a rich progress bar; otherwise it logs one line each ``every_frac`` of
    ``total`` or ``every_s`` seconds, whichever comes first (no carriage-return spam in logs).
    """
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if is_tty():
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            transient=False,
        ) as bar:
            task = bar.add_task(desc, total=total)
            for item in items:
                yield item
                bar.advance(task)
        return
    start = last = time.monotonic()
    next_frac = every_frac
    for done, item in enumerate(items, start=1):
        yield item
        now = time.monotonic()
        frac = done / total if total else 0.0
        if now - last >= every_s or (total and frac >= next_frac) or (total and done == total):
            rate = done / max(now - start, 1e-9)
            of = f"/{total}" if total else ""
            log.info("%s: %d%s done (%.1f/s, %.0fs elapsed)", desc, done, of, rate, now - start)
            last = now
            while total and next_frac <= frac:
                next_frac += every_frac
