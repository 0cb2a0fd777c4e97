"""Per-time views of a video's prediction (shared by the timeline picture and the rendered video)."""

from __future__ import annotations

import itertools

import numpy as np

from avf.config.data import AudioConfig
from avf.predict.predictor import VideoPrediction
from avf.predict.prepare import PreparedVideo

__all__ = ["audio_status_at", "face_at", "scores_at"]


def scores_at(pred: VideoPrediction, times: np.ndarray) -> np.ndarray:
    """``f32 [len(times), K]``: mean scores of the predicted windows covering each time (NaN: none).

    ``times`` are seconds from the first frame; the last window includes its end.
    """
    k = next((len(w.scores) for w in pred.windows if w.scores is not None), 0)
    total = np.zeros((len(times), k), np.float64)
    count = np.zeros(len(times), np.int64)
    for w in pred.windows:
        if w.scores is None:
            continue
        inside = (times >= w.start_s - 1e-6) & (times <= w.end_s + 1e-6)
        total[inside] += w.scores
        count[inside] += 1
    with np.errstate(invalid="ignore"):
        out = total / count[:, None]
    out[count == 0] = np.nan
    return out.astype(np.float32)


def face_at(prep: PreparedVideo, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index into the face track or -1, detected) for each time (seconds from the first frame).

    A time maps to the face frame with the same timestamp (within half a frame); ``detected`` says its
    keyframe had a face (otherwise the box is the tracker's bridge over a gap).
    """
    ft = prep.face.times - prep.t0
    idx = np.full(len(times), -1, np.int64)
    detected = np.zeros(len(times), bool)
    if not len(ft):
        return idx, detected
    j = np.clip(np.searchsorted(ft, times), 1, len(ft) - 1) if len(ft) > 1 else np.zeros(len(times), np.int64)
    if len(ft) > 1:
        j = np.where(np.abs(ft[j - 1] - times) <= np.abs(ft[j] - times), j - 1, j)
    close = np.abs(ft[j] - times) <= prep.frame_step / 2 + 1e-6
    idx[close] = j[close]
    detected[close] = prep.face.covered[j[close]]
    return idx, detected


def audio_status_at(prep: PreparedVideo, edges: np.ndarray, cfg: AudioConfig) -> list[str]:
    """Audio status (ok | silent | missing) of each interval between ``edges`` (seconds from the first frame)."""
    from avf.data.audio import align, rms_dbfs

    if not prep.has_audio:
        return ["missing"] * (len(edges) - 1)
    assert prep.wave is not None
    out = []
    for a, b in itertools.pairwise(edges):
        x = align(prep.wave, prep.t0 + float(a), float(b - a))
        out.append("missing" if x.size == 0 else "silent" if rms_dbfs(x) < cfg.silence_dbfs else "ok")
    return out
