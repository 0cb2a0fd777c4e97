"""The adapter scan that the faces, audio and manifest stages start from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from avf.config.data import DatasetSpec
from avf.data.adapters import Problem, RawClip, get_adapter
from avf.data.manifest import LabelSpace
from avf.data.report import StageReport

__all__ = ["ScanOutcome", "report_scan", "scan_dataset"]


@dataclass
class ScanOutcome:
    """Clips to process, the adapter's problems, clips rejected before processing (id -> reason), and the
    adapter's label space."""

    clips: list[RawClip]
    problems: list[Problem]
    rejected: dict[str, str]
    labels: LabelSpace

    def kept_ids(self) -> set[str]:
        """Ids of the clips a stage processes (the rest of its outputs are stale)."""
        return {c.clip_id for c in self.clips if c.clip_id not in self.rejected}


def scan_dataset(spec: DatasetSpec) -> ScanOutcome:
    """Run the dataset's adapter; clip ids used by more than one file are rejected (every copy).

    Raises ``FileNotFoundError`` for a missing raw folder and ``KeyError`` for an unknown adapter.
    """
    adapter = get_adapter(spec.adapter, **spec.options)
    result = adapter.scan(Path(spec.raw_dir))
    by_id: dict[str, list[RawClip]] = {}
    for clip in result.clips:
        by_id.setdefault(clip.clip_id, []).append(clip)
    clips, problems, rejected = [], list(result.problems), {}
    for clip_id, group in by_id.items():
        clips.append(group[0])
        if len(group) > 1:
            paths = [str(c.video_path) for c in group]
            rejected[clip_id] = f"duplicate clip id: {clip_id!r} is used by {len(group)} files"
            for c in group:
                others = ", ".join(p for p in paths if p != str(c.video_path))
                problems.append(Problem(str(c.video_path), f"duplicate clip id: {clip_id!r} also used by {others}"))
    labels = LabelSpace(adapter.task, tuple(adapter.classes), tuple(adapter.target_names))
    return ScanOutcome(clips, problems, rejected, labels)


def report_scan(scan: ScanOutcome, report: StageReport) -> None:
    """Record the adapter's problems as failures of the stage."""
    for p in scan.problems:
        report.fail(p.path, None, p.reason)
