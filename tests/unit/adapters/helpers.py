"""Assertions shared by the adapter tests."""

from __future__ import annotations

from avf.data.adapters import ScanResult
from avf.data.adapters.common import SAFE_ID


def by_id(result: ScanResult) -> dict:
    return {c.clip_id: c for c in result.clips}


def assert_clip_ids_safe(result: ScanResult) -> None:
    ids = [c.clip_id for c in result.clips]
    assert len(ids) == len(set(ids)), "duplicate clip ids"
    for clip_id in ids:
        assert SAFE_ID.match(clip_id), clip_id


def reasons(result: ScanResult) -> dict[str, str]:
    """Problem reasons keyed by the problem path's last component (file or folder name)."""
    return {p.path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]: p.reason for p in result.problems}
