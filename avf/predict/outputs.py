"""Prediction records and files: per-window and whole-video JSON Lines and CSV, DataFrames, Arrow.

Records (one dict per window / per video) are the single source of every output format, so the
CLI files, the MLflow pyfunc's DataFrame and the Ray job's Parquet carry the same numbers.
Classification records hold ``probabilities`` ``{class: p}`` (summing to 1), regression ones
``values`` ``{target: v}``; flat tables spell them ``prob_<class>`` / ``pred_<target>``. Times are
seconds from the video's first frame.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np

from avf.predict.predictor import VideoPrediction, WindowPrediction
from avf.predict.source import ModelSpec

__all__ = [
    "PredictionWriter",
    "arrow_table",
    "flat",
    "video_frame",
    "video_ids",
    "video_record",
    "window_records",
]

DIGITS = 6


def _scores(spec: ModelSpec, scores: np.ndarray | None) -> dict[str, Any]:
    key = "values" if spec.task == "regression" else "probabilities"
    if scores is None:
        return {"label": None, "confidence": None, key: None}
    values = {name: round(float(v), DIGITS) for name, v in zip(spec.outputs, scores, strict=True)}
    if spec.task == "regression":
        return {"label": None, "confidence": None, key: values}
    best = int(np.argmax(scores))
    return {"label": spec.outputs[best], "confidence": round(float(scores[best]), DIGITS), key: values}


def video_ids(paths: Sequence[str | Path]) -> list[str]:
    """Output file stems: the file stem, plus a short path hash where two inputs share a stem."""
    stems = [Path(p).stem or "video" for p in paths]
    seen: dict[str, int] = {}
    for s in stems:
        seen[s] = seen.get(s, 0) + 1
    out = []
    for stem, path in zip(stems, paths, strict=True):
        out.append(stem if seen[stem] == 1 else f"{stem}-{hashlib.sha1(str(path).encode()).hexdigest()[:6]}")
    return out


def window_record(pred: VideoPrediction, win: WindowPrediction, spec: ModelSpec, video_id: str) -> dict[str, Any]:
    return {
        "video": pred.path,
        "video_id": video_id,
        "window": win.index,
        "start_s": round(win.start_s, 4),
        "end_s": round(win.end_s, 4),
        "frames": win.frames,
        "face": win.face,
        "face_share": round(win.face_share, 4),
        "audio": win.audio,
        "predicted": win.predicted,
        "reason": "; ".join(win.reasons) or None,
        **_scores(spec, win.scores),
    }


def window_records(pred: VideoPrediction, spec: ModelSpec, video_id: str) -> list[dict[str, Any]]:
    return [window_record(pred, w, spec, video_id) for w in pred.windows]


def video_record(pred: VideoPrediction, spec: ModelSpec, video_id: str) -> dict[str, Any]:
    wins = pred.windows
    return {
        "video": pred.path,
        "video_id": video_id,
        "ok": pred.ok,
        "error": pred.error,
        **_scores(spec, pred.scores),
        "duration_s": round(pred.duration_s, 4),
        "fps": round(pred.fps, 3),
        "frames": pred.frames,
        "width": pred.width,
        "height": pred.height,
        "has_audio": pred.has_audio,
        "num_windows": len(wins),
        "windows_predicted": sum(w.predicted for w in wins),
        "windows_no_face": sum(not w.face for w in wins),
        "windows_no_audio": sum(w.audio != "ok" for w in wins),
        "warnings": "; ".join(pred.warnings) or None,
        "seconds": round(pred.seconds, 3),
        "model": spec.source,
    }


def flat(record: dict[str, Any], spec: ModelSpec) -> dict[str, Any]:
    """A record with its ``probabilities`` / ``values`` spread into ``prob_<class>`` / ``pred_<target>``."""
    key, prefix = ("values", "pred_") if spec.task == "regression" else ("probabilities", "prob_")
    out = {k: v for k, v in record.items() if k != key}
    scores = record.get(key) or {}
    for name in spec.outputs:
        out[f"{prefix}{name}"] = scores.get(name)
    return out


def video_frame(preds: Iterable[VideoPrediction], spec: ModelSpec, ids: Sequence[str] | None = None) -> Any:
    """Whole-video predictions as a pandas DataFrame (flat columns; one row per video)."""
    import pandas as pd

    preds = list(preds)
    ids = list(ids) if ids is not None else video_ids([p.path for p in preds])
    rows = [flat(video_record(p, spec, i), spec) for p, i in zip(preds, ids, strict=True)]
    return pd.DataFrame(rows, columns=_columns(spec, video=True))


def _columns(spec: ModelSpec, video: bool) -> list[str]:
    dummy = VideoPrediction(path="")
    prefix = "pred_" if spec.task == "regression" else "prob_"
    base = video_record(dummy, spec, "") if video else window_record(dummy, _EMPTY_WINDOW, spec, "")
    names = [k for k in base if k not in ("probabilities", "values")]
    return names + [f"{prefix}{n}" for n in spec.outputs]


_EMPTY_WINDOW = WindowPrediction(0, 0.0, 0.0, 0, 0.0, False, "ok", [], None)
_BOOL_COLS = frozenset({"ok", "has_audio", "face", "predicted"})
_INT_COLS = frozenset(
    {"frames", "width", "height", "num_windows", "window"}
    | {f"windows_{k}" for k in ("predicted", "no_face", "no_audio")}
)
_STR_COLS = frozenset({"video", "video_id", "error", "label", "warnings", "model", "audio", "reason"})


class PredictionWriter:
    """Streams ``windows.jsonl``/``windows.csv`` and ``videos.jsonl``/``videos.csv`` into ``out_dir``."""

    def __init__(self, out_dir: str | Path, spec: ModelSpec) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.spec = spec
        self._files: list[IO[str]] = []
        self._jsonl = {k: self._open(f"{k}.jsonl") for k in ("windows", "videos")}
        self._csv = {
            k: csv.DictWriter(self._open(f"{k}.csv"), fieldnames=_columns(spec, video=k == "videos"))
            for k in ("windows", "videos")
        }
        for w in self._csv.values():
            w.writeheader()
        self.videos = 0
        self.failed = 0

    def _open(self, name: str) -> IO[str]:
        f = (self.out_dir / name).open("w", newline="", encoding="utf-8")
        self._files.append(f)
        return f

    def write(self, pred: VideoPrediction, video_id: str) -> dict[str, Any]:
        """Append one video's window rows and summary row; returns the summary record."""
        for rec in window_records(pred, self.spec, video_id):
            self._row("windows", rec)
        rec = video_record(pred, self.spec, video_id)
        self._row("videos", rec)
        self.videos += 1
        self.failed += not pred.ok
        for f in self._files:
            f.flush()
        return rec

    def _row(self, kind: str, rec: dict[str, Any]) -> None:
        self._jsonl[kind].write(json.dumps(rec, ensure_ascii=False) + "\n")
        self._csv[kind].writerow(flat(rec, self.spec))

    def close(self) -> None:
        for f in self._files:
            f.close()

    def __enter__(self) -> PredictionWriter:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def arrow_table(preds: Sequence[VideoPrediction], spec: ModelSpec, ids: Sequence[str]) -> Any:
    """One row per video (flat columns) with its windows as a nested ``list<struct>`` column ``windows``.

    The schema is fixed by the model's outputs (no type inference), so blocks of a Ray job always agree.
    """
    import pyarrow as pa

    def typ(col: str) -> pa.DataType:
        if col in _BOOL_COLS:
            return pa.bool_()
        if col in _INT_COLS:
            return pa.int64()
        if col in _STR_COLS:
            return pa.string()
        return pa.float64()

    wcols = [c for c in _columns(spec, video=False) if c not in ("video", "video_id")]
    window_type = pa.struct([(c, typ(c)) for c in wcols])
    vcols = _columns(spec, video=True)
    schema = pa.schema([*((c, typ(c)) for c in vcols), ("windows", pa.list_(window_type))])
    rows = []
    for pred, vid in zip(preds, ids, strict=True):
        row = flat(video_record(pred, spec, vid), spec)
        row["windows"] = [{c: flat(w, spec)[c] for c in wcols} for w in window_records(pred, spec, vid)]
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=schema)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSON Lines file written by :class:`PredictionWriter`."""
    return [json.loads(line) for line in io.StringIO(Path(path).read_text()) if line.strip()]
