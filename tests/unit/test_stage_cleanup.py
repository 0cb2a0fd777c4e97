"""An interrupted data stage ends its workers and leaves no temp file, whichever worker was mid-write."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from avf.data.stages.common import worker_results as _worker_results


def test_interrupt_closes_the_workers_then_deletes_their_temp_files(tmp_path: Path) -> None:
    events: list[str] = []

    def results() -> Iterator[int]:
        try:
            yield 1
            (tmp_path / ".clip.mkv.k2j4.mkv.tmp").write_bytes(b"half")  # a worker killed mid-write
            yield 2
        finally:
            events.append("workers ended")

    (tmp_path / "done.mkv").write_bytes(b"whole")
    with pytest.raises(KeyboardInterrupt), _worker_results(results(), tmp_path) as it:
        for i in it:
            if i == 2:
                raise KeyboardInterrupt
    assert events == ["workers ended"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["done.mkv"]


def test_a_finished_stage_keeps_everything(tmp_path: Path) -> None:
    (tmp_path / ".other.tmp").write_bytes(b"")  # not ours to touch while nothing went wrong
    with _worker_results((i for i in (1, 2)), tmp_path) as it:
        assert list(it) == [1, 2]
    assert (tmp_path / ".other.tmp").exists()
