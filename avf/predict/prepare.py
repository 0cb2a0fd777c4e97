"""Raw video -> model inputs per window, with exactly the training preprocessing.

:func:`prepare_video` decodes a video once: every frame's timestamp, the face track and crops of
``avf.data.face.crop_clip`` (the faces stage's function and settings; only its clip-rejection
thresholds are off, since prediction flags windows instead of dropping videos) and the whole audio
track at 16 kHz (``avf.data.audio.load_audio``).

:func:`window_input` then treats each window as if it were a training clip cut from the video and
runs the data stages' steps on it: the faces stage's rounded timestamps and span, the audio stage's
alignment (sample 0 = the window's first face frame, ``span + 0.5 s`` long, 16-bit WAV rounding,
silence when the video has no audio: the ``missing_policy: fill`` rule), the shards stage's float16
log-mel fbank, then the loader's test views (``view_indices``, ``window_span``, ``fbank_window``,
``ClipTransform.eval`` on the decoded JPEG crops). A window whose frames are mostly without a face
gets no tensors and a reason instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from avf.config.data import AudioConfig, ClipConfig, FaceConfig
from avf.data.audio import AUDIO_MARGIN_S, Waveform, align, fbank_window, load_audio, log_mel, rms_dbfs
from avf.data.face import FaceClip, FaceDetector, LandmarkModel, crop_clip
from avf.data.loader import view_indices, window_span
from avf.data.transforms import ClipTransform, to_model_input
from avf.data.video import MediaError, VideoFrame, decode_jpeg, iter_frames

__all__ = ["PreparedVideo", "WindowInput", "plan_windows", "prepare_video", "window_input"]

_EPS = 1e-6


@dataclass
class PreparedVideo:
    """One decoded video: frame times, face track and crops, audio (all on the container's timeline)."""

    path: str
    frame_times: np.ndarray  # float64 [F]: every decoded frame's timestamp (s)
    face: FaceClip  # kept face frames: times [N], jpegs, states [N, 4] (cx, cy, side, roll), covered [N]
    wave: Waveform | None  # 16 kHz mono audio track; None: the video has no (decodable) audio
    warnings: list[str] = field(default_factory=list)

    @property
    def t0(self) -> float:
        return float(self.frame_times[0])

    @property
    def frame_step(self) -> float:
        return float(np.median(np.diff(self.frame_times))) if len(self.frame_times) > 1 else 0.04

    @property
    def duration_s(self) -> float:
        """First frame to the end of the last one (seconds)."""
        return float(self.frame_times[-1] - self.frame_times[0]) + self.frame_step

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_step if self.frame_step > 0 else 0.0

    @property
    def has_audio(self) -> bool:
        return self.wave is not None and self.wave.samples.size > 0


def prepare_video(
    path: str | Path,
    face_cfg: FaceConfig,
    audio_cfg: AudioConfig,
    detector: FaceDetector,
    landmarks: LandmarkModel | None,
) -> PreparedVideo:
    """Decode ``path`` once (see the module docstring); raises ``MediaError`` when no frame decodes.

    A decode error after some frames (a truncated file) keeps what was decoded and adds a warning;
    an undecodable audio track counts as missing audio, with a warning.
    """
    times: list[float] = []
    warnings: list[str] = []

    def frames() -> Iterator[VideoFrame]:
        try:
            for frame in iter_frames(path):
                times.append(frame.time)
                yield frame
        except MediaError as e:
            if not times:
                raise
            warnings.append(f"video: {e.reason} (kept the {len(times)} frames decoded)")

    cfg = face_cfg.model_copy(update={"min_coverage": 0.0, "min_frames": 1})
    face = crop_clip(path, cfg, detector, landmarks, frames=frames())
    wave = None
    try:
        wave = load_audio(path, audio_cfg.sample_rate)
    except MediaError as e:
        warnings.append(f"audio: {e.reason} (treated as missing)")
    return PreparedVideo(str(path), np.asarray(times, dtype=np.float64), face, wave, warnings)


def plan_windows(duration_s: float, window_s: float, stride_s: float) -> list[tuple[float, float]]:
    """``(start, end)`` seconds of windows every ``stride_s`` over ``[0, duration_s]``, the last one ending there.

    A video shorter than one window is a single window; consecutive windows overlap or touch, so
    together they cover the whole video.
    """
    if duration_s <= window_s + _EPS:
        return [(0.0, float(duration_s))]
    starts = [k * stride_s for k in range(math.floor((duration_s - window_s) / stride_s + _EPS) + 1)]
    last = duration_s - window_s
    if last - starts[-1] > _EPS:
        starts.append(last)
    ends = [round(s + window_s, 9) for s in starts[:-1]] + [float(duration_s)]
    return [(round(s, 9), e) for s, e in zip(starts, ends, strict=True)]


@dataclass
class WindowInput:
    """One window's model input (``video [V, 3, T, S, S]``, ``audio [V, 1, F, M]``) or why there is none."""

    index: int
    start_s: float  # relative to the first frame
    end_s: float
    frames: int  # decoded frames in the window
    face_frames: np.ndarray  # int64 [n]: indices into ``PreparedVideo.face`` of its face frames
    face_share: float  # share of its frames whose keyframe had a face
    audio_status: str  # ok | silent | missing
    video: torch.Tensor | None = None
    audio: torch.Tensor | None = None
    reasons: list[str] = field(default_factory=list)

    @property
    def has_face(self) -> bool:
        return self.video is not None


def _training_times(times: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(t0, audio duration, relative frame times) as the faces/audio/shards stages record them."""
    rounded = [round(float(t), 6) for t in times]  # the faces stage's sidecar
    span = float(times[-1] - times[0]) + float(np.median(np.diff(times))) if len(times) > 1 else 0.04
    duration = round(span, 6) + AUDIO_MARGIN_S  # the audio stage's extraction length
    rel = np.asarray([round(float(t), 6) for t in np.asarray(rounded) - rounded[0]], dtype=np.float64)
    return rounded[0], duration, rel


def _pcm16(x: np.ndarray) -> np.ndarray:
    """The 16-bit WAV round trip of the audio stage (``write_wav`` then ``read_wav``)."""
    return (np.clip(x, -1.0, 1.0) * 32767.0).round().astype("<i2").astype(np.float32) / 32768.0


def _window_audio(prep: PreparedVideo, t0: float, duration: float, cfg: AudioConfig) -> tuple[np.ndarray, str]:
    if prep.has_audio:
        assert prep.wave is not None
        samples = align(prep.wave, t0, duration)
        status = "silent" if rms_dbfs(samples) < cfg.silence_dbfs else "ok"
    else:
        samples = np.zeros(round(duration * cfg.sample_rate), np.float32)
        status = "missing"
    return _pcm16(samples), status


def window_input(
    prep: PreparedVideo,
    index: int,
    span: tuple[float, float],
    clip: ClipConfig,
    audio: AudioConfig,
    views: int,
    min_face_share: float,
    transform: ClipTransform,
) -> WindowInput:
    """The model input of window ``span`` (seconds from the first frame) of ``prep``."""
    start, end = span
    lo, hi = prep.t0 + start - _EPS, prep.t0 + end - _EPS
    frames = int(np.count_nonzero((prep.frame_times >= lo) & (prep.frame_times < hi)))
    face_times = prep.face.times
    idx = np.flatnonzero((face_times >= lo) & (face_times < hi)) if len(face_times) else np.zeros(0, np.int64)
    covered = int(np.count_nonzero(prep.face.covered[idx])) if len(idx) else 0
    share = covered / frames if frames else 0.0
    win = WindowInput(index, start, end, frames, idx, share, "ok")
    if not len(idx) or share < min_face_share or covered == 0:
        win.reasons.append(f"no face: found in {covered} of {frames} frames")
        _, win.audio_status = _window_audio(prep, prep.t0 + start, end - start, audio)
        _audio_reason(win, audio)
        return win
    t0, duration, rel = _training_times(face_times[idx])
    samples, win.audio_status = _window_audio(prep, t0, duration, audio)
    fbank = log_mel(samples, audio).astype(np.float16)  # the shards stage stores the clip's fbank as float16
    jpegs = [prep.face.jpegs[i] for i in idx]
    cache: dict[int, np.ndarray] = {}
    videos, audios = [], []
    for v in view_indices(len(idx), clip.num_frames, clip.sampling_rate, views):
        for i in v.tolist():
            if i not in cache:
                cache[i] = decode_jpeg(jpegs[i])
        videos.append(transform.eval(np.stack([cache[i] for i in v.tolist()])))
        audios.append(fbank_window(fbank, *window_span(rel, v, clip.sampling_rate), audio))
    win.video, win.audio = to_model_input(torch.stack(videos)), torch.stack(audios)
    _audio_reason(win, audio)
    return win


def _audio_reason(win: WindowInput, cfg: AudioConfig) -> None:
    if win.audio_status == "missing":
        win.reasons.append("no audio: filled with silence")
    elif win.audio_status == "silent":
        win.reasons.append(f"silent audio: below {cfg.silence_dbfs:g} dBFS")
