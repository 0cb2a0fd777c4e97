"""HiCMAE / AVF-MAE list files: import the official folds, export ours in the same format.

The official code reads space-separated lists without a header (``datasets.md`` §1.1):

- fine-tuning, classification: ``<face-frame dir> <16 kHz wav> <class index>``
- fine-tuning, regression: ``<face-frame dir> <16 kHz wav> <f> <f> <f>``
- pre-training: ``<video.mp4> <dummy int>`` (the wav path is derived from the video path)

Fine-tuning lists live in ``split0K/{train,test[,val]}.csv`` folders (MAFW adds a ``single/`` level);
a folder holding ``train.csv``/``test.csv`` directly is a single fixed split (fold 0). Paths are the
authors' absolute paths; ``rewrite={old_prefix: new_prefix}`` maps them onto a local root.

:func:`read_official_splits` turns such a tree into one row per (clip, fold, split), with clip ids
computed by the dataset's adapter (:meth:`Adapter.list_clip_id`), so the folds can be joined onto an
adapter scan; :func:`assign_official_folds` does that join (the adapters' ``official_lists`` option).
Every labelled line is checked against the adapter's label or targets (:func:`check_list_labels`).
The evaluation file of a fold is ``test.csv``, or ``val.csv`` where a fold has no ``test.csv``.
:func:`write_official_lists` exports our folds back.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from avf.data.adapters.base import Adapter, Problem, RawClip
from avf.utils.io import atomic_path

SPLITS = ("train", "val", "test")
_SPLIT_DIR = re.compile(r"^split_?(\d+)$", re.IGNORECASE)
COLUMNS = ("clip_id", "fold", "split", "frame_dir", "audio_path", "label", "targets", "list_file", "line")


def rewrite_path(path: str, rewrite: Mapping[str, str] | None) -> str:
    """Replace the longest matching prefix of ``path`` (a key of ``rewrite``) by its value."""
    if not rewrite:
        return path
    for old in sorted(rewrite, key=len, reverse=True):
        if old and path.startswith(old):
            return rewrite[old] + path[len(old) :]
    return path


def parse_rewrite(pairs: Iterable[str]) -> dict[str, str]:
    """``["OLD=NEW", ...]`` (command-line form) to a rewrite mapping."""
    out: dict[str, str] = {}
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old:
            raise ValueError(f"rewrite {pair!r} is not of the form OLD_PREFIX=NEW_PREFIX")
        out[old] = new
    return out


def read_list_file(path: Path, rewrite: Mapping[str, str] | None = None) -> list[tuple[int, list[str]]]:
    """``(line number, fields)`` of each non-empty line; the first two fields are prefix-rewritten."""
    rows: list[tuple[int, list[str]]] = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2:
            raise ValueError(f"{path}:{number}: expected '<frame dir> <wav> <label...>', got {line!r}")
        fields[0] = rewrite_path(fields[0], rewrite)
        if len(fields) > 2 and not _is_number(fields[1]):
            fields[1] = rewrite_path(fields[1], rewrite)
        rows.append((number, fields))
    return rows


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def find_split_dirs(split_root: Path) -> list[tuple[int, Path]]:
    """``(fold, folder)`` pairs under ``split_root`` (``split0K``; also below ``single/``, ``audio_visual/``).

    A folder holding ``train.csv`` or ``test.csv`` directly is one fixed split, fold 0.
    """
    split_root = Path(split_root)
    if not split_root.is_dir():
        raise FileNotFoundError(f"official list folder not found: {split_root}")
    for base in (
        split_root,
        split_root / "single",
        split_root / "audio_visual",
        split_root / "audio_visual/single",
    ):
        if not base.is_dir():
            continue
        folds = []
        for sub in sorted(base.iterdir()):
            match = _SPLIT_DIR.match(sub.name)
            if sub.is_dir() and match:
                folds.append((int(match.group(1)), sub))
        if folds:
            return sorted(folds)
        if any((base / f"{s}.csv").is_file() for s in SPLITS):
            return [(0, base)]
    raise FileNotFoundError(f"no split0K/ folders or train/val/test.csv files under {split_root}")


def read_official_splits(split_root: Path, adapter: Adapter, rewrite: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per list line: clip_id, fold (0 = fixed split), split, paths, label or targets.

    ``adapter`` (the dataset's) maps list paths to clip ids and says whether labels are classes or targets.
    """
    records: list[dict[str, object]] = []
    for fold, folder in find_split_dirs(Path(split_root)):
        for split in SPLITS:
            list_file = folder / f"{split}.csv"
            if not list_file.is_file():
                continue
            for number, fields in read_list_file(list_file, rewrite):
                frame_dir, audio = fields[0], fields[1] if len(fields) > 2 else None
                values = fields[2:] if len(fields) > 2 else fields[1:]
                label: int | None = None
                targets: tuple[float, ...] | None = None
                if adapter.task == "regression":
                    targets = tuple(float(v) for v in values)
                elif adapter.task == "classification":
                    label = int(float(values[0]))
                records.append(
                    {
                        "clip_id": adapter.list_clip_id(frame_dir, audio),
                        "fold": fold,
                        "split": split,
                        "frame_dir": frame_dir,
                        "audio_path": audio,
                        "label": label,
                        "targets": targets,
                        "list_file": str(list_file),
                        "line": number,
                    }
                )
    frame = pd.DataFrame.from_records(records, columns=list(COLUMNS))
    frame["fold"] = frame["fold"].astype("int64")
    frame["label"] = frame["label"].astype("Int64")
    return frame


def import_official_splits(
    split_root: Path, adapter: Adapter, out: Path, rewrite: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """:func:`read_official_splits` written to the CSV table ``out`` (atomically); returns the table."""
    table = read_official_splits(split_root, adapter, rewrite)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False)
    return table


def evaluation_rows(splits: pd.DataFrame) -> pd.DataFrame:
    """Rows of each fold's evaluation list: ``test``, or ``val`` where the fold has no ``test``."""
    has_test = splits.groupby("fold")["split"].transform(lambda s: (s == "test").any())
    chosen = (splits["split"] == "test") | (~has_test & (splits["split"] == "val"))
    return splits[chosen & (splits["fold"] > 0)]


TARGET_TOLERANCE = 5e-4  # list files print targets rounded; a class-order mix-up moves them by far more


def check_list_labels(adapter: Adapter, clips: Iterable[RawClip], splits: pd.DataFrame) -> None:
    """Every labelled list line must agree with the adapter's label (or targets) for that clip.

    Raises ``ValueError`` at the first disagreement, naming the list file, the line and both labels: a
    different class order (or target order) between the lists and the adapter would otherwise
    silently relabel the data.
    """
    by_id = {c.clip_id: c for c in clips}
    for row in splits.itertuples():
        clip = by_id.get(str(row.clip_id))
        if clip is None:
            continue
        where = f"{row.list_file}:{row.line}"
        if adapter.task == "classification" and clip.label is not None and not pd.isna(row.label):
            listed = int(row.label)
            if listed != clip.label:
                names = adapter.classes
                listed_name = names[listed] if 0 <= listed < len(names) else "out of range"
                raise ValueError(
                    f"{where}: clip {clip.clip_id!r} is labelled {listed} ({listed_name}) in the list but "
                    f"{clip.label} ({clip.label_name}) by the {adapter.name} adapter: the class orders differ"
                )
        elif adapter.task == "regression" and clip.targets is not None and row.targets is not None:
            listed_targets = tuple(row.targets)
            if len(listed_targets) != len(clip.targets) or any(
                abs(a - b) > TARGET_TOLERANCE for a, b in zip(listed_targets, clip.targets, strict=False)
            ):
                raise ValueError(
                    f"{where}: clip {clip.clip_id!r} has targets {listed_targets} in the list but {clip.targets} "
                    f"({', '.join(adapter.target_names)}) by the {adapter.name} adapter"
                )


def assign_official_folds(
    adapter: Adapter, clips: list[RawClip], lists_dir: Path
) -> tuple[list[RawClip], list[Problem]]:
    """Replace the built-in folds of ``clips`` by the official lists' (clips not listed are dropped)."""
    splits = read_official_splits(lists_dir, adapter)
    if splits.empty:
        raise ValueError(f"the official lists under {lists_dir} have no entries")
    check_list_labels(adapter, clips, splits)
    problems: list[Problem] = []
    known = {c.clip_id for c in clips}
    for row in splits[~splits["clip_id"].isin(known)].drop_duplicates("clip_id").itertuples():
        problems.append(Problem(f"{row.list_file}:{row.line}", f"listed clip {row.clip_id!r} not found on disk"))
    if (splits["fold"] > 0).any():
        # k-fold lists: a clip's fold is the one whose evaluation list holds it
        where_of, what, rows = "official test list", "a test clip of folds", evaluation_rows(splits)
        values = rows["fold"].astype(int)
    else:
        where_of, what, rows = "official lists", "listed in", splits
        values = rows["split"].astype(str)
    member: dict[str, Any] = {}
    for row, value in zip(rows.itertuples(), values, strict=True):
        first = member.setdefault(str(row.clip_id), value)
        if first != value:
            problems.append(
                Problem(f"{row.list_file}:{row.line}", f"clip {row.clip_id!r} is {what} {first} and {value}")
            )
    kept: list[RawClip] = []
    for clip in clips:
        value = member.get(clip.clip_id)
        if value is None:
            problems.append(Problem(str(clip.video_path), f"not in any {where_of} under {lists_dir}"))
        elif isinstance(value, str):
            kept.append(replace(clip, test_fold=None, official_split=value))
        else:
            kept.append(replace(clip, test_fold=int(value), official_split=None))
    return kept, problems


def _label_fields(clip: RawClip) -> str:
    if clip.targets is not None:
        return " ".join(f"{v:g}" for v in clip.targets)
    if clip.label is not None:
        return str(clip.label)
    return "0"  # pre-training dummy label


def write_official_lists(
    clips: Iterable[RawClip],
    out_dir: Path,
    *,
    frames_root: str | None = None,
    audio_root: str | None = None,
    frame_dir_for: Callable[[RawClip], str] | None = None,
    audio_for: Callable[[RawClip], str] | None = None,
    with_val: bool = False,
) -> list[Path]:
    """Write our folds as ``split0K/{train,test[,val]}.csv`` (k-fold) or ``{train,val,test}.csv``.

    Paths default to ``<frames_root>/<clip_id>`` and ``<audio_root>/<clip_id>.wav``. ``with_val`` writes
    ``val.csv`` as a copy of ``test.csv`` (HiCMAE's convention for DFEW / MSP-IMPROV / IEMOCAP).
    Returns the files written (each atomically).
    """
    clips = list(clips)
    if frame_dir_for is None:
        if frames_root is None:
            raise ValueError("give frames_root or frame_dir_for")
        frame_dir_for = lambda c: f"{frames_root.rstrip('/')}/{c.clip_id}"  # noqa: E731
    if audio_for is None:
        if audio_root is None:
            raise ValueError("give audio_root or audio_for")
        audio_for = lambda c: f"{audio_root.rstrip('/')}/{c.clip_id}.wav"  # noqa: E731

    def line(clip: RawClip) -> str:
        frame_dir, audio = frame_dir_for(clip), audio_for(clip)
        if any(ch.isspace() for ch in frame_dir + audio):
            raise ValueError(f"list paths may not contain spaces: {frame_dir!r} / {audio!r}")
        return f"{frame_dir} {audio} {_label_fields(clip)}\n"

    files: dict[Path, list[str]] = {}
    out_dir = Path(out_dir)
    folds = sorted({c.test_fold for c in clips if c.test_fold is not None})
    if folds:
        for k in folds:
            folder = out_dir / f"split{k:02d}"
            files[folder / "train.csv"] = [line(c) for c in clips if c.test_fold != k]
            files[folder / "test.csv"] = [line(c) for c in clips if c.test_fold == k]
            if with_val:
                files[folder / "val.csv"] = files[folder / "test.csv"]
    else:
        for split in SPLITS:
            members = [line(c) for c in clips if c.official_split == split]
            if members:
                files[out_dir / f"{split}.csv"] = members
    if not files:
        raise ValueError("no clip has a test fold or an official split; nothing to write")
    for path, lines in files.items():
        with atomic_path(path) as tmp:
            tmp.write_text("".join(lines), encoding="utf-8")
    return sorted(files)


# --- pre-training lists -------------------------------------------------------------------------


def derive_pretrain_audio(video_path: str, rule: str = "avf-mae") -> str:
    """The wav path the official pre-training loaders derive from a list's video path.

    ``hicmae``: ``video/file~/dev/mp4`` -> ``audio/file~/dev/aac``, then ``.mp4`` -> ``.wav``.
    ``avf-mae``: every ``videos`` -> ``audio_16k``, then ``.mp4`` -> ``.wav`` (whole-string replaces).
    """
    if rule == "hicmae":
        return video_path.replace("video/file~/dev/mp4", "audio/file~/dev/aac").replace(".mp4", ".wav")
    if rule == "avf-mae":
        return video_path.replace("videos", "audio_16k").replace(".mp4", ".wav")
    raise ValueError(f"unknown pre-training audio rule {rule!r} (hicmae or avf-mae)")


def read_pretrain_list(path: Path, rule: str = "avf-mae", rewrite: Mapping[str, str] | None = None) -> pd.DataFrame:
    """A pre-training list (``<video> <int>``) as video_path / audio_path rows (``.mp4`` added if absent)."""
    rows = []
    for _, fields in read_list_file(path, rewrite):
        video = fields[0] if Path(fields[0]).suffix else f"{fields[0]}.mp4"
        rows.append({"video_path": video, "audio_path": derive_pretrain_audio(video, rule)})
    return pd.DataFrame(rows, columns=["video_path", "audio_path"])


def write_pretrain_list(video_paths: Iterable[str | Path], out_file: Path) -> Path:
    """Write ``<video> 0`` lines (the official pre-training list format), atomically."""
    lines = []
    for video in video_paths:
        text = str(video)
        if any(ch.isspace() for ch in text):
            raise ValueError(f"list paths may not contain spaces: {text!r}")
        lines.append(f"{text} 0\n")
    with atomic_path(out_file) as tmp:
        tmp.write_text("".join(lines), encoding="utf-8")
    return Path(out_file)
