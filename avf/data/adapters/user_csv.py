"""A user's own labelled videos, listed in a CSV file (adapter ``csv``).

Option ``file`` (required): the CSV, relative to the dataset root or absolute (``.tsv``: tab-separated;
UTF-8, a BOM is fine). One row per clip; header names are matched case-insensitively:

- ``path`` (required): a video file, or a folder of frame images (``extra['frames']``; an optional
  ``fps`` column gives its frame rate as ``extra['fps']``, else the faces stage's rule applies),
  relative to the dataset root unless absolute;
- ``subject`` (required): the person (folds and validation subjects are subject-independent);
- ``label``: the class name (classification); or, with option ``targets: "arousal,valence"``, those
  float columns (regression; a ``label`` column is then ignored);
- ``audio_path`` (optional): a separate audio file (empty: the video's own track; a frame folder
  without one has no audio, ``extra['no_audio']``);
- ``id`` (optional): the clip id (letters, digits, '-', '_'); default: the path relative to the root
  without its extension, folders joined by ``-`` and other characters replaced by ``_``, as the
  ``folder`` adapter does (``spk1/take 2.mp4`` -> ``spk1-take_2``; a path outside the root keeps all
  its folders);
- ``fold`` (int >= 1, the clip's test fold, used as given) or ``split`` (``train``/``val``/``test``, any
  case: a fixed split); values in both is an error. With neither, subjects are dealt into option ``folds``
  (default 5) subject-independent folds, seeded by option ``seed`` (default 0) and stratified by each
  subject's most frequent label.

Classes: option ``classes`` (comma-separated) fixes the names and their order; without it they are the
distinct labels of every row, sorted by Python's string order (code points: ``Zed`` before ``angry``).
Rows skipped for a missing file still count, so label indices do not move when a file goes missing.

A bad row (missing video or audio file, unknown label, duplicate or unsafe id, non-numeric target, bad
fold or split, empty required cell) is a :class:`Problem` whose path is ``<csv>:<line>``; the other rows
go on. A missing required column, an empty file, or neither a ``label`` column nor ``targets`` is a
``ValueError`` naming the file and the columns found. ``official_lists`` works as for every adapter.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avf.data.adapters.base import Adapter, RawClip, ScanResult, register_adapter
from avf.data.adapters.common import (
    SAFE_ID,
    ScanBuilder,
    finish_scan,
    opt_int,
    opt_path,
    require_dir,
    sanitize_id,
    stratified_folds,
)

SPLITS = ("train", "val", "test")


def _names(options: dict[str, Any], key: str) -> tuple[str, ...]:
    """A comma-separated (or list) option as a tuple of non-empty, distinct names."""
    value = options.get(key)
    if value in (None, ""):
        return ()
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    names = tuple(str(v).strip() for v in items if str(v).strip())
    if not names or len(set(names)) != len(names):
        raise ValueError(f"option {key}={value!r} must name distinct, non-empty values")
    return names


def _commonest(counts: Counter[int]) -> int:
    """The most frequent label (the lowest index on a tie)."""
    return min(counts, key=lambda k: (-counts[k], k))


@dataclass
class _Row:
    """One usable CSV row, before folds are assigned."""

    where: str  # <csv>:<line>
    clip_id: str
    subject: str
    video: Path
    audio: Path | None
    label_name: str | None
    targets: tuple[float, ...] | None
    fold: int | None
    split: str | None
    extra: dict[str, Any]


@register_adapter("csv")
class CsvAdapter(Adapter):
    task = "classification"
    num_folds = 5

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if options.get("file") in (None, ""):
            raise ValueError("adapter csv: option file (the CSV that lists the clips) is required")
        self.fixed_classes = _names(options, "classes")
        self.target_names = _names(options, "targets")  # type: ignore[misc]
        if self.target_names and self.fixed_classes:
            raise ValueError("adapter csv: give option classes (classification) or targets (regression), not both")
        self.task = "regression" if self.target_names else "classification"  # type: ignore[misc]
        self.metrics = ("pcc", "ccc", "rmse") if self.target_names else ("uar", "war")  # type: ignore[misc]
        self.classes = self.fixed_classes  # type: ignore[misc]  # without the option: set by scan
        self.folds = opt_int(options, "folds", 5)
        if self.folds < 2:
            raise ValueError(f"option folds={self.folds} must be >= 2")
        self.seed = opt_int(options, "seed", 0)
        self.num_folds = self.folds  # type: ignore[misc]  # final value set by scan

    # --- reading ---------------------------------------------------------------------------------

    def _read(self, path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
        """Normalised header and ``(line, row)`` pairs; ``ValueError`` for an empty file."""
        if not path.is_file():
            raise FileNotFoundError(f"adapter csv: CSV file not found: {path}")
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
        rows: list[tuple[int, dict[str, str]]] = []
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh, delimiter=delimiter)
            try:
                header = next(reader, None)
                if header is not None:
                    header = [h.strip().lower() for h in header]
                    start = reader.line_num + 1  # a quoted cell may span lines: a row is named by its first
                    for cells in reader:
                        if any(c.strip() for c in cells):
                            row = {h: (cells[i].strip() if i < len(cells) else "") for i, h in enumerate(header) if h}
                            rows.append((start, row))
                        start = reader.line_num + 1
            except UnicodeDecodeError as exc:
                raise ValueError(
                    f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8"
                ) from None
            except csv.Error as exc:
                raise ValueError(f"{path}:{reader.line_num}: unreadable CSV: {exc}") from None
        if not header or not rows:
            found = [h for h in header or [] if h]
            raise ValueError(f"{path}: the CSV has no data rows (columns found: {found})")
        return header, rows

    def _check_columns(self, path: Path, header: list[str], rows: list[tuple[int, dict[str, str]]]) -> str | None:
        """Raise for missing columns; return the fold source: ``fold``, ``split`` or None (automatic)."""
        found = [h for h in header if h]
        if self.task == "regression":
            labels = [t.lower() for t in self.target_names]
        elif "label" in header:
            labels = ["label"]
        else:
            raise ValueError(
                f"{path}: neither a label column (classification) nor the targets option (regression); "
                f"columns found: {found}"
            )
        missing = [c for c in ("path", "subject", *labels) if c not in header]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; columns found: {found}")
        used = [c for c in ("fold", "split") if any(r.get(c) for _, r in rows)]
        if len(used) == 2:
            raise ValueError(f"{path}: both fold and split columns have values; keep one of them")
        return used[0] if used else None

    def _default_id(self, written: str, root: Path, is_dir: bool) -> str:
        rel = Path(written)
        if rel.is_absolute():
            try:
                rel = rel.relative_to(root.resolve())
            except ValueError:
                rel = Path(*rel.parts[1:])
        parts = [p for p in rel.parts if p not in ("", ".", "..")]
        if parts and not is_dir:
            parts[-1] = Path(parts[-1]).stem
        return "-".join(sanitize_id(p) for p in parts)

    def _parse(
        self, root: Path, where: str, row: dict[str, str], fold_source: str | None
    ) -> tuple[_Row | None, list[str]]:
        """One row as a :class:`_Row`, or None and the reasons it is unusable."""
        why: list[str] = []
        written, subject = row.get("path", ""), row.get("subject", "")
        video: Path | None = None
        audio: Path | None = None
        if not written:
            why.append("empty path")
        else:
            video = Path(written).expanduser()
            video = video if video.is_absolute() else root / video
            if not video.exists():
                why.append(f"video not found: {video}")
        if not subject:
            why.append("empty subject")
        if row.get("audio_path"):
            audio = Path(row["audio_path"]).expanduser()
            audio = audio if audio.is_absolute() else root / audio
            if not audio.is_file():
                why.append(f"audio file not found: {audio}")
        label_name: str | None = None
        targets: tuple[float, ...] | None = None
        if self.task == "regression":
            values = []
            for name in self.target_names:
                text = row.get(name.lower(), "")
                try:
                    value = float(text)
                except ValueError:
                    value = math.nan
                if not math.isfinite(value):
                    why.append(f"target {name}={text!r} is not a finite number")
                values.append(value)
            targets = tuple(values)
        else:
            label_name = row.get("label", "")
            if not label_name:
                why.append("empty label")
            elif label_name not in self.classes:
                why.append(f"unknown label {label_name!r} (classes: {', '.join(self.classes)})")
        fold: int | None = None
        split: str | None = None
        if fold_source == "fold":
            text = row.get("fold", "")
            try:
                number = float(text)
            except ValueError:
                number = math.nan
            if not (number.is_integer() and number >= 1):
                why.append(f"fold {text!r} is not an integer >= 1")
            else:
                fold = int(number)
        elif fold_source == "split":
            split = row.get("split", "").lower()
            if split not in SPLITS:
                why.append(f"split {row.get('split', '')!r} is not one of {list(SPLITS)}")
        extra: dict[str, Any] = {"csv_row": where}
        is_dir = video is not None and video.is_dir()
        if is_dir:
            extra["frames"] = True
            if audio is None:
                extra["no_audio"] = True
        if row.get("fps"):
            try:
                fps = float(row["fps"])
            except ValueError:
                fps = math.nan
            if not (math.isfinite(fps) and fps > 0):
                why.append(f"fps {row['fps']!r} is not a positive number")
            extra["fps"] = fps
        clip_id = row.get("id") or (self._default_id(written, root, is_dir) if written else "")
        if clip_id and not SAFE_ID.match(clip_id):
            why.append(f"unsafe clip id {clip_id!r} (letters, digits, '-', '_' only)")
        if why or video is None:
            return None, why
        return _Row(where, clip_id, subject, video, audio, label_name, targets, fold, split, extra), []

    # --- folds -----------------------------------------------------------------------------------

    def _auto_folds(self, path: Path, rows: Sequence[_Row]) -> dict[str, int]:
        """Subject -> fold: whole subjects dealt into ``folds`` folds, stratified by their commonest label."""
        by_subject: dict[str, Counter[int]] = {}
        for r in rows:
            label = self.classes.index(r.label_name) if r.label_name is not None else 0
            by_subject.setdefault(r.subject, Counter())[label] += 1
        if len(by_subject) < self.folds:
            raise ValueError(
                f"{path}: {len(by_subject)} subject(s) with usable clips cannot fill folds={self.folds} "
                "subject-independent folds; lower the folds option or add a fold or split column"
            )
        items = [(subject, _commonest(counts)) for subject, counts in by_subject.items()]
        return stratified_folds(items, self.folds, self.seed)

    # --- scan ------------------------------------------------------------------------------------

    def scan(self, root: Path) -> ScanResult:
        root = require_dir(root)
        path = opt_path(self.options, "file", root) or root  # never None: __init__ requires the option
        header, lines = self._read(path)
        fold_source = self._check_columns(path, header, lines)
        if self.task == "classification" and not self.fixed_classes:
            self.classes = tuple(sorted({r["label"] for _, r in lines if r.get("label")}))  # type: ignore[misc]
        out = ScanBuilder(self.name)
        rows: list[_Row] = []
        first: dict[str, str] = {}
        for line, raw in lines:
            where = f"{path}:{line}"
            row, why = self._parse(root, where, raw, fold_source)
            if row is not None and row.clip_id in first:
                why = [f"duplicate clip id {row.clip_id!r} (first at {first[row.clip_id]})"]
            if row is None or why:
                out.problem(where, "; ".join(why) + "; row skipped")
                continue
            first[row.clip_id] = where
            rows.append(row)
        # no usable row: the row problems above are the report, not a fold error
        automatic = fold_source is None and self.options.get("official_lists") in (None, "") and bool(rows)
        subject_fold = self._auto_folds(path, rows) if automatic else {}  # official_lists: finish_scan's folds
        for r in rows:
            out.add(
                RawClip(
                    clip_id=r.clip_id,
                    dataset=self.name,
                    subject=r.subject,
                    video_path=r.video,
                    audio_path=r.audio,
                    label=self.classes.index(r.label_name) if r.label_name is not None else None,
                    label_name=r.label_name,
                    targets=r.targets,
                    test_fold=r.fold if fold_source == "fold" else subject_fold.get(r.subject),
                    official_split=r.split,
                    extra=r.extra,
                )
            )
        result = finish_scan(self, out, root)
        self.num_folds = max((c.test_fold or 0 for c in result.clips), default=0)  # type: ignore[misc]
        return result
