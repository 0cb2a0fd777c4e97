"""Test files ordered longest first by measured durations (``tests/durations.json``).

`make test` hands whole files to its xdist workers in collection order (``--dist loadfile``), so the longest
files start first and no long file is left to run alone at the end. ``pytest --record-durations`` (what
``make test-durations`` runs) measures each file's setup + call + teardown seconds and merges them into the
JSON file.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent.parent
DURATIONS = TESTS / "durations.json"


def relative_test_path(path: Path | str) -> str | None:
    """``path`` relative to ``tests/`` (``unit/test_x.py``); None outside ``tests/``."""
    resolved = Path(path).resolve()
    return resolved.relative_to(TESTS).as_posix() if resolved.is_relative_to(TESTS) else None


def load_durations(path: Path = DURATIONS) -> dict[str, float]:
    """Measured seconds per test file (relative to ``tests/``); empty when the file is absent."""
    return json.loads(path.read_text()) if path.exists() else {}


def longest_first(items: list[pytest.Item], durations: dict[str, float]) -> None:
    """Sort ``items`` in place by their file's duration, longest first.

    A file without a measurement sorts first, as if it were the longest: started early, a short file costs
    the schedule next to nothing, while a long one started last would run alone at the end. Items outside
    ``tests/`` go last. The sort is stable: tests keep their order inside a file, equal files theirs.
    """

    def key(item: pytest.Item) -> float:
        name = relative_test_path(item.path)
        return 0.0 if name is None else -durations.get(name, math.inf)

    items.sort(key=key)


class DurationRecorder:
    """A pytest plugin that sums the phases' durations per test file and merges them into ``path`` at the end.

    Files that did not run keep their previous value, so a partial run refreshes only what it ran; files
    that no longer exist are dropped.
    """

    def __init__(self, path: Path = DURATIONS) -> None:
        self.path = path
        self.seconds: dict[str, float] = defaultdict(float)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        name = relative_test_path(TESTS.parent / report.fspath)
        if name is not None:
            self.seconds[name] += report.duration

    def pytest_sessionfinish(self) -> None:
        if not self.seconds:
            return
        merged = {**load_durations(self.path), **{k: round(v, 1) for k, v in self.seconds.items()}}
        kept = {k: v for k, v in merged.items() if (self.path.parent / k).is_file()}
        ordered = dict(sorted(kept.items(), key=lambda kv: (-kv[1], kv[0])))
        self.path.write_text(json.dumps(ordered, indent=2) + "\n")
