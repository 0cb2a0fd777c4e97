"""Video decoding and face-clip files with PyAV (FFmpeg bundled in the wheel; no decord, no torchcodec).

- :func:`probe` and :func:`iter_frames` open any container FFmpeg knows. Frames carry their real
  timestamps (``pts * time_base`` in seconds: variable frame rate is kept as is) and honour the
  display-matrix rotation of phone videos (``VideoFrame.rotation``, counter-clockwise degrees).
- A decoded frame stays in its native planar YUV layout (:class:`FrameImage`): cropping a face
  (:meth:`FrameImage.warp`) resamples only the output pixels straight from the Y/U/V planes, with the
  rotation folded into the affine map, and the detector gets a downscaled RGB copy
  (:meth:`FrameImage.rgb` with ``max_side``). No full-resolution RGB frame is ever built, which is
  why face cropping costs less than a plain ``to_ndarray("rgb24")`` decode of every frame.
- A face clip is a Matroska file of JPEG frames (MJPEG, 1 ms timestamps): playable by any player,
  every frame a keyframe, and :func:`read_jpeg_clip` returns the JPEG bytes without decoding, so the
  shard writer copies them untouched (see ``avf.data.shards`` for why shards hold JPEGs).

Every failure is a :class:`MediaError` whose message names the file and the reason.
"""

from __future__ import annotations

import fractions
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import simplejpeg

__all__ = [
    "FrameImage",
    "MediaError",
    "VideoFrame",
    "VideoInfo",
    "decode_jpeg",
    "encode_jpeg",
    "ffmpeg_reason",
    "image_files",
    "iter_frames",
    "iter_image_folder",
    "jpeg_size",
    "open_media",
    "probe",
    "read_jpeg_clip",
    "read_video",
    "write_jpeg_clip",
]

# (chroma subsampling x, y, full range) of the planar YUV layouts cropped without an RGB conversion.
_PLANAR_YUV = {
    "yuv420p": (2, 2, False),
    "yuvj420p": (2, 2, True),
    "yuv422p": (2, 1, False),
    "yuvj422p": (2, 1, True),
    "yuv444p": (1, 1, False),
    "yuvj444p": (1, 1, True),
}
TRUNCATED_SHARE = 0.9  # fewer decodable frames than this share of the container's count: truncated file
_AVCOL_SPC_BT709 = 1
_AVCOL_RANGE_JPEG = 2


class MediaError(Exception):
    """A media file that cannot be used; ``str(err)`` is ``"<file>: <reason>"``."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def ffmpeg_reason(err: Exception) -> str:
    """A short human reason for an FFmpeg error, with a hint for the common truncated/corrupt cases."""
    text = getattr(err, "strerror", None) or str(err)
    hint = ""
    if isinstance(err, av.error.EOFError):
        hint = " (truncated file?)"
    elif isinstance(err, av.error.InvalidDataError):
        hint = " (corrupt, truncated or not a media file)"
    return f"{text}{hint}"


def open_media(path: str | Path) -> av.container.InputContainer:
    """Open a media file for reading, turning every failure into a :class:`MediaError`."""
    path = Path(path)
    if not path.exists():
        raise MediaError(path, "file not found")
    if path.is_dir():
        raise MediaError(path, "is a directory, not a media file")
    if path.stat().st_size == 0:
        raise MediaError(path, "empty file (0 bytes)")
    try:
        return av.open(str(path), metadata_errors="ignore")
    except av.FFmpegError as e:
        raise MediaError(path, f"cannot open: {ffmpeg_reason(e)}") from None
    except (OSError, ValueError) as e:
        raise MediaError(path, f"cannot open: {e}") from None


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video (``width``/``height`` are as displayed, after rotation)."""

    path: str
    container: str
    codec: str
    width: int
    height: int
    rotation: int  # display rotation, counter-clockwise degrees (0, 90, 180, 270)
    fps: float  # average frame rate (0 when unknown)
    num_frames: int  # frame count from the container (0 when unknown)
    duration_s: float
    has_audio: bool
    audio_rate: int
    audio_channels: int


def _norm_rotation(degrees: float) -> int:
    return round(degrees / 90.0) % 4 * 90


def probe(path: str | Path) -> VideoInfo:
    """Read the container header and the first frame (for the rotation); raises :class:`MediaError`."""
    with open_media(path) as c:
        if not c.streams.video:
            raise MediaError(path, f"no video stream (container {c.format.name!r})")
        vs = c.streams.video[0]
        rotation = 0
        try:
            for frame in c.decode(vs):
                rotation = _norm_rotation(frame.rotation)
                break
        except av.FFmpegError as e:
            raise MediaError(path, f"decode error: {ffmpeg_reason(e)}") from None
        width, height = vs.codec_context.width, vs.codec_context.height
        if rotation in (90, 270):
            width, height = height, width
        duration = float(c.duration / av.time_base) if c.duration else 0.0
        if vs.duration and vs.time_base:
            duration = float(vs.duration * vs.time_base)
        audio = c.streams.audio[0] if c.streams.audio else None
        return VideoInfo(
            path=str(path),
            container=c.format.name,
            codec=vs.codec_context.name,
            width=width,
            height=height,
            rotation=rotation,
            fps=float(vs.average_rate) if vs.average_rate else 0.0,
            num_frames=int(vs.frames or 0),
            duration_s=duration,
            has_audio=audio is not None,
            audio_rate=int(audio.rate or 0) if audio is not None else 0,
            audio_channels=int(audio.channels or 0) if audio is not None else 0,
        )


@cache
def _yuv_to_rgb_matrix(bt709: bool, full_range: bool, bgr: bool = False) -> np.ndarray:
    """3x4 matrix (for ``cv2.transform``) mapping 8-bit (Y, U, V, 1) to RGB (or BGR)."""
    kr, kb = (0.2126, 0.0722) if bt709 else (0.299, 0.114)
    kg = 1.0 - kr - kb
    ys, cs, y0 = (1.0, 1.0, 0.0) if full_range else (255.0 / 219.0, 255.0 / 224.0, 16.0)
    rv = 2 * (1 - kr) * cs
    bu = 2 * (1 - kb) * cs
    gu = -bu * kb / kg
    gv = -rv * kr / kg
    m = np.array(
        [[ys, 0.0, rv], [ys, gu, gv], [ys, bu, 0.0]],
        dtype=np.float64,
    )
    offset = -(m @ np.array([y0, 128.0, 128.0]))
    out = np.hstack([m, offset[:, None]]).astype(np.float32)
    return np.ascontiguousarray(out[::-1]) if bgr else out


_EYE3 = np.eye(3)
_EYE3.setflags(write=False)


def _display_to_stored(rotation: int, stored_w: int, stored_h: int) -> np.ndarray:
    """3x3 map from display pixel coordinates to stored pixel coordinates (pixel centres at integers)."""
    if rotation == 0:
        return _EYE3
    if rotation == 90:  # display = np.rot90(stored, 1)
        return np.array([[0, -1, stored_w - 1], [1, 0, 0], [0, 0, 1]], dtype=np.float64)
    if rotation == 180:
        return np.array([[-1, 0, stored_w - 1], [0, -1, stored_h - 1], [0, 0, 1]], dtype=np.float64)
    if rotation == 270:
        return np.array([[0, 1, 0], [-1, 0, stored_h - 1], [0, 0, 1]], dtype=np.float64)
    return _EYE3


class FrameImage:
    """One decoded picture in its native layout, with its display rotation.

    ``size`` is (width, height) as displayed. :meth:`warp` samples a square crop through an affine map
    given in display coordinates; :meth:`rgb` returns the whole displayed frame, optionally downscaled.
    """

    def __init__(self, frame: av.VideoFrame | np.ndarray, rotation: int = 0) -> None:
        self.rotation = rotation
        if isinstance(frame, np.ndarray):  # an RGB image (frame folders)
            self.stored_h, self.stored_w = frame.shape[:2]
            self._planes = None
            self._rgb = np.ascontiguousarray(frame)
            return
        self.stored_w, self.stored_h = frame.width, frame.height
        self._planes: list[np.ndarray] | None = None
        self._rgb: np.ndarray | None = None
        layout = _PLANAR_YUV.get(frame.format.name)
        if layout is not None:
            self._sub_x, self._sub_y, full = layout
            full = full or frame.color_range == _AVCOL_RANGE_JPEG
            self._matrix = _yuv_to_rgb_matrix(frame.colorspace == _AVCOL_SPC_BT709, full, False)
            self._matrix_bgr = _yuv_to_rgb_matrix(frame.colorspace == _AVCOL_SPC_BT709, full, True)
            planes = []
            for i, plane in enumerate(frame.planes[:3]):
                w = plane.width if i == 0 else -(-frame.width // self._sub_x)
                h = plane.height if i == 0 else -(-frame.height // self._sub_y)
                arr = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:h, :w]
                planes.append(arr)
            self._planes = planes
            self._frame = frame  # keeps the plane buffers alive
        else:
            self._rgb = frame.to_ndarray(format="rgb24")

    @property
    def size(self) -> tuple[int, int]:
        if self.rotation in (90, 270):
            return self.stored_h, self.stored_w
        return self.stored_w, self.stored_h

    def _to_rgb(self, yuv: np.ndarray, bgr: bool = False) -> np.ndarray:
        return cv2.transform(yuv, self._matrix_bgr if bgr else self._matrix)

    def warp(self, out_to_display: np.ndarray, size: int, bgr: bool = False) -> np.ndarray:
        """RGB ``(size, size, 3)`` uint8: output pixel (u, v) samples display point ``A @ (u, v, 1)``.

        ``out_to_display`` is a 2x3 affine map; samples outside the frame are black (bilinear).
        ``bgr`` returns OpenCV's channel order instead (for JPEG encoding without a conversion).
        """
        a = np.vstack([np.asarray(out_to_display, dtype=np.float64), [0, 0, 1]])
        m = _display_to_stored(self.rotation, self.stored_w, self.stored_h) @ a
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        if self._planes is None:
            assert self._rgb is not None
            out = cv2.warpAffine(self._rgb, m[:2], (size, size), flags=flags, borderValue=(0, 0, 0))
            return out[:, :, ::-1].copy() if bgr else out
        y = cv2.warpAffine(self._planes[0], m[:2], (size, size), flags=flags, borderValue=16)
        # chroma sample (i, j) sits at luma ((i + 0.5) * sub - 0.5): map luma coordinates to chroma ones.
        to_chroma = np.array(
            [[1 / self._sub_x, 0, 0.5 / self._sub_x - 0.5], [0, 1 / self._sub_y, 0.5 / self._sub_y - 0.5], [0, 0, 1]]
        )
        mc = (to_chroma @ m)[:2]
        u = cv2.warpAffine(self._planes[1], mc, (size, size), flags=flags, borderValue=128)
        v = cv2.warpAffine(self._planes[2], mc, (size, size), flags=flags, borderValue=128)
        return self._to_rgb(cv2.merge([y, u, v]), bgr)

    def rgb(self, max_side: int | None = None) -> np.ndarray:
        """The displayed frame as RGB ``(H, W, 3)`` uint8, downscaled (area) so its longest side <= max_side."""
        sw, sh = self.stored_w, self.stored_h
        scale = 1.0
        if max_side is not None and max(sw, sh) > max_side:
            scale = max_side / max(sw, sh)
        tw, th = max(1, round(sw * scale)), max(1, round(sh * scale))
        if self._planes is None:
            assert self._rgb is not None
            img = self._rgb if scale == 1.0 else cv2.resize(self._rgb, (tw, th), interpolation=cv2.INTER_AREA)
        else:
            interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
            y = self._planes[0] if scale == 1.0 else cv2.resize(self._planes[0], (tw, th), interpolation=interp)
            u = cv2.resize(self._planes[1], (tw, th), interpolation=cv2.INTER_LINEAR)
            v = cv2.resize(self._planes[2], (tw, th), interpolation=cv2.INTER_LINEAR)
            img = self._to_rgb(cv2.merge([np.ascontiguousarray(y), u, v]))
        if self.rotation:
            img = np.rot90(img, k=self.rotation // 90)
        return np.ascontiguousarray(img)


@dataclass
class VideoFrame:
    """A decoded frame: its index in decode order, its presentation time (seconds) and its image."""

    index: int
    time: float
    image: FrameImage


def iter_frames(
    path: str | Path, *, threads: int = 1, start: float | None = None, end: float | None = None
) -> Iterator[VideoFrame]:
    """Decode the first video stream of ``path`` frame by frame.

    Timestamps are the frames' own ``pts`` in seconds; a missing or non-increasing pts (some AVI and
    FLV files) is replaced by the previous time plus one nominal frame duration. ``start``/``end``
    (seconds) keep only frames with ``start <= t < end`` (the decoder seeks to the keyframe before
    ``start``); ``index`` counts the frames yielded. ``threads`` is the decoder's thread count (1:
    parallelism comes from worker processes; 0: FFmpeg's choice). Raises :class:`MediaError` when the
    file cannot be opened, has no video stream, a packet cannot be decoded, or (full decodes) fewer
    than 90 % of the frames the container lists come out (a truncated download).
    """
    with open_media(path) as c:
        if not c.streams.video:
            raise MediaError(path, f"no video stream (container {c.format.name!r})")
        vs = c.streams.video[0]
        if threads != 1:
            vs.thread_type = "AUTO"
        vs.codec_context.thread_count = threads
        nominal = 1.0 / float(vs.average_rate) if vs.average_rate else 0.04
        prev = -math.inf
        index = decoded = 0
        try:
            if start is not None and start > 0 and vs.time_base:
                c.seek(max(0, int((start - 1.0) / vs.time_base)), stream=vs, backward=True)
            for frame in c.decode(vs):
                decoded += 1
                t = frame.time
                if t is None or not math.isfinite(t) or t <= prev:
                    t = prev + nominal if math.isfinite(prev) else 0.0
                prev = t
                if start is not None and t < start - 1e-6:
                    continue
                if end is not None and t >= end - 1e-6:
                    return
                yield VideoFrame(index, float(t), FrameImage(frame, _norm_rotation(frame.rotation)))
                index += 1
        except av.FFmpegError as e:
            raise MediaError(path, f"decode error after {decoded} frames: {ffmpeg_reason(e)}") from None
        declared = int(vs.frames or 0)
        if start is None and declared > 0 and decoded < TRUNCATED_SHARE * declared:
            raise MediaError(path, f"truncated or corrupt: only {decoded} of {declared} frames decodable")


IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def _natural_key(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def image_files(folder: str | Path) -> list[Path]:
    """The images of a frame folder in frame order (sorted naturally: 2.jpg before 10.jpg)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MediaError(folder, "frame folder not found")
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS), key=lambda p: _natural_key(p.name))
    if not files:
        raise MediaError(folder, f"no images ({', '.join(IMAGE_EXTS)}) in the frame folder")
    return files


def iter_image_folder(
    folder: str | Path, fps: float = 25.0, start: float | None = None, end: float | None = None
) -> Iterator[VideoFrame]:
    """Frames of a folder of images (see :func:`image_files`), frame i at ``i / fps`` s."""
    files = image_files(folder)
    index = 0
    for i, p in enumerate(files):
        t = i / fps
        if start is not None and t < start - 1e-6:
            continue
        if end is not None and t >= end - 1e-6:
            break
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise MediaError(p, "unreadable image in the frame folder")
        yield VideoFrame(index, t, FrameImage(cv2.cvtColor(img, cv2.COLOR_BGR2RGB)))
        index += 1


def read_video(path: str | Path, max_side: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All frames as displayed: ``(frames uint8 [N, H, W, 3], times float64 [N] seconds)``."""
    frames, times = [], []
    for f in iter_frames(path):
        frames.append(f.image.rgb(max_side))
        times.append(f.time)
    if not frames:
        raise MediaError(path, "no decodable video frames")
    return np.stack(frames), np.asarray(times)


def encode_jpeg(rgb: np.ndarray, quality: int = 90, bgr: bool = False) -> bytes:
    """JPEG bytes of an RGB (or, with ``bgr``, BGR) uint8 image (libjpeg-turbo via OpenCV)."""
    img = rgb if bgr else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV only fails on impossible inputs
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def decode_jpeg(data: bytes, out: np.ndarray | None = None) -> np.ndarray:
    """RGB ``uint8 [H, W, 3]`` from JPEG bytes, decoded straight into ``out`` when given (a writable, contiguous
    uint8 array of that shape); raises ``ValueError`` on corrupt data, including damage libjpeg only warns of.

    simplejpeg, not OpenCV: the same libjpeg-turbo decoder and pixels (OpenCV alone applies EXIF orientation,
    which face crops do not carry), and it can write into a given buffer (figures in docs/performance.md).
    """
    if out is not None:
        if out.dtype != np.uint8 or not out.flags.c_contiguous or not out.flags.writeable:
            raise TypeError(f"out must be a writable, contiguous uint8 array, not {out.dtype} with {out.flags}")
        height, width = jpeg_size(data)
        if out.shape != (height, width, 3):
            raise ValueError(f"a {width}x{height} px image, not {out.shape[1]}x{out.shape[0]}")
    return simplejpeg.decode_jpeg(data, colorspace="RGB", buffer=out)


def jpeg_size(data: bytes) -> tuple[int, int]:
    """``(height, width)`` from a JPEG's header, without decoding it; raises ``ValueError`` when unreadable."""
    try:
        height, width, _, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError as e:
        raise ValueError(f"not a readable JPEG header: {e}") from None
    return int(height), int(width)


def write_jpeg_clip(path: str | Path, jpegs: Sequence[bytes], times: Sequence[float], size: int) -> None:
    """Write JPEG frames with their timestamps (seconds) as a Matroska MJPEG clip (1 ms resolution).

    The file is bit-exact (no random segment id or date): equal frames give equal bytes.
    """
    if len(jpegs) != len(times) or not jpegs:
        raise ValueError(f"need as many timestamps as frames (>0), got {len(jpegs)} frames, {len(times)} times")
    t0 = float(times[0])
    with av.open(str(path), "w", format="matroska", options={"fflags": "+bitexact"}) as c:  # reproducible bytes
        s = c.add_stream("mjpeg", rate=25)
        s.width = s.height = size
        s.pix_fmt = "yuvj420p"
        s.time_base = fractions.Fraction(1, 1000)
        last = -1
        for data, t in zip(jpegs, times, strict=True):
            pts = max(round((float(t) - t0) * 1000), last + 1)
            last = pts
            packet = av.Packet(data)
            packet.stream = s
            packet.pts = packet.dts = pts
            packet.time_base = s.time_base
            packet.is_keyframe = True
            c.mux(packet)


def read_jpeg_clip(path: str | Path) -> tuple[list[bytes], np.ndarray]:
    """The JPEG frames of a clip written by :func:`write_jpeg_clip` (not decoded) and their times.

    Times are relative to the first frame (seconds, 1 ms resolution); callers that need the exact
    source timestamps keep them next to the clip (the faces stage's JSON sidecar).
    """
    jpegs: list[bytes] = []
    times: list[float] = []
    with open_media(path) as c:
        if not c.streams.video or c.streams.video[0].codec_context.name != "mjpeg":
            raise MediaError(path, "not an MJPEG face clip")
        vs = c.streams.video[0]
        try:
            for packet in c.demux(vs):
                if packet.size == 0 or packet.pts is None:
                    continue
                jpegs.append(bytes(packet))
                times.append(float(packet.pts * packet.time_base))
        except av.FFmpegError as e:
            raise MediaError(path, f"cannot read face clip: {ffmpeg_reason(e)}") from None
    if not jpegs:
        raise MediaError(path, "face clip has no frames")
    return jpegs, np.asarray(times) - times[0]
