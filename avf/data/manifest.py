"""The clip index of one dataset: a Parquet table with an explicit schema check.

One row per clip the adapter listed (failed clips included, with ``status`` saying why), built from
the adapter's scan and the per-clip sidecars of the faces and audio stages (:func:`build_manifest`).
:func:`validate` checks columns, dtypes, nullability and a few invariants (unique ids, usable rows
have their files) and raises :class:`ManifestError` listing every problem.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from avf.data.adapters.base import RawClip
from avf.data.report import printable
from avf.utils.io import atomic_path

__all__ = ["COLUMNS", "ManifestError", "build_manifest", "read_manifest", "validate", "write_manifest"]

SAFE_ID = re.compile(r"^[A-Za-z0-9_-]+$")
AUDIO_STATUSES = ("ok", "silent", "missing")
OFFICIAL_SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Column:
    kind: str  # "str", "int", "float", "bool", "floats" (list of float)
    nullable: bool
    doc: str


COLUMNS: dict[str, Column] = {
    "clip_id": Column("str", False, "unique within the dataset; letters, digits, '-', '_'"),
    "dataset": Column("str", False, "dataset name from params data.datasets"),
    "subject": Column("str", False, "speaker / actor / subject (folds and validation carving use it)"),
    "label": Column("int", False, "class index, -1 when unlabelled or regression"),
    "label_name": Column("str", True, "class name"),
    "targets": Column("floats", True, "regression targets (same length in every row), or null"),
    "test_fold": Column("int", False, "fold (1-based) in which the clip is a test clip, -1 none"),
    "official_split": Column("str", True, "train / val / test of a fixed official split, or null"),
    "video_path": Column("str", False, "source video"),
    "face_path": Column("str", True, "face clip (MJPEG .mkv) written by the faces stage"),
    "audio_path": Column("str", True, "16 kHz mono wav written by the audio stage"),
    "duration_s": Column("float", False, "span of the face clip in seconds (0 when none)"),
    "fps": Column("float", False, "mean frame rate of the face clip (0 when none)"),
    "num_frames": Column("int", False, "frames in the face clip"),
    "face_coverage": Column("float", False, "share of decoded frames with a detection-backed box"),
    "has_audio": Column("bool", False, "the source had an audio track"),
    "audio_status": Column("str", True, "ok / silent / missing (null when the audio stage did not run)"),
    "status": Column("str", False, "'ok' or the reason the clip is unusable"),
}


class ManifestError(ValueError):
    """A manifest that does not match the schema."""


def _is_missing(v: Any) -> bool:
    if v is None:
        return True
    try:
        return bool(pd.isna(v)) if np.ndim(v) == 0 else False
    except (TypeError, ValueError):
        return False


def _check_column(name: str, col: Column, s: pd.Series) -> list[str]:
    problems = []
    missing = s.map(_is_missing)
    if not col.nullable and missing.any():
        problems.append(f"{name}: {int(missing.sum())} null value(s) in a required column")
    values = s[~missing]
    if col.kind == "str":
        bad = values[~values.map(lambda v: isinstance(v, str))]
        if len(bad):
            problems.append(f"{name}: expected strings, got {type(bad.iloc[0]).__name__}")
    elif col.kind == "int":
        if not pd.api.types.is_integer_dtype(s.dtype):
            problems.append(f"{name}: expected an integer column, got dtype {s.dtype}")
    elif col.kind == "float":
        if not pd.api.types.is_float_dtype(s.dtype) and not pd.api.types.is_integer_dtype(s.dtype):
            problems.append(f"{name}: expected a float column, got dtype {s.dtype}")
    elif col.kind == "bool":
        if not pd.api.types.is_bool_dtype(s.dtype):
            problems.append(f"{name}: expected a boolean column, got dtype {s.dtype}")
    elif col.kind == "floats":
        lengths = set()
        for v in values:
            if not isinstance(v, list | tuple | np.ndarray) or not all(
                isinstance(x, int | float | np.floating | np.integer) for x in v
            ):
                problems.append(f"{name}: expected lists of floats, got {v!r}")
                break
            lengths.add(len(v))
        if len(lengths) > 1:
            problems.append(f"{name}: target lists of different lengths {sorted(lengths)}")
    return problems


def validate(df: pd.DataFrame) -> pd.DataFrame:
    """Check the manifest schema and invariants; return ``df`` unchanged or raise :class:`ManifestError`."""
    problems = []
    missing_cols = [c for c in COLUMNS if c not in df.columns]
    if missing_cols:
        problems.append(f"missing columns {missing_cols}")
    extra = [c for c in df.columns if c not in COLUMNS]
    if extra:
        problems.append(f"unknown columns {extra}")
    for name, col in COLUMNS.items():
        if name in df.columns:
            problems += _check_column(name, col, df[name])
    if not problems:
        dup = df["clip_id"][df["clip_id"].duplicated()].unique().tolist()
        if dup:
            problems.append(f"clip_id: duplicated ids {dup[:5]}")
        unsafe = [c for c in df["clip_id"] if not SAFE_ID.match(c)]
        if unsafe:
            problems.append(f"clip_id: unsafe ids {unsafe[:5]} (letters, digits, '-', '_' only)")
        if (df["label"] < -1).any():
            problems.append("label: values below -1")
        if (df["test_fold"] < -1).any() or (df["test_fold"] == 0).any():
            problems.append("test_fold: folds are 1-based (-1 for none)")
        split = df["official_split"].dropna()
        if not split.isin(OFFICIAL_SPLITS).all():
            problems.append(
                f"official_split: values outside {OFFICIAL_SPLITS}: {sorted(set(split) - set(OFFICIAL_SPLITS))}"
            )
        status = df["audio_status"].dropna()
        if not status.isin(AUDIO_STATUSES).all():
            problems.append(f"audio_status: values outside {AUDIO_STATUSES}")
        ok = df[df["status"] == "ok"]
        no_files = ok[ok["face_path"].map(_is_missing) | ok["audio_path"].map(_is_missing)]
        if len(no_files):
            problems.append(f"status: {len(no_files)} 'ok' row(s) without face_path/audio_path")
        if ((df["face_coverage"] < 0) | (df["face_coverage"] > 1)).any():
            problems.append("face_coverage: values outside [0, 1]")
    if problems:
        raise ManifestError("manifest does not match the schema:\n  - " + "\n  - ".join(problems))
    return df


def _float_or_zero(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return 0.0
    return f if math.isfinite(f) else 0.0


def build_manifest(
    dataset: str,
    clips: Sequence[RawClip],
    faces: Mapping[str, Mapping[str, Any]],
    audios: Mapping[str, Mapping[str, Any]],
    face_dir: Path,
    audio_dir: Path,
    rejected: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """One row per clip: labels and folds from the adapter, media facts from the stage sidecars.

    ``faces``/``audios`` map clip ids to the sidecar dicts written by the faces and audio stages;
    ``rejected`` maps clip ids to a reason found before any processing (e.g. a duplicate id). A clip
    is ``ok`` only when both stages produced its files.
    """
    rows = []
    for clip in clips:
        face = faces.get(clip.clip_id)
        aud = audios.get(clip.clip_id)
        status = (rejected or {}).get(clip.clip_id)
        if status is None:
            if face is None:
                status = "not processed by the faces stage"
            elif face.get("status") != "ok":
                status = str(face.get("status"))
            elif aud is None:
                status = "not processed by the audio stage"
            elif aud.get("status") != "ok":
                status = str(aud.get("status"))
            else:
                status = "ok"
        face_ok = face is not None and face.get("status") == "ok"
        audio_ok = aud is not None and aud.get("status") == "ok"
        rows.append(
            {
                "clip_id": clip.clip_id,
                "dataset": dataset,
                "subject": printable(str(clip.subject)),  # Parquet strings must be UTF-8 (a folder name)
                "label": int(clip.label) if clip.label is not None else -1,
                "label_name": clip.label_name,
                "targets": [float(x) for x in clip.targets] if clip.targets is not None else None,
                "test_fold": int(clip.test_fold) if clip.test_fold is not None else -1,
                "official_split": clip.official_split,
                "video_path": printable(str(clip.video_path)),
                "face_path": str(face_dir / face["face_file"]) if face_ok and face else None,
                "audio_path": str(audio_dir / aud["audio_file"]) if audio_ok and aud else None,
                "duration_s": _float_or_zero(face.get("duration_s")) if face else 0.0,
                "fps": _float_or_zero(face.get("fps")) if face else 0.0,
                "num_frames": int(face.get("frames_kept", 0)) if face else 0,
                "face_coverage": _float_or_zero(face.get("coverage")) if face else 0.0,
                "has_audio": bool(aud.get("has_audio", False)) if aud else False,
                "audio_status": aud.get("audio_status") if aud else None,
                "status": status,
            }
        )
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    df = df.astype({"label": "int64", "test_fold": "int64", "num_frames": "int64", "has_audio": "bool"})
    df = df.astype({"duration_s": "float64", "fps": "float64", "face_coverage": "float64"})
    return validate(df)


def write_manifest(df: pd.DataFrame, path: str | Path) -> None:
    """Validate and atomically write the manifest as Parquet."""
    validate(df)
    with atomic_path(path, suffix=".parquet") as tmp:
        df.to_parquet(tmp, index=False)


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read and validate a manifest; raises ``FileNotFoundError`` or :class:`ManifestError`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    try:
        df = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a non-Parquet file
        raise ManifestError(f"{path}: not a readable Parquet file: {e}") from None
    if "targets" in df.columns:
        df["targets"] = df["targets"].map(lambda v: None if _is_missing(v) else [float(x) for x in v])
    try:
        return validate(df)
    except ManifestError as e:
        raise ManifestError(f"{path}: {e}") from None
