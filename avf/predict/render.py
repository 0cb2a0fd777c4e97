"""``--render``: the video with the tracked face box and the current prediction drawn on every frame.

Frames are decoded again at full resolution (as displayed, rotation applied), annotated with OpenCV
and encoded as H.264 (PyAV, ``yuv420p``, each frame at its source timestamp); the source's audio is
re-encoded as AAC and muxed back, aligned to the first frame. The box is green where the face was
detected and orange where the tracker bridges a gap; the banner shows the label of the predicted
windows covering that moment (averaged where they overlap), or why there is none.
"""

from __future__ import annotations

import fractions
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np

from avf.data.face import crop_matrix
from avf.data.video import MediaError, VideoFrame, iter_frames
from avf.predict.predictor import VideoPrediction
from avf.predict.prepare import PreparedVideo
from avf.predict.source import ModelSpec
from avf.predict.timeline import face_at, scores_at

__all__ = ["render_video"]

GREEN, ORANGE, WHITE, GREY = (76, 175, 80), (255, 152, 0), (255, 255, 255), (158, 158, 158)
AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)


def _box(prep: PreparedVideo, state: np.ndarray, margin: float) -> np.ndarray:
    """``int32 [4, 2]`` corners of the crop square of a face state (cx, cy, side, roll)."""
    cx, cy, side, angle = state
    size = 100
    a = crop_matrix((cx, cy), side * (1 + 2 * margin), angle, size)
    corners = np.array([[0, 0], [size - 1, 0], [size - 1, size - 1], [0, size - 1]], np.float64)
    return np.round(corners @ a[:, :2].T + a[:, 2]).astype(np.int32)


def _label(scores: np.ndarray, spec: ModelSpec) -> str:
    if spec.task == "regression":
        return "  ".join(f"{n} {v:+.2f}" for n, v in zip(spec.outputs, scores, strict=True))
    best = int(np.argmax(scores))
    return f"{spec.outputs[best]} {scores[best]:.0%}"


def _draw(img: np.ndarray, box: np.ndarray | None, detected: bool, text: str, has_pred: bool) -> None:
    h = img.shape[0]
    scale = max(0.4, h / 720)
    thick = max(1, round(2 * scale))
    if box is not None:
        cv2.polylines(img, [box.reshape(-1, 1, 2)], True, GREEN if detected else ORANGE, thick, cv2.LINE_AA)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    pad = round(6 * scale)
    band = img[: th + base + 2 * pad, : tw + 2 * pad]
    band[:] = (band * 0.35).astype(np.uint8)  # darkened banner behind the text
    color = WHITE if has_pred else GREY
    cv2.putText(img, text, (pad, pad + th), cv2.FONT_HERSHEY_SIMPLEX, scale, color, thick, cv2.LINE_AA)


def _audio(path: str, t0: float) -> tuple[np.ndarray, int, str] | None:
    """The source's first audio track as ``f32 [C, N]`` (C <= 2) starting at video time ``t0``, rate, layout."""
    with av.open(path) as c:
        if not c.streams.audio:
            return None
        stream = c.streams.audio[0]
        rate = int(stream.rate or 48000)
        rate = rate if rate in AAC_RATES else 48000
        layout = "mono" if (stream.channels or 1) == 1 else "stereo"
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        chunks, first = [], None
        for frame in c.decode(stream):
            if first is None and frame.time is not None:
                first = float(frame.time)
            chunks += [f.to_ndarray() for f in resampler.resample(frame)]
        chunks += [f.to_ndarray() for f in resampler.resample(None)]
    if not chunks:
        return None
    x = np.concatenate(chunks, axis=1).astype(np.float32)
    offset = round(((first or 0.0) - t0) * rate)
    x = np.pad(x, ((0, 0), (offset, 0))) if offset > 0 else x[:, -offset:]
    return np.ascontiguousarray(x), rate, layout


def render_video(pred: VideoPrediction, spec: ModelSpec, path: str | Path, crf: int = 23) -> Path:
    """Write the annotated MP4 of a prediction made with ``keep_prepared=True``; returns ``path``."""
    prep = pred.prepared
    if prep is None:
        raise ValueError("render_video needs the prepared video (predict with keep_prepared=True)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rel = prep.frame_times - prep.t0
    scores = scores_at(pred, rel)
    face_idx, detected = face_at(prep, rel)
    tb = fractions.Fraction(1, 1000)
    with av.open(str(path), "w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=max(1, round(prep.fps)))
        vs.time_base = tb
        vs.codec_context.time_base = tb
        vs.pix_fmt = "yuv420p"
        vs.options = {"crf": str(crf), "preset": "veryfast"}
        audio = _audio(prep.path, prep.t0) if prep.has_audio else None
        ast = out.add_stream("aac", rate=audio[1], layout=audio[2]) if audio is not None else None
        last_pts = -1
        for i, frame in _frames(prep):
            img = np.ascontiguousarray(frame.image.rgb())
            if i == 0:
                vs.width, vs.height = img.shape[1] // 2 * 2, img.shape[0] // 2 * 2
            img = img[: vs.height, : vs.width]
            j = face_idx[i]
            box = _box(prep, prep.face.states[j], spec.face.margin) if j >= 0 else None
            has_pred = not np.isnan(scores[i]).any() if scores.size else False
            text = _label(scores[i], spec) if has_pred else "no prediction"
            if not detected[i]:
                text += " | no face here"
            _draw(img, box, bool(detected[i]), text, has_pred and bool(detected[i]))
            vf = av.VideoFrame.from_ndarray(img, format="rgb24")
            last_pts = max(round(rel[i] * 1000), last_pts + 1)
            vf.pts, vf.time_base = last_pts, tb
            for packet in vs.encode(vf):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
        if ast is not None and audio is not None:
            _encode_audio(out, ast, audio[0], audio[1], audio[2])
    return path


def _frames(prep: PreparedVideo) -> Iterator[tuple[int, VideoFrame]]:
    """The frames prediction used (a truncated file's decode error after them is ignored, as there)."""
    n = len(prep.frame_times)
    try:
        for i, frame in enumerate(iter_frames(prep.path)):
            if i >= n:
                return
            yield i, frame
    except MediaError:
        if n == 0:
            raise


def _encode_audio(
    out: av.container.OutputContainer, ast: av.AudioStream, x: np.ndarray, rate: int, layout: str
) -> None:
    """AAC-encode ``x f32 [C, N]`` (sample 0 = the first video frame) into ``ast``."""
    chunk = ast.codec_context.frame_size or 1024
    for start in range(0, x.shape[1], chunk):
        block = np.ascontiguousarray(x[:, start : start + chunk])
        frame = av.AudioFrame.from_ndarray(block, format="fltp", layout=layout)
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = fractions.Fraction(1, rate)
        for packet in ast.encode(frame):
            out.mux(packet)
    for packet in ast.encode():
        out.mux(packet)
