"""Test files run longest first by their measured durations (tests/support/durations.py)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tests.support.durations import TESTS, DurationRecorder, load_durations, longest_first


def _item(rel: str, name: str = "t") -> Any:
    return SimpleNamespace(path=TESTS / rel, name=name)


def test_files_run_longest_first_and_unmeasured_files_before_them() -> None:
    items = [
        _item("unit/test_short.py"),
        _item("unit/test_long.py", "a"),
        _item("unit/test_new.py"),
        _item("unit/test_long.py", "b"),
        SimpleNamespace(path=TESTS.parent / "benchmarks" / "test_x.py", name="outside"),
        _item("unit/test_mid.py"),
    ]
    durations = {"unit/test_short.py": 1.0, "unit/test_long.py": 90.0, "unit/test_mid.py": 20.0}
    longest_first(items, durations)
    order = [(Path(i.path).name, i.name) for i in items]
    assert order == [
        ("test_new.py", "t"),  # not measured yet: treated as the longest
        ("test_long.py", "a"),  # a file's tests keep their order
        ("test_long.py", "b"),
        ("test_mid.py", "t"),
        ("test_short.py", "t"),
        ("test_x.py", "outside"),
    ]


def test_the_committed_durations_name_existing_test_files() -> None:
    durations = load_durations()
    assert durations, "tests/durations.json is missing or empty: run make test-durations"
    assert all(v >= 0 for v in durations.values())
    stale = sorted(name for name in durations if not (TESTS / name).is_file())
    assert not stale, f"tests/durations.json names files that no longer exist: {stale}"


def test_the_recorder_sums_phases_per_file_merges_and_drops_deleted_files(tmp_path: Path) -> None:
    (tmp_path / "unit").mkdir()
    for name in ("test_a.py", "test_b.py"):
        (tmp_path / "unit" / name).touch()
    path = tmp_path / "durations.json"
    path.write_text(json.dumps({"unit/test_b.py": 7.0, "unit/test_gone.py": 50.0}))
    recorder = DurationRecorder(path)
    rel = (TESTS / "unit" / "test_a.py").relative_to(TESTS.parent).as_posix()
    for duration in (0.25, 2.0, 0.25):  # setup, call, teardown
        recorder.pytest_runtest_logreport(SimpleNamespace(fspath=rel, duration=duration))  # type: ignore[arg-type]
    recorder.pytest_runtest_logreport(SimpleNamespace(fspath="benchmarks/x.py", duration=9.0))  # type: ignore[arg-type]
    recorder.pytest_sessionfinish()
    assert json.loads(path.read_text()) == {"unit/test_b.py": 7.0, "unit/test_a.py": 2.5}
