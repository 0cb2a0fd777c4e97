"""Real, small media files for tests, written with PyAV (no binaries in git, no network).

Typical use::

    from tests.support import media

    clip = media.write_clip(tmp_path / "a.mp4")                       # 2 s, 25 fps, moving face, 440 Hz
    tones = media.write_clip(tmp_path / "t.mp4", tones=(300, 1200, 3000), tone_every=0.5)
    silent = media.write_clip(tmp_path / "n.mp4", audio=False)          # no audio stream at all
    phone = media.write_clip(tmp_path / "p.mp4", size=(144, 256), rotation=90)  # portrait phone video
    vfr = media.write_clip(tmp_path / "v.mkv", vfr=True)                  # variable frame rate
    lofi = media.write_clip(tmp_path / "s.mp4", sample_rate=8000, channels=2)
    media.write_wav(tmp_path / "a.wav", media.tone_schedule((440,), 1.0, 16000), 16000)

Faces come from real photos shipped by packages (``skimage.data.astronaut()`` and matplotlib's
``grace_hopper.jpg``), so the MediaPipe detector finds them; ``face=None`` draws textured noise with no
face. The extension picks the container and codecs: ``.mp4``/``.mov``/``.mkv`` (H.264 + AAC), ``.flv``
(H.264 + AAC), ``.avi`` (MPEG-4 part 2 + PCM). Sizes are (width, height) as *displayed*.
"""

from __future__ import annotations

import fractions
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import av
import cv2
import numpy as np

FACES = ("astronaut", "grace_hopper")
_CODECS = {
    ".mp4": ("libx264", "aac"),
    ".mov": ("libx264", "aac"),
    ".mkv": ("libx264", "aac"),
    ".flv": ("libx264", "aac"),
    ".avi": ("mpeg4", "pcm_s16le"),
}


@cache
def face_image(name: str = "astronaut") -> np.ndarray:
    """A real face photo, RGB uint8: ``astronaut`` (512x512) or ``grace_hopper`` (600x512)."""
    if name == "astronaut":
        from skimage.data import astronaut

        return np.ascontiguousarray(astronaut())
    if name == "grace_hopper":
        import matplotlib.cbook
        from PIL import Image

        path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
        return np.asarray(Image.open(path).convert("RGB"))
    raise ValueError(f"unknown face {name!r}; choose from {FACES}")


def face_frames(
    n: int,
    size: tuple[int, int] = (256, 256),
    face: str | None = "astronaut",
    motion: float = 6.0,
    seed: int = 0,
) -> list[np.ndarray]:
    """``n`` RGB frames (H, W, 3) of a face photo drifting sinusoidally by up to ``motion`` pixels.

    The photo is scaled to the frame height and centred horizontally; ``face=None`` gives a moving
    colour gradient with rectangles (no face in it).
    """
    w, h = size
    if face is None:  # a colour gradient with a few rectangles: no face-like blobs
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[0 : h + 32, 0 : w + 32]
        base = np.stack([xx * 255 // (w + 32), yy * 255 // (h + 32), np.full_like(xx, 90)], -1).astype(np.uint8)
        for _ in range(4):
            x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
            color = tuple(int(c) for c in rng.integers(0, 255, 3))
            cv2.rectangle(base, (x0, y0), (x0 + w // 5, y0 + h // 7), color, -1)
    else:
        img = face_image(face)
        scale = h / img.shape[0]
        img = cv2.resize(img, (max(1, round(img.shape[1] * scale)), h), interpolation=cv2.INTER_AREA)
        base = np.zeros((h + 32, w + 32, 3), np.uint8)
        x0 = (w + 32 - img.shape[1]) // 2
        src_x0 = max(0, -x0)
        dst_x0 = max(0, x0)
        width = min(img.shape[1] - src_x0, w + 32 - dst_x0)
        base[16 : 16 + h, dst_x0 : dst_x0 + width] = img[:, src_x0 : src_x0 + width]
    frames = []
    for i in range(n):
        dx = 16 + round(motion * np.sin(2 * np.pi * i / 40))
        dy = 16 + round(motion / 2 * np.cos(2 * np.pi * i / 55))
        frames.append(np.ascontiguousarray(base[dy : dy + h, dx : dx + w]))
    return frames


def tone_schedule(
    freqs: Sequence[float],
    seconds: float,
    sample_rate: int,
    every: float = 0.5,
    channels: int = 1,
    amplitude: float = 0.3,
) -> np.ndarray:
    """A float32 waveform (channels, samples): ``freqs[k]`` plays during [k*every, (k+1)*every), cycling.

    A frequency of 0 is silence. Every channel carries the same signal.
    """
    n = round(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    seg = np.minimum((t // every).astype(int), 10**9) % len(freqs)
    f = np.asarray(freqs, dtype=np.float64)[seg]
    phase = 2 * np.pi * np.cumsum(f) / sample_rate  # continuous phase across frequency changes
    wave = (amplitude * np.sin(phase) * (f > 0)).astype(np.float32)
    return np.repeat(wave[None], channels, axis=0)


def vfr_times(n: int, fps: float = 25.0) -> np.ndarray:
    """Variable-frame-rate timestamps: the first half at ``fps``, the second half at ``fps / 2``."""
    half = n // 2
    first = np.arange(half) / fps
    second = first[-1] + (np.arange(1, n - half + 1) * 2 / fps) if half else np.arange(n) * 2 / fps
    return np.concatenate([first, second])


def write_video(
    path: str | Path,
    frames: Sequence[np.ndarray],
    *,
    fps: float = 25.0,
    times: Sequence[float] | None = None,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    rotation: int = 0,
    faststart: bool = False,
) -> Path:
    """Write RGB ``frames`` (and optional float ``audio`` (channels, samples)) to ``path``.

    ``times`` gives each frame's timestamp in seconds (variable frame rate); by default frames are at
    ``i / fps``. ``rotation`` (0, 90, 180, 270, counter-clockwise) stores the frames rotated and sets
    the display matrix, like a phone does: decoders that honour it show ``frames`` as given.
    ``faststart`` (mp4/mov) puts the index before the media data, as streaming sites do, so a
    truncated copy still opens and fails while decoding.
    """
    path = Path(path)
    vcodec, acodec = _CODECS.get(path.suffix.lower(), ("libx264", "aac"))
    k = (rotation // 90) % 4
    stored = [np.ascontiguousarray(np.rot90(f, k=-k)) for f in frames]
    height, width = stored[0].shape[:2]
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        vs = container.add_stream(vcodec, rate=round(fps))
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        tb = fractions.Fraction(1, 1000) if times is not None else fractions.Fraction(1, round(fps))
        vs.codec_context.time_base = tb
        if vcodec == "libx264":
            vs.options = {"crf": "20", "preset": "veryfast"}
        if rotation:
            vs.set_display_rotation(rotation)
        ast = None
        if audio is not None:
            layout = "mono" if audio.shape[0] == 1 else "stereo"
            ast = container.add_stream(acodec, rate=sample_rate, layout=layout)
        for i, img in enumerate(stored):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = round(times[i] * 1000) if times is not None else i
            frame.time_base = tb
            for packet in vs.encode(frame):
                container.mux(packet)
        for packet in vs.encode():
            container.mux(packet)
        if ast is not None and audio is not None:
            _write_audio(container, ast, audio, sample_rate)
    return path


def _write_audio(
    container: av.container.OutputContainer, stream: av.AudioStream, audio: np.ndarray, sample_rate: int
) -> None:
    fmt = "s16" if stream.codec_context.name.startswith("pcm_s16") else "fltp"
    layout = "mono" if audio.shape[0] == 1 else "stereo"
    chunk = stream.codec_context.frame_size or 1024
    for start in range(0, audio.shape[1], chunk):
        block = audio[:, start : start + chunk]
        if fmt == "s16":
            data = (np.clip(block, -1, 1) * 32767).astype(np.int16).T.reshape(1, -1)
        else:
            data = np.ascontiguousarray(block, dtype=np.float32)
        frame = av.AudioFrame.from_ndarray(data, format=fmt, layout=layout)
        frame.sample_rate = sample_rate
        frame.pts = start
        frame.time_base = fractions.Fraction(1, sample_rate)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def write_clip(
    path: str | Path,
    *,
    seconds: float = 2.0,
    fps: float = 25.0,
    size: tuple[int, int] = (256, 256),
    face: str | None = "astronaut",
    tones: Sequence[float] = (440.0,),
    tone_every: float = 0.5,
    sample_rate: int = 16000,
    channels: int = 1,
    audio: bool = True,
    rotation: int = 0,
    vfr: bool = False,
    amplitude: float = 0.3,
    faststart: bool = False,
) -> Path:
    """A talking-face-like clip: moving face photo plus a tone schedule (see :func:`tone_schedule`).

    ``vfr`` makes the second half of the frames twice as long (so ``seconds`` covers fewer frames).
    """
    n = max(1, round(seconds * fps))
    times = None
    if vfr:
        times = vfr_times(n, fps)
        n = int(np.searchsorted(times, seconds, side="left"))
        times = times[:n]
    frames = face_frames(n, size, face)
    wave = tone_schedule(tones, seconds, sample_rate, tone_every, channels, amplitude) if audio else None
    return write_video(
        path, frames, fps=fps, times=times, audio=wave, sample_rate=sample_rate, rotation=rotation, faststart=faststart
    )


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int) -> Path:
    """A 16-bit PCM wav of float ``audio`` (channels, samples)."""
    import wave

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").T.copy()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(audio.shape[0])
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
    return path


def write_no_frames(path: str | Path) -> Path:
    """A video file with a video stream but zero frames (an AVI container, whatever the name says)."""
    path = Path(path)
    with av.open(str(path), "w", format="avi") as container:
        vs = container.add_stream("mpeg4", rate=25)
        vs.width, vs.height, vs.pix_fmt = 64, 64, "yuv420p"
        container.start_encoding()
    return path


def truncate(path: str | Path, keep: float = 0.5) -> Path:
    """Cut the file to the first ``keep`` share of its bytes (an interrupted download)."""
    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def random_bytes(path: str | Path, n: int = 8192, seed: int = 0) -> Path:
    """A file of random bytes (e.g. named ``.mp4``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes())
    return path
