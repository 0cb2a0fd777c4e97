"""The manifest stage: the dataset's Parquet clip index, built from the adapter's scan and the per-clip
sidecars of the faces and audio stages (schema, validation and I/O: ``avf.data.manifest``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from avf.config.data import DatasetSpec
from avf.data.adapters import RawClip
from avf.data.manifest import COLUMNS, validate, with_label_space, write_manifest
from avf.data.report import StageReport, printable
from avf.data.stages.common import read_sidecar
from avf.data.stages.scan import report_scan, scan_dataset

__all__ = ["build_manifest", "run_manifest"]


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


def run_manifest(
    spec: DatasetSpec, faces_dir: Path, audio_dir: Path, out_path: Path, report: StageReport
) -> pd.DataFrame:
    """Build, validate and write the dataset's manifest; every unusable clip is a failure line."""
    scan = scan_dataset(spec)
    report_scan(scan, report)
    faces: dict[str, dict[str, Any]] = {}
    audios: dict[str, dict[str, Any]] = {}
    for clip in scan.clips:
        if (f := read_sidecar(faces_dir / f"{clip.clip_id}.json")) is not None:
            faces[clip.clip_id] = f
        if (a := read_sidecar(audio_dir / f"{clip.clip_id}.json")) is not None:
            audios[clip.clip_id] = a
    df = build_manifest(spec.name, scan.clips, faces, audios, faces_dir, audio_dir, scan.rejected)
    write_manifest(with_label_space(df, scan.labels), out_path)
    for row in df.itertuples():
        if row.status == "ok":
            report.processed += 1
            if row.audio_status != "ok":
                report.flags[f"audio {row.audio_status}"] += 1
        elif row.clip_id not in scan.rejected:  # duplicates are already listed with every file
            report.fail(row.video_path, row.clip_id, str(row.status))
    report.extra["rows"] = len(df)
    return df
