"""Helpers shared by the dataset adapters: option parsing, clip-id safety, duplicate checks, folds.

Every adapter builds its result through a :class:`ScanBuilder`, which rejects unsafe or duplicate clip
ids with a :class:`Problem` instead of raising, and :func:`finish_scan` applies the cross-cutting
``official_lists`` option (folds from HiCMAE / AVF-MAE list files instead of the built-in rules).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from avf.data.adapters.base import Adapter, Problem, RawClip, ScanResult

SAFE_ID = re.compile(r"^[A-Za-z0-9_-]+$")
VIDEO_EXTS = (".mp4", ".avi", ".flv", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def sanitize_id(text: str) -> str:
    """Map any string onto the safe clip-id alphabet (letters, digits, '-', '_')."""
    out = re.sub(r"[^A-Za-z0-9_-]+", "_", text.strip()).strip("_")
    return out or "_"


def require_dir(path: Path, what: str = "dataset root") -> Path:
    """Return ``path`` if it is a directory; raise a clear ``FileNotFoundError`` otherwise."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{what} not found (or not a directory): {path}")
    return path


def opt_choice(options: dict[str, Any], key: str, default: str, allowed: Sequence[str]) -> str:
    value = str(options.get(key, default)).strip()
    if value not in allowed:
        raise ValueError(f"option {key}={value!r} is not one of {list(allowed)}")
    return value


def opt_bool(options: dict[str, Any], key: str, default: bool) -> bool:
    value = options.get(key, default)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"option {key}={value!r} is not a boolean")


def opt_int(options: dict[str, Any], key: str, default: int) -> int:
    value = options.get(key, default)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"option {key}={value!r} is not an integer") from None


def opt_path(options: dict[str, Any], key: str, root: Path, default: str | None = None) -> Path | None:
    """A path option; relative values are taken relative to the dataset root."""
    value = options.get(key, default)
    if value in (None, ""):
        return None
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else root / path


def find_with_ext(folder: Path, stem: str, exts: Iterable[str]) -> Path | None:
    """The first ``folder/stem<ext>`` that exists, trying ``exts`` in order (case-insensitive ext)."""
    for ext in exts:
        for candidate in (folder / f"{stem}{ext}", folder / f"{stem}{ext.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def stable_rank(key: str, seed: int) -> str:
    """A deterministic pseudo-random sort key (same on every machine and Python version)."""
    return hashlib.sha1(f"{seed}:{key}".encode()).hexdigest()


def stratified_folds(items: Sequence[tuple[str, int]], k: int, seed: int) -> dict[str, int]:
    """Assign ``(key, label)`` items to folds 1..k, stratified by label, deterministically seeded."""
    by_label: dict[int, list[str]] = {}
    for key, label in items:
        by_label.setdefault(label, []).append(key)
    folds: dict[str, int] = {}
    offset = 0
    for label in sorted(by_label):
        keys = sorted(by_label[label], key=lambda s: stable_rank(s, seed))
        for i, key in enumerate(keys):
            folds[key] = (offset + i) % k + 1
        offset += len(keys)
    return folds


class ScanBuilder:
    """Collects clips and problems; rejects unsafe and duplicate clip ids as problems."""

    def __init__(self, dataset: str) -> None:
        self.dataset = dataset
        self.clips: list[RawClip] = []
        self.problems: list[Problem] = []
        self._seen: dict[str, str] = {}

    def problem(self, path: Path | str, reason: str) -> None:
        self.problems.append(Problem(str(path), reason))

    def add(self, clip: RawClip) -> bool:
        if not SAFE_ID.match(clip.clip_id):
            self.problem(clip.video_path, f"unsafe clip id {clip.clip_id!r} (letters, digits, '-', '_' only)")
            return False
        first = self._seen.get(clip.clip_id)
        if first is not None:
            self.problem(clip.video_path, f"duplicate clip id {clip.clip_id!r} (first seen at {first}); skipped")
            return False
        self._seen[clip.clip_id] = str(clip.video_path)
        self.clips.append(clip)
        return True

    def result(self) -> ScanResult:
        return ScanResult(clips=self.clips, problems=self.problems)


def finish_scan(adapter: Adapter, builder: ScanBuilder, root: Path) -> ScanResult:
    """Final step of every ``scan``: apply ``official_lists`` (a folder; relative to the dataset root) if set."""
    lists_dir = opt_path(adapter.options, "official_lists", root)
    if lists_dir is None:
        return builder.result()
    from avf.data.adapters.listfiles import assign_official_folds

    clips, problems = assign_official_folds(adapter, builder.clips, lists_dir)
    return ScanResult(clips=clips, problems=builder.problems + problems)
