"""Audio: 16 kHz mono extraction (PyAV), timestamp alignment to face clips, Kaldi fbank (spec section 2.2).

Extraction (:func:`load_audio`) decodes the first audio stream of the video itself or of a separate file
(``RawClip.audio_path``), resamples it with FFmpeg's swresample to 16 kHz and averages the channels
(``ffmpeg -ac 1`` instead sums stereo at -3 dB each, i.e. +3 dB for correlated channels; the mean cannot
clip). Sample 0 sits at the first audio frame's presentation time on the video's timeline (a separate
file starts at the video's first frame). :func:`align` then cuts the waveform so that sample 0 is the
face clip's first kept frame: from there on, time ``t`` of any frame is sample ``round(t * 16000)``, and
the audio of a frame window is cut by timestamps, never by relative position.

Features (:func:`log_mel`) are ``torchaudio.compliance.kaldi.fbank`` on the mean-removed waveform with
htk_compat, a Hanning window, 25 ms / 10 ms, 128 mel bins, dither 0 and no energy; a window
(:func:`fbank_window`) is zero-padded or cut to 256 frames (2.56 s) and normalized as
``(x + 4.2677393) / (2 * 4.5689974)``, padding included, as in the official loaders.

Where fbank is computed -- decided by measurement (``benchmarks/preprocess.py``, one core, 2.56 s
windows, 2-core shared machine):

=========================================  ============  ====================
per window                                 time          bytes per clip-second
=========================================  ============  ====================
kaldi fbank from the int16 waveform        1.3-3.1 ms    32,000 (int16 PCM)
slice of the stored full-clip fbank        0.05-0.13 ms  25,600 (float16)
=========================================  ============  ====================

So the shard writer stores the full-clip log-mel fbank as float16 (``data.shards.fbank_at_shard_time``,
default true) and the loader slices windows: 15-60x less CPU per view (two test views per clip) and
20 % smaller than the waveform. The loss is nil in practice: Kaldi removes each frame's DC offset, so a
stored frame equals a frame of the window's own fbank whenever the window starts on the 10 ms grid,
and windows are snapped to it (<= 5 ms shift); float16 adds < 5e-4 after normalization. The train-time
random gain ``g`` becomes ``+ 2 ln g`` on the log-mel values: exact, since the mel energies are linear
in power, except where Kaldi's energy floor clipped a value (the few narrow low mel bands that catch
almost no FFT bin: 0.07 % of the values of a test clip, off by at most ``2 ln g``). The waveform path
(``fbank_at_shard_time: false``) computes the same model input in the loader.
"""

from __future__ import annotations

import math
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av
import numpy as np
import torch
from torchaudio.compliance import kaldi

from avf.config.data import AudioConfig
from avf.data.video import MediaError, ffmpeg_reason, open_media

__all__ = [
    "AUDIO_MARGIN_S",
    "AudioStatus",
    "ClipAudio",
    "Waveform",
    "align",
    "audio_duration",
    "extract_clip_audio",
    "fbank_window",
    "load_audio",
    "log_mel",
    "num_fbank_frames",
    "read_wav",
    "rms_dbfs",
    "window_from_waveform",
    "write_wav",
]

AudioStatus = Literal["ok", "silent", "missing"]
# A clip's audio is extracted for its face span plus this margin: a window may end up to ``stride`` frames
# after the last face frame (the audio stage and ``avf predict`` both extract span + margin).
AUDIO_MARGIN_S = 0.5
LOG_FLOOR = math.log(torch.finfo(torch.float32).eps)  # Kaldi's energy floor in the log domain


@dataclass
class Waveform:
    """Mono float32 samples at ``rate`` Hz; sample 0 is at ``start_s`` on the video's timeline."""

    samples: np.ndarray
    rate: int
    start_s: float
    source_rate: int
    source_channels: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.rate


# Frames averaged to mono together: one mean per block instead of per frame is 40 % faster, and a block
# (64 frames: about 1.4 s of 48 kHz AAC) bounds the multichannel copy a long file would otherwise need.
MEAN_BLOCK_FRAMES = 64


def load_audio(path: str | Path, rate: int = 16000, start_s: float | None = None) -> Waveform | None:
    """Decode, resample to ``rate`` and average to mono the first audio stream of ``path``.

    Returns None when the file has no audio stream. ``start_s`` overrides the time of sample 0 (used
    for a separate audio file, whose own timeline starts at the video's first frame). Raises
    :class:`~avf.data.video.MediaError` when the file or a packet cannot be decoded.
    """
    with open_media(path) as c:
        if not c.streams.audio:
            return None
        stream = c.streams.audio[0]
        resampler = av.AudioResampler(format="fltp", rate=rate)  # keeps the layout: channels averaged below
        mono: list[np.ndarray] = []  # one channel mean per block of frames
        block: list[np.ndarray] = []  # [C, n] arrays of the current block, all with the same C
        first: float | None = None
        channels = 0

        def flush() -> None:
            if block:
                mono.append(np.concatenate(block, axis=1).mean(axis=0))
                block.clear()

        def add(frames: list[av.AudioFrame]) -> None:
            nonlocal channels
            for out in frames:
                arr = out.to_ndarray()
                if block and (arr.shape[0] != block[0].shape[0] or len(block) == MEAN_BLOCK_FRAMES):
                    flush()
                channels = max(channels, arr.shape[0])
                block.append(arr)

        try:
            for frame in c.decode(stream):
                if first is None and frame.time is not None:
                    first = float(frame.time)
                add(resampler.resample(frame))
            add(resampler.resample(None))
        except av.FFmpegError as e:
            raise MediaError(path, f"audio decode error: {ffmpeg_reason(e)}") from None
        except ValueError as e:  # PyAV's resampler refuses a frame whose layout or rate changed mid-stream
            raise MediaError(path, f"audio format changed mid-stream: {e}") from None
        flush()
        samples = np.concatenate(mono).astype(np.float32, copy=False) if mono else np.zeros(0, np.float32)
        return Waveform(
            samples=samples,
            rate=rate,
            start_s=float(start_s) if start_s is not None else (first or 0.0),
            source_rate=int(stream.rate or 0),
            source_channels=int(stream.channels or channels),
        )


def audio_duration(path: str | Path) -> float | None:
    """Seconds of the first audio stream of ``path`` (None without one), from the header where it has it.

    Raises :class:`~avf.data.video.MediaError` for an unreadable file.
    """
    with open_media(path) as c:
        if not c.streams.audio:
            return None
        stream = c.streams.audio[0]
        if stream.duration and stream.time_base:
            return float(stream.duration * stream.time_base)
    wave_ = load_audio(path)
    return wave_.duration_s if wave_ is not None else None


def align(wave_: Waveform, t0: float, duration_s: float | None = None) -> np.ndarray:
    """Samples re-based so that sample 0 is at time ``t0``: cut before, zero-padded if audio starts later.

    With ``duration_s`` the result is cut to that length (it is never padded at the end: windows past
    the end of the audio are zero-padded in the fbank domain, as the official loaders do).
    """
    offset = round((wave_.start_s - t0) * wave_.rate)
    x = wave_.samples
    x = np.concatenate([np.zeros(offset, np.float32), x]) if offset > 0 else x[-offset:]
    if duration_s is not None:
        x = x[: max(0, round(duration_s * wave_.rate))]
    return np.ascontiguousarray(x, dtype=np.float32)


def rms_dbfs(x: np.ndarray) -> float:
    """Root-mean-square level in dB relative to full scale (-inf for digital silence)."""
    if x.size == 0:
        return -math.inf
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    return 20 * math.log10(rms) if rms > 0 else -math.inf


@dataclass
class ClipAudio:
    """Audio of one face clip: ``samples`` start at the clip's first frame; ``status`` flags problems."""

    samples: np.ndarray
    status: AudioStatus
    has_audio: bool
    level_dbfs: float
    source_rate: int
    source_channels: int

    @property
    def reason(self) -> str | None:
        """Why the clip's audio is unusable (for ``missing_policy: drop``), or None."""
        if self.status == "missing":
            return "no audio track"
        if self.status == "silent":
            return f"silent audio: {self.level_dbfs:.1f} dBFS"
        return None


def extract_clip_audio(
    video_path: str | Path,
    audio_path: str | Path | None,
    t0: float,
    duration_s: float,
    cfg: AudioConfig,
    source_start: float = 0.0,
) -> ClipAudio:
    """Audio for a face clip spanning ``[t0, t0 + duration_s)`` on the video's timeline.

    ``audio_path`` (a separate file) wins over the video's own track; its sample 0 is taken to be the
    video's first frame (``source_start``). A clip without an audio stream gets ``duration_s`` of zeros
    and status ``missing``; one whose level is below ``cfg.silence_dbfs`` is ``silent``.
    """
    src = Path(audio_path) if audio_path is not None else Path(video_path)
    wave_ = load_audio(src, cfg.sample_rate, start_s=source_start if audio_path is not None else None)
    if wave_ is None or wave_.samples.size == 0:
        zeros = np.zeros(max(0, round(duration_s * cfg.sample_rate)), np.float32)
        return ClipAudio(zeros, "missing", False, -math.inf, 0, 0)
    samples = align(wave_, t0, duration_s)
    level = rms_dbfs(samples)
    status: AudioStatus = "silent" if level < cfg.silence_dbfs else "ok"
    return ClipAudio(samples, status, True, level, wave_.source_rate, wave_.source_channels)


def write_wav(path: str | Path, samples: np.ndarray, rate: int = 16000) -> None:
    """16-bit PCM mono wav (the official ``audio_16k`` format)."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def read_wav(path: str | Path, rate: int = 16000) -> np.ndarray:
    """Float32 samples in [-1, 1] of a 16-bit mono wav at ``rate`` (as written by :func:`write_wav`)."""
    try:
        with wave.open(str(path), "rb") as w:
            if w.getsampwidth() != 2 or w.getnchannels() != 1 or w.getframerate() != rate:
                raise MediaError(path, f"expected 16-bit mono {rate} Hz wav")
            data = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as e:
        raise MediaError(path, f"not a readable wav: {e}") from None
    return np.frombuffer(data, "<i2").astype(np.float32) / 32768.0


def log_mel(samples: np.ndarray, cfg: AudioConfig) -> np.ndarray:
    """Kaldi log-mel fbank ``float32 [frames, num_mel_bins]`` of a mono waveform (not normalized).

    Fewer samples than one 25 ms window give zero frames.
    """
    win = round(cfg.frame_length_ms * cfg.sample_rate / 1000)
    if len(samples) < win:
        return np.zeros((0, cfg.num_mel_bins), np.float32)
    x = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))[None]
    x = x - x.mean()
    fb = kaldi.fbank(
        x,
        htk_compat=True,
        sample_frequency=cfg.sample_rate,
        use_energy=False,
        window_type="hanning",
        num_mel_bins=cfg.num_mel_bins,
        dither=0.0,
        frame_length=cfg.frame_length_ms,
        frame_shift=cfg.frame_shift_ms,
    )
    return fb.numpy()


def num_fbank_frames(num_samples: int, cfg: AudioConfig) -> int:
    """Frames Kaldi (snip_edges) makes from ``num_samples`` samples."""
    win = round(cfg.frame_length_ms * cfg.sample_rate / 1000)
    hop = round(cfg.frame_shift_ms * cfg.sample_rate / 1000)
    return 0 if num_samples < win else 1 + (num_samples - win) // hop


def _finish(rows: torch.Tensor, cfg: AudioConfig, gain: float | None) -> torch.Tensor:
    """Gain (log domain), zero-pad/cut to ``target_frames``, normalize: ``[1, target_frames, mel]``."""
    rows = rows[: cfg.target_frames].to(torch.float32)
    if gain is not None and rows.numel():
        # empty mel bands sit on Kaldi's energy floor, where a gain changes nothing
        floored = rows <= LOG_FLOOR + 1e-2
        rows = torch.where(floored, LOG_FLOOR, torch.clamp(rows + 2.0 * math.log(gain), min=LOG_FLOOR))
    out = torch.zeros(cfg.target_frames, cfg.num_mel_bins)
    out[: rows.shape[0]] = rows
    return ((out - cfg.norm_mean) / (2.0 * cfg.norm_std))[None]


def fbank_window(
    full: np.ndarray | torch.Tensor, start_s: float, end_s: float, cfg: AudioConfig, gain: float | None = None
) -> torch.Tensor:
    """The model input ``f32 [1, target_frames, mel]`` for audio span ``[start_s, end_s)`` of a clip.

    ``full`` is the clip's whole log-mel fbank (:func:`log_mel`, frame k starting at sample k * hop).
    The span starts at frame ``round(start_s / shift)`` and has as many frames as Kaldi would make
    from the span's own samples; frames beyond the clip's audio are zero-padded. ``gain`` multiplies
    the waveform amplitude (applied as ``+ 2 ln gain`` before normalization).
    """
    full_t = torch.as_tensor(full)
    shift_s = cfg.frame_shift_ms / 1000.0
    n_samples = round((end_s - start_s) * cfg.sample_rate)
    n = min(num_fbank_frames(n_samples, cfg), cfg.target_frames)
    k0 = max(0, round(start_s / shift_s))
    return _finish(full_t[k0 : k0 + n], cfg, gain)


def window_from_waveform(
    samples: np.ndarray, start_s: float, end_s: float, cfg: AudioConfig, gain: float | None = None
) -> torch.Tensor:
    """Same as :func:`fbank_window` but computing the fbank of the span's samples (official way)."""
    s0 = max(0, round(start_s * cfg.sample_rate))
    s1 = max(s0, round(end_s * cfg.sample_rate))
    return _finish(torch.from_numpy(log_mel(samples[s0:s1], cfg)), cfg, gain)
