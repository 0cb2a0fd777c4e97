"""The clip index of one dataset: a Parquet table with an explicit schema check.

One row per clip the adapter listed (failed clips included, with ``status`` saying why), built by the
manifest stage (:func:`avf.data.stages.manifest.build_manifest`) from the adapter's scan and the per-clip
sidecars of the faces and audio stages. :func:`validate` checks columns, dtypes, nullability and a few
invariants (unique ids, usable rows have their files) and raises :class:`ManifestError` listing every problem.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from avf.utils.io import atomic_path

__all__ = [
    "COLUMNS",
    "LabelSpace",
    "ManifestError",
    "label_space",
    "read_manifest",
    "validate",
    "with_label_space",
    "write_manifest",
]

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


LABEL_SPACE_KEY = "avf.label_space"


@dataclass(frozen=True)
class LabelSpace:
    """What a manifest's labels mean, from the dataset's adapter: stored with the manifest (Parquet metadata)
    so that training and evaluation read the label space of the data they see, without the adapters."""

    task: str  # classification | regression | none
    classes: tuple[str, ...] = ()  # class names in label-index order
    targets: tuple[str, ...] = ()  # regression target names in ``targets`` order

    @property
    def num_outputs(self) -> int:
        """Classes, or regression targets: the size of a head for this dataset."""
        return len(self.targets) if self.task == "regression" else len(self.classes)


def with_label_space(df: pd.DataFrame, space: LabelSpace) -> pd.DataFrame:
    """``df`` carrying ``space`` (written into the Parquet file by :func:`write_manifest`)."""
    df.attrs[LABEL_SPACE_KEY] = {"task": space.task, "classes": list(space.classes), "targets": list(space.targets)}
    return df


def label_space(df: pd.DataFrame, where: str | Path) -> LabelSpace:
    """The label space a manifest was written with; raises :class:`ManifestError` naming ``where`` if absent."""
    raw = df.attrs.get(LABEL_SPACE_KEY)
    if not isinstance(raw, dict) or "task" not in raw:
        raise ManifestError(
            f"{where}: the manifest records no label space (written by an older avf): re-run its manifest stage"
        )
    return LabelSpace(str(raw["task"]), tuple(raw.get("classes", ())), tuple(raw.get("targets", ())))


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
