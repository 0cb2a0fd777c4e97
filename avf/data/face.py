"""Face detection, tracking and cropping: one video in, one square face clip (JPEG frames) out.

Pipeline of :func:`crop_clip` (parameters in ``data.face``, :class:`avf.config.data.FaceConfig`):

1. Decode every frame (``avf.data.video``); on every ``detect_every``-th frame (a *keyframe*) run the
   :class:`FaceDetector` on a copy downscaled to ``max_side`` or, once a face is known and
   ``track_roi`` is set, first on a square region 3x the face around the last box (the face then fills
   more of the detector's 128-px input), falling back to the whole frame. With several faces, the one
   overlapping the previous box most (else the highest score) is followed. MediaPipe's task looks at the
   whole frames; the square regions go to its model directly (:mod:`avf.data.blazeface`: the task's
   detections in less time per call, figures in ``docs/performance.md``).
2. With ``align``, a landmark model (468-point face mesh) refines the eye positions and the crop is
   rotated so the eyes are level (a similarity alignment); otherwise the crop is axis-aligned.
3. The track state (centre x, centre y, box side, roll) of each keyframe is smoothed with a zero-phase
   exponential kernel ``smoothing**|k - k'|`` over neighbouring keyframes with a face (no lag, truncated
   at 4 keyframes, so only ~6 * detect_every frames are buffered), then linearly interpolated to the
   frames in between; keyframes without a face are bridged (interpolated between the surrounding faces
   when the next one is at most 4 keyframes ahead, else the last face is held; at the ends the nearest
   face is held).
4. Each frame is cropped to a square of side ``box * (1 + 2 * margin)`` and resized to ``size`` in one
   bilinear warp from the decoded YUV planes, then JPEG-encoded.

A frame is *covered* when its nearest keyframe had a detection; ``coverage`` is the covered share of
all decoded frames. Leading and trailing uncovered frames are dropped (``frames_kept``); a clip with
no face at all, or with ``coverage < min_coverage``, or with fewer than ``min_frames`` frames, is
rejected with that reason (never silently kept or dropped).

Only this module and :mod:`avf.data.blazeface` import mediapipe and ai_edge_litert. Tests plug any
object with a ``detect(rgb) -> list[Detection]`` method.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from avf.config.data import FaceConfig
from avf.data.blazeface import INPUT as BLAZEFACE_INPUT
from avf.data.blazeface import BlazeFaceLite
from avf.data.video import FrameImage, MediaError, VideoFrame, encode_jpeg, iter_frames

__all__ = [
    "Detection",
    "FaceClip",
    "FaceDetector",
    "LandmarkModel",
    "MediaPipeDetector",
    "crop_clip",
    "crop_matrix",
    "get_detector",
    "get_landmark_model",
]

SMOOTH_RADIUS_MAX = 4  # keyframes on each side that the smoothing kernel reaches
LOOKAHEAD = 4  # keyframes decoded ahead of a frame before it is cropped (smoothing and gap bridging)
ROI_SCALE = 3.0  # the tracking search region is this many face sides wide
ROI_SIZE = 256  # ... resampled to this many pixels for the detector


@dataclass(frozen=True)
class Detection:
    """One face: ``box`` = (x0, y0, x1, y1) pixels, detector ``score``, ``keypoints`` (K, 2) pixels.

    MediaPipe's six keypoints are: right eye, left eye (the subject's), nose tip, mouth, right ear, left ear.
    """

    box: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))

    @property
    def center(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2

    @property
    def side(self) -> float:
        return max(self.box[2] - self.box[0], self.box[3] - self.box[1])


class FaceDetector(Protocol):
    """Anything that finds faces in an RGB uint8 image (H, W, 3)."""

    def detect(self, rgb: np.ndarray) -> list[Detection]: ...


class MediaPipeDetector:
    """MediaPipe Tasks BlazeFace (short range) on the CPU; the model file comes from ``data.face``."""

    def __init__(self, model_path: str | Path, min_score: float = 0.5) -> None:
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision

        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"face detector model not found: {path} (run `make setup`)")
        self._mp = mp
        options = vision.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_path=str(path)),
            running_mode=vision.RunningMode.IMAGE,
            min_detection_confidence=min_score,
        )
        self._detector: Any = vision.FaceDetector.create_from_options(options)
        self._model = BlazeFaceLite(path, min_score)
        self.min_score = min_score

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        if self._detector is None:
            raise RuntimeError("MediaPipeDetector is closed")
        h, w = rgb.shape[:2]
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        result = self._detector.detect(image)
        out = []
        for d in result.detections:
            bb = d.bounding_box
            score = float(d.categories[0].score) if d.categories else 0.0
            kps = np.array([[k.x * w, k.y * h] for k in d.keypoints or []], dtype=np.float64).reshape(-1, 2)
            x0, y0 = float(bb.origin_x), float(bb.origin_y)
            box = (x0, y0, x0 + float(bb.width), y0 + float(bb.height))
            out.append(Detection(box, score, kps))
        return sorted(out, key=lambda d: -d.score)

    def detect_square(self, image: FrameImage, a: np.ndarray, size: int) -> list[Detection]:
        """:meth:`detect` of ``image.warp(a, size)``, in its pixels. A ``size`` of 128 * k px, which the task
        samples at every k-th pixel, skips the task: those pixels go to the model directly."""
        if self._detector is None:
            raise RuntimeError("MediaPipeDetector is closed")
        if size % BLAZEFACE_INPUT:
            return self.detect(image.warp(a, size))
        every = size // BLAZEFACE_INPUT
        sampled = np.hstack([a[:, :2] * every, a[:, 2:]])  # output pixel (u, v) samples (k u, k v) of a
        out = [
            Detection((float(x), float(y), float(x + w), float(y + h)), score, kps)
            for (x, y, w, h), score, kps in self._model.detect(image.warp(sampled, BLAZEFACE_INPUT), size)
        ]
        return sorted(out, key=lambda d: -d.score)

    def close(self) -> None:
        detector, self._detector = self._detector, None
        if detector is not None:
            # at interpreter exit mediapipe's own executor may already be gone
            with contextlib.suppress(RuntimeError):
                detector.close()


class LandmarkModel:
    """MediaPipe's 468-point face mesh (``face_landmark.tflite``) run with ai_edge_litert.

    Recipe from the environment notes: a square region 1.5x the detector box, rolled by the eye line,
    resampled to 192x192 RGB in [0, 1]; output ``conv2d_21`` holds 468 (x, y, z) in region pixels.
    """

    INPUT = 192
    RIGHT_EYE = (33, 133)  # the subject's right eye corners (image left)
    LEFT_EYE = (362, 263)

    def __init__(self, model_path: str | Path) -> None:
        from ai_edge_litert.interpreter import Interpreter

        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"face landmark model not found: {path} (run `make setup`)")
        self._interp = Interpreter(model_path=str(path), num_threads=1)
        self._interp.allocate_tensors()
        self._input = self._interp.get_input_details()[0]["index"]
        outputs = {o["name"]: o["index"] for o in self._interp.get_output_details()}
        self._points = outputs["conv2d_21"]

    def landmarks(self, image: FrameImage, center: tuple[float, float], side: float, angle: float) -> np.ndarray:
        """(468, 2) display-pixel landmarks of the face at ``center``/``side``/``angle`` (radians)."""
        a = crop_matrix(center, side * 1.5, angle, self.INPUT)
        roi = image.warp(a, self.INPUT).astype(np.float32) / 255.0
        self._interp.set_tensor(self._input, roi[None])
        self._interp.invoke()
        pts = self._interp.get_tensor(self._points).reshape(-1, 3)[:, :2].astype(np.float64)
        return pts @ a[:, :2].T + a[:, 2]

    def eye_angle(self, image: FrameImage, center: tuple[float, float], side: float, angle: float) -> float:
        """Roll of the eye line in radians (0 = level), from the mesh."""
        pts = self.landmarks(image, center, side, angle)
        right = pts[list(self.RIGHT_EYE)].mean(axis=0)
        left = pts[list(self.LEFT_EYE)].mean(axis=0)
        return math.atan2(left[1] - right[1], left[0] - right[0])


@cache
def get_detector(model_path: str, min_score: float) -> MediaPipeDetector:
    """One detector per process, closed at exit before MediaPipe's own dispatcher threads stop."""
    det = MediaPipeDetector(model_path, min_score)
    owner = os.getpid()

    def close() -> None:
        if os.getpid() == owner:  # a forked child (DataLoader worker) has no MediaPipe threads to talk to
            det.close()

    # threading's exit hooks run before the thread pools shut down (plain atexit runs too late and
    # MediaPipe's __del__ then prints an error); fall back to atexit if the hook ever disappears.
    register = getattr(threading, "_register_atexit", atexit.register)
    register(close)
    return det


@cache
def get_landmark_model(model_path: str) -> LandmarkModel:
    return LandmarkModel(model_path)


def crop_matrix(center: tuple[float, float], side: float, angle: float, size: int) -> np.ndarray:
    """2x3 map from output pixels (size x size) to the display: a square of ``side`` rotated by ``angle``."""
    s = side / size
    c, sn = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -sn], [sn, c]]) * s
    half = (size - 1) / 2
    offset = np.asarray(center, dtype=np.float64) - rot @ np.array([half, half])
    return np.hstack([rot, offset[:, None]])


@dataclass
class FaceClip:
    """Result of :func:`crop_clip` for one video."""

    ok: bool
    reason: str | None  # why the clip was rejected (None when ok)
    jpegs: list[bytes]  # the kept face frames, JPEG (size x size)
    times: np.ndarray  # float64 [frames_kept] source timestamps in seconds
    states: np.ndarray  # float64 [frames_kept, 4]: centre x, centre y, crop side, roll (radians)
    frames_total: int
    coverage: float
    keyframes: int  # frames the detector ran on
    detections: int  # keyframes with a face
    width: int = 0  # display size of the source
    height: int = 0
    rotation: int = 0
    source_start: float = 0.0  # timestamp of the first decoded frame (origin of a separate audio file)
    covered: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # bool [frames_kept]: keyframe had a face

    @property
    def frames_kept(self) -> int:
        return len(self.jpegs)

    def summary(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "reason": self.reason,
            "frames_total": self.frames_total,
            "frames_kept": self.frames_kept,
            "coverage": round(self.coverage, 4),
            "keyframes": self.keyframes,
            "detections": self.detections,
            "width": self.width,
            "height": self.height,
            "rotation": self.rotation,
            "source_start": self.source_start,
        }


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _map_detection(det: Detection, a: np.ndarray) -> Detection:
    """Map a detection found in a warped region (output pixels of ``a``) back to display pixels."""
    x0, y0, x1, y1 = det.box
    corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]]) @ a[:, :2].T + a[:, 2]
    kps = det.keypoints @ a[:, :2].T + a[:, 2] if len(det.keypoints) else det.keypoints
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    return Detection((lo[0], lo[1], hi[0], hi[1]), det.score, kps)


def _roll_from_keypoints(det: Detection) -> float:
    if len(det.keypoints) >= 2:
        right, left = det.keypoints[0], det.keypoints[1]
        return math.atan2(left[1] - right[1], left[0] - right[0])
    return 0.0


class _Tracker:
    """Keyframe observations -> smoothed, interpolated per-frame states (see the module docstring).

    Observations are (centre x, centre y, side, roll) per keyframe, ``None`` without a face. A frame's
    state is final once ``LOOKAHEAD`` keyframes after its next keyframe are known (:meth:`ready`): gaps
    up to that long are interpolated, longer ones hold the last face until the next is in view.
    """

    def __init__(self, every: int, smoothing: float) -> None:
        self.every = every
        self.alpha = smoothing
        self.radius = 0
        if smoothing > 0:
            self.radius = min(SMOOTH_RADIUS_MAX, math.ceil(math.log(0.05) / math.log(smoothing)))
        self.obs: list[np.ndarray | None] = []
        self.final = False
        self.any_face = False
        self._smoothed: dict[int, np.ndarray | None] = {}  # keyframes whose kernel window is complete

    def add(self, state: np.ndarray | None) -> None:
        self.obs.append(state)
        self.any_face = self.any_face or state is not None

    def last_known(self) -> np.ndarray | None:
        """The most recent observation within the last 3 keyframes (where to look for the face next)."""
        return next((s for s in reversed(self.obs[-3:]) if s is not None), None)

    def smoothed(self, k: int) -> np.ndarray | None:
        if k in self._smoothed:
            return self._smoothed[k]
        lo, hi = max(0, k - self.radius), min(len(self.obs) - 1, k + self.radius)
        total, weight = np.zeros(4), 0.0
        for j in range(lo, hi + 1):
            s = self.obs[j]
            if s is not None:
                w = self.alpha ** abs(j - k)
                total += w * s
                weight += w
        out = total / weight if weight > 0 else None
        if self.final or hi == k + self.radius:  # final: no later keyframe reaches it (asked ~9 times each)
            self._smoothed[k] = out
        return out

    def ready(self, i: int) -> bool:
        """Frame ``i``'s state is final: LOOKAHEAD keyframes past its next one are known (or the clip ended)."""
        return self.final or -(-i // self.every) + LOOKAHEAD <= len(self.obs) - 1

    def state(self, i: int) -> np.ndarray | None:
        p = i // self.every
        frac = (i - p * self.every) / self.every
        sp = self.smoothed(p) if p < len(self.obs) else None
        if frac == 0 and sp is not None:
            return sp
        sq = self.smoothed(p + 1) if p + 1 < len(self.obs) else None
        if sp is not None and sq is not None:
            return (1 - frac) * sp + frac * sq
        # a gap: interpolate between the nearest faces before and after, or hold the nearest one
        before = next(((k, s) for k in range(p, -1, -1) if (s := self.smoothed(k)) is not None), None)
        after = next(((k, s) for k in range(p + 1, len(self.obs)) if (s := self.smoothed(k)) is not None), None)
        if before and after:
            t = (i - before[0] * self.every) / ((after[0] - before[0]) * self.every)
            return (1 - t) * before[1] + t * after[1]
        return before[1] if before else after[1] if after else None

    def covered(self, i: int) -> bool:
        return self.obs[min(round(i / self.every), len(self.obs) - 1)] is not None


def _pick(dets: list[Detection], previous: np.ndarray | None) -> Detection | None:
    if not dets:
        return None
    if previous is not None:
        cx, cy, side = previous[:3]
        prev_box = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
        best = max(dets, key=lambda d: _iou(d.box, prev_box))
        if _iou(best.box, prev_box) > 0.1:
            return best
    return max(dets, key=lambda d: d.score)


Region = tuple[float, float, float, float]  # x0, y0, x1, y1 as fractions of the displayed frame
REGIONS: dict[str, Region] = {"left": (0.0, 0.0, 0.5, 1.0), "right": (0.5, 0.0, 1.0, 1.0)}


def _inside(det: Detection, region: Region | None, size: tuple[int, int]) -> bool:
    if region is None:
        return True
    cx, cy = det.center
    return region[0] * size[0] <= cx < region[2] * size[0] and region[1] * size[1] <= cy < region[3] * size[1]


def _detect(
    image: FrameImage,
    detector: FaceDetector,
    cfg: FaceConfig,
    previous: np.ndarray | None,
    region: Region | None = None,
) -> Detection | None:
    if cfg.track_roi and previous is not None:
        cx, cy, side = previous[:3]
        a = crop_matrix((cx, cy), side * ROI_SCALE, 0.0, ROI_SIZE)
        if isinstance(detector, MediaPipeDetector):
            in_region = detector.detect_square(image, a, ROI_SIZE)
        else:
            in_region = detector.detect(image.warp(a, ROI_SIZE))
        found = [_map_detection(d, a) for d in in_region]
        picked = _pick([d for d in found if _inside(d, region, image.size)], previous)
        if picked is not None:
            return picked
    if region is not None:
        # The detector keeps only its strongest faces: looking at the region alone keeps a smaller face in
        # it from losing to a bigger one outside (e.g. the listener in a two-actor recording).
        w, h = image.size
        x0, y0, x1, y1 = region[0] * w, region[1] * h, region[2] * w, region[3] * h
        side = max(x1 - x0, y1 - y0)
        size = min(cfg.max_side, math.ceil(side))
        a = crop_matrix(((x0 + x1) / 2, (y0 + y1) / 2), side, 0.0, size)
        found = [_map_detection(d, a) for d in detector.detect(image.warp(a, size))]
        return _pick([d for d in found if _inside(d, region, image.size)], previous)
    small = image.rgb(cfg.max_side)
    scale = image.size[0] / small.shape[1]
    a = np.array([[scale, 0.0, 0.0], [0.0, scale, 0.0]])
    found = [_map_detection(d, a) for d in detector.detect(small)]
    return _pick(found, previous)


def crop_clip(
    path: str | Path,
    cfg: FaceConfig,
    detector: FaceDetector,
    landmarks: LandmarkModel | None = None,
    *,
    frames: Iterable[VideoFrame] | None = None,
    region: Region | str | None = None,
) -> FaceClip:
    """Detect, track and crop the face of one video (see the module docstring).

    ``frames`` replaces decoding ``path`` (e.g. ``iter_frames(path, start=..., end=...)`` or a frame
    folder); ``region`` (``"left"``, ``"right"`` or fractions x0, y0, x1, y1 of the displayed frame)
    only accepts faces centred inside it, e.g. one speaker of a two-person recording. Raises
    :class:`~avf.data.video.MediaError` for unreadable files; a readable clip without a usable face
    comes back with ``ok=False`` and the reason.
    """
    if isinstance(region, str):
        if region not in REGIONS:
            raise ValueError(f"unknown crop region {region!r}; expected one of {sorted(REGIONS)}")
        region = REGIONS[region]
    tracker = _Tracker(cfg.detect_every, cfg.smoothing)
    buffer: deque[VideoFrame] = deque()
    kept: list[tuple[float, bytes, bool, np.ndarray]] = []
    info: dict[str, Any] = {"frames": 0, "width": 0, "height": 0, "rotation": 0, "start": 0.0}
    max_wait = (LOOKAHEAD + 2) * cfg.detect_every

    def emit(frame: VideoFrame) -> None:
        state = tracker.state(frame.index)
        if state is None:  # no face anywhere yet: a leading frame without a face, dropped
            return
        cx, cy, side, angle = state
        a = crop_matrix((cx, cy), side * (1 + 2 * cfg.margin), angle, cfg.size)
        jpeg = encode_jpeg(frame.image.warp(a, cfg.size, bgr=True), cfg.jpeg_quality, bgr=True)
        kept.append((frame.time, jpeg, tracker.covered(frame.index), state))

    def flush() -> None:
        while buffer:
            if not tracker.ready(buffer[0].index):
                if tracker.any_face or len(buffer) <= max_wait:
                    return
                buffer.popleft()  # nothing found yet and the buffer is full: a leading frame with no face
                continue
            emit(buffer.popleft())

    for frame in frames if frames is not None else iter_frames(path):
        if frame.index == 0:
            info["width"], info["height"] = frame.image.size
            info["rotation"] = frame.image.rotation
            info["start"] = frame.time
        info["frames"] += 1
        if frame.index % cfg.detect_every == 0:
            det = _detect(frame.image, detector, cfg, tracker.last_known(), region)
            state = None
            if det is not None:
                angle = 0.0
                if cfg.align:
                    angle = _roll_from_keypoints(det)
                    if landmarks is not None:
                        angle = landmarks.eye_angle(frame.image, det.center, det.side, angle)
                state = np.array([*det.center, det.side, angle])
            tracker.add(state)
        buffer.append(frame)
        flush()
    tracker.final = True
    flush()

    total = info["frames"]
    detections = sum(s is not None for s in tracker.obs)
    covered = [k[2] for k in kept]
    n_covered = sum(covered)
    coverage = n_covered / total if total else 0.0
    # trim leading/trailing frames whose nearest keyframe had no face
    if n_covered:
        first = covered.index(True)
        last = len(covered) - 1 - covered[::-1].index(True)
        kept = kept[first : last + 1]
    else:
        kept = []
    reason = None
    if total == 0:
        raise MediaError(path, "no decodable video frames")
    if total < cfg.min_frames:
        reason = f"too few frames: {total} < min_frames {cfg.min_frames}"
    elif detections == 0:
        reason = f"no face: none found in {len(tracker.obs)} sampled frames"
    elif coverage < cfg.min_coverage:
        reason = f"face in too few frames: coverage {coverage:.2f} < {cfg.min_coverage}"
    return FaceClip(
        ok=reason is None,
        reason=reason,
        jpegs=[k[1] for k in kept] if reason is None else [],
        times=np.array([k[0] for k in kept] if reason is None else [], dtype=np.float64),
        states=np.array([k[3] for k in kept] if reason is None else np.zeros((0, 4)), dtype=np.float64),
        covered=np.array([k[2] for k in kept] if reason is None else [], dtype=bool),
        frames_total=total,
        coverage=coverage,
        keyframes=len(tracker.obs),
        detections=detections,
        width=info["width"],
        height=info["height"],
        rotation=info["rotation"],
        source_start=info["start"],
    )
