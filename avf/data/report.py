"""Per-stage accounting: processed / skipped / failed clips, ``failures.csv`` and ``summary.json``.

Every data stage fills one :class:`StageReport` and writes it to ``reports/<stage>/<dataset>/``:
``failures.csv`` (``file, clip_id, reason``: one line per unusable file, adapter problems included)
and ``summary.json`` (counts, failures by reason, failure share and the threshold). A failure's
*category* is its reason up to the first colon ("face in too few frames: coverage 0.23 < 0.5" ->
"face in too few frames"), which is what the summary table groups by.
"""

from __future__ import annotations

import csv
import io
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avf.utils.io import atomic_path, write_json

__all__ = ["Failure", "StageReport", "category", "printable"]


def printable(text: str) -> str:
    """``text`` as valid UTF-8: bytes of a non-UTF-8 file name (surrogate escapes) become ``\\xNN``.

    Linux file names are bytes; Python decodes the undecodable ones to lone surrogates, which CSV,
    Parquet and UTF-8 text files cannot hold.
    """
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that is not an escaped byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def category(reason: str) -> str:
    """The reason's kind, for grouping: the text before the first colon (at most 60 characters)."""
    return reason.split(":", 1)[0].strip()[:60] or "unknown"


@dataclass(frozen=True)
class Failure:
    file: str
    clip_id: str
    reason: str


@dataclass
class StageReport:
    """Outcome counts of one stage run over one dataset."""

    stage: str
    dataset: str
    processed: int = 0  # done in this run
    skipped: int = 0  # already done by an earlier run with the same fingerprint
    excluded: int = 0  # not attempted: failed in an earlier stage
    failures: list[Failure] = field(default_factory=list)
    flags: Counter[str] = field(default_factory=Counter)  # usable but flagged (e.g. audio 'missing' filled)
    started: float = field(default_factory=time.monotonic)
    extra: dict[str, Any] = field(default_factory=dict)

    def fail(self, file: str | Path, clip_id: str | None, reason: str) -> None:
        self.failures.append(Failure(printable(str(file)), printable(clip_id or ""), printable(reason)))

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def total(self) -> int:
        return self.processed + self.skipped + self.failed

    @property
    def fail_frac(self) -> float:
        return self.failed / self.total if self.total else 0.0

    def by_reason(self) -> Counter[str]:
        return Counter(category(f.reason) for f in self.failures)

    def too_many_failures(self, max_fail_frac: float) -> bool:
        return self.fail_frac > max_fail_frac

    def summary(self, max_fail_frac: float) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "dataset": self.dataset,
            "total": self.total,
            "processed": self.processed,
            "skipped": self.skipped,
            "failed": self.failed,
            "excluded": self.excluded,
            "failed_by_reason": dict(self.by_reason().most_common()),
            "flagged": dict(self.flags),
            "fail_frac": round(self.fail_frac, 4),
            "max_fail_frac": max_fail_frac,
            "passed": not self.too_many_failures(max_fail_frac),
            "elapsed_s": round(time.monotonic() - self.started, 2),
            **self.extra,
        }

    def write(self, reports_dir: str | Path, max_fail_frac: float) -> Path:
        """Write ``failures.csv`` and ``summary.json`` under ``reports_dir/<stage>/<dataset>/``."""
        out = Path(reports_dir) / self.stage / self.dataset
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["file", "clip_id", "reason"])
        for f in self.failures:
            writer.writerow([f.file, f.clip_id, f.reason])
        with atomic_path(out / "failures.csv") as tmp:
            tmp.write_text(buf.getvalue())
        write_json(out / "summary.json", self.summary(max_fail_frac))
        return out

    def line(self) -> str:
        """What :meth:`table` shows, on one line (for logs)."""
        parts = [f"{self.processed} processed", f"{self.skipped} skipped"]
        if self.excluded:
            parts.append(f"{self.excluded} excluded")
        parts += [f"{n} flagged {flag}" for flag, n in sorted(self.flags.items())]
        failed = f"{self.failed} failed ({self.fail_frac:.1%})"
        reasons = ", ".join(f"{reason} {n}" for reason, n in self.by_reason().most_common())
        parts.append(f"{failed}: {reasons}" if reasons else failed)
        return f"{self.stage} {self.dataset}: " + ", ".join(parts)

    def table(self) -> Any:
        """A rich table: processed / skipped / failed by reason."""
        from rich.table import Table

        t = Table(title=f"{self.stage} · {self.dataset}", show_header=True)
        t.add_column("outcome")
        t.add_column("clips", justify="right")
        t.add_row("processed", str(self.processed))
        t.add_row("skipped (already done)", str(self.skipped))
        if self.excluded:
            t.add_row("excluded (failed earlier)", str(self.excluded))
        for flag, n in sorted(self.flags.items()):
            t.add_row(f"flagged: {flag}", str(n))
        t.add_row("failed", str(self.failed), style="red" if self.failed else None)
        for reason, n in self.by_reason().most_common():
            t.add_row(f"  {reason}", str(n), style="red")
        t.add_row("failure share", f"{self.fail_frac:.1%}")
        return t
