"""Face detection (MediaPipe on real photos), tracking, smoothing, coverage and cropping."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from avf.config.data import FaceConfig
from avf.data import blazeface, face, video
from avf.data.face import Detection, crop_clip
from avf.data.video import FrameImage, VideoFrame
from tests.support import media

CFG = FaceConfig()


@pytest.fixture(scope="module")
def detector() -> face.MediaPipeDetector:
    return face.get_detector(CFG.detector_model, CFG.min_score)


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_mediapipe_finds_the_astronauts_face(detector: face.MediaPipeDetector) -> None:
    dets = detector.detect(media.face_image("astronaut"))
    assert len(dets) == 1 and dets[0].score > 0.8
    assert _iou(dets[0].box, (177, 82, 272, 177)) > 0.8  # checked by eye in the environment notes
    right_eye, left_eye = dets[0].keypoints[:2]
    assert right_eye[0] < left_eye[0] and abs(right_eye[1] - left_eye[1]) < 10


def test_mediapipe_finds_grace_hopper(detector: face.MediaPipeDetector) -> None:
    img = media.face_image("grace_hopper")
    dets = detector.detect(img)
    assert dets and dets[0].score > 0.8
    cx, cy = dets[0].center
    assert 200 < cx < 330 and 180 < cy < 320 and 120 < dets[0].side < 260  # her face, mid-upper image
    mirrored = detector.detect(np.ascontiguousarray(img[:, ::-1]))
    assert mirrored and abs(mirrored[0].center[0] - (img.shape[1] - cx)) < 10


def test_crop_clip_on_a_real_video_centres_the_face(tmp_path: Path, detector: face.MediaPipeDetector) -> None:
    path = media.write_clip(tmp_path / "a.mp4", seconds=1.0, size=(256, 192))
    result = crop_clip(path, CFG, detector)
    assert result.ok and result.reason is None
    assert (result.frames_total, result.frames_kept, result.coverage) == (25, 25, 1.0)
    assert result.keyframes == 5 and result.detections == 5
    crop = video.decode_jpeg(result.jpegs[12])
    assert crop.shape == (160, 160, 3)
    again = detector.detect(crop)
    assert again and np.allclose(again[0].center, (80, 80), atol=16)
    # the box side is the detection (about 0.19 of the 512-px photo scaled to 192 px) with margins
    assert result.states[0, 2] == pytest.approx(0.186 * 192, rel=0.2)


def _square_regions(tmp_path: Path) -> list[tuple[FrameImage, np.ndarray, int]]:
    """Seeded square regions around and beside faces: decoded YUV video frames and RGB photos, 128-512 px."""
    rng = np.random.default_rng(7)
    clip = media.write_clip(tmp_path / "a.mp4", seconds=0.6, size=(640, 360), face="grace_hopper")
    images = [f.image for f in video.iter_frames(clip)][::5]
    images += [FrameImage(media.face_image(name)) for name in media.FACES]
    out = []
    for image in images:
        w, h = image.size
        for _ in range(12):
            side = float(rng.uniform(0.4, 1.2) * min(w, h))
            centre = (float(rng.uniform(0.3, 0.7) * w), float(rng.uniform(0.3, 0.7) * h))
            size = int(rng.choice([128, 256, 512]))
            out.append((image, face.crop_matrix(centre, side, 0.0, size), size))
    return out


def test_square_regions_give_the_tasks_detections_without_the_task(
    tmp_path: Path, detector: face.MediaPipeDetector
) -> None:
    faces = 0
    for image, a, size in _square_regions(tmp_path):
        every = size // 128
        sampled = np.hstack([a[:, :2] * every, a[:, 2:]])
        assert np.array_equal(image.warp(sampled, 128), image.warp(a, size)[::every, ::every])  # what the task sees
        ours, task = detector.detect_square(image, a, size), detector.detect(image.warp(a, size))
        assert len(ours) == len(task)
        for d, ref in zip(ours, task, strict=True):
            # the two runtimes may differ in the last float bits on other CPUs: a box may then truncate 1 px apart
            assert np.abs(np.subtract(d.box, ref.box)).max() <= 1.0
            assert d.score == pytest.approx(ref.score, abs=1e-4)
            np.testing.assert_allclose(d.keypoints, ref.keypoints, atol=0.05)
        faces += len(task)
    assert faces >= 40  # most regions hold a face: the comparison is not vacuous


def test_square_regions_of_other_sizes_go_to_the_task(
    detector: face.MediaPipeDetector, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = FrameImage(media.face_image("astronaut"))
    a = face.crop_matrix((225, 130), 300, 0.0, 200)
    monkeypatch.setattr(detector._model, "detect", lambda *args: pytest.fail("200 px is not 128 * k"))
    ours, task = detector.detect_square(image, a, 200), detector.detect(image.warp(a, 200))
    assert len(task) == 1 and [(d.box, d.score) for d in ours] == [(d.box, d.score) for d in task]
    assert np.array_equal(ours[0].keypoints, task[0].keypoints)


class StubDetector:
    """Returns a box whose centre follows ``path(t)``; ``None`` from ``path`` means no face."""

    def __init__(self, path, side: float = 40.0) -> None:  # type: ignore[no-untyped-def]
        self.path = path
        self.side = side
        self.calls = 0

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        self.calls += 1
        t = float(rgb[0, 0, 0])  # frames carry their index in pixel (0, 0)
        centre = self.path(t)
        if centre is None:
            return []
        scale = rgb.shape[1] / 320  # detection may run on a downscaled copy
        x, y, s = centre[0] * scale, centre[1] * scale, self.side * scale
        return [Detection((x - s / 2, y - s / 2, x + s / 2, y + s / 2), 0.9, np.array([[x - 5, y], [x + 5, y]]))]


def _frames(n: int) -> list[VideoFrame]:
    out = []
    for i in range(n):
        img = np.full((240, 320, 3), 100, np.uint8)
        img[0, 0] = i
        out.append(VideoFrame(i, i / 25, FrameImage(img)))
    return out


def _cfg(**kw: object) -> FaceConfig:
    return FaceConfig(**{"detect_every": 5, "track_roi": False, "min_frames": 4, **kw})  # type: ignore[arg-type]


def test_detector_runs_on_keyframes_only_and_boxes_are_interpolated() -> None:
    stub = StubDetector(lambda t: (100 + 2 * t, 120))
    result = crop_clip("stub", _cfg(smoothing=0.0), stub, frames=_frames(21))
    assert stub.calls == 5  # frames 0, 5, 10, 15, 20
    np.testing.assert_allclose(result.states[:, 0], 100 + 2 * np.arange(21), atol=1e-9)
    assert result.coverage == 1.0 and result.frames_kept == 21


def test_smoothing_is_zero_phase() -> None:
    jitter = {0: 0, 5: 6, 10: -6, 15: 6, 20: -6, 25: 6, 30: -6, 35: 6, 40: -6}
    stub = StubDetector(lambda t: (160 + jitter[int(t)], 120))
    smooth = crop_clip("stub", _cfg(smoothing=0.6), stub, frames=_frames(41))
    raw_stub = StubDetector(lambda t: (160 + jitter[int(t)], 120))
    raw = crop_clip("stub", _cfg(smoothing=0.0), raw_stub, frames=_frames(41))
    assert np.ptp(smooth.states[:, 0]) < 0.5 * np.ptp(raw.states[:, 0])  # jitter damped
    linear = crop_clip("stub", _cfg(smoothing=0.6), StubDetector(lambda t: (60 + t, 120)), frames=_frames(81))
    # a symmetric kernel (4 keyframes each side) leaves a linear motion unbiased (no lag) where it fits
    np.testing.assert_allclose(linear.states[20:61, 0], 60 + np.arange(20, 61), atol=1e-6)


def test_misses_are_bridged_and_coverage_counts_detection_backed_frames() -> None:
    stub = StubDetector(lambda t: None if t in (10, 15) else (100 + 2 * t, 120))
    result = crop_clip("stub", _cfg(smoothing=0.0), stub, frames=_frames(26))
    # keyframes 10 and 15 missed: frames 8..17 are not backed by a detection (nearest keyframe missed)
    assert result.coverage == pytest.approx(16 / 26)
    assert result.ok and result.frames_kept == 26
    np.testing.assert_allclose(result.states[12, 0], 100 + 2 * 12)  # interpolated between frames 5 and 20


def test_leading_and_trailing_frames_without_a_face_are_dropped() -> None:
    stub = StubDetector(lambda t: (150, 120) if 10 <= t <= 25 else None)
    result = crop_clip("stub", _cfg(smoothing=0.0, min_coverage=0.3), stub, frames=_frames(41))
    assert result.ok
    assert result.frames_kept == 28 - 8  # frames 8..27 are nearest to keyframes 10..25
    assert result.times[0] == pytest.approx(8 / 25) and result.times[-1] == pytest.approx(27 / 25)


def test_low_coverage_and_no_face_are_rejected_with_a_reason() -> None:
    few = crop_clip("stub", _cfg(), StubDetector(lambda t: (150, 120) if t < 6 else None), frames=_frames(41))
    assert not few.ok and few.reason == "face in too few frames: coverage 0.20 < 0.5"
    assert few.jpegs == [] and few.coverage == pytest.approx(8 / 41)
    none = crop_clip("stub", _cfg(), StubDetector(lambda t: None), frames=_frames(41))
    assert not none.ok and none.reason == "no face: none found in 9 sampled frames"
    short = crop_clip("stub", _cfg(min_frames=8), StubDetector(lambda t: (150, 120)), frames=_frames(3))
    assert short.reason == "too few frames: 3 < min_frames 8"


def test_region_keeps_the_face_in_the_requested_half() -> None:
    class BrightBlobs:
        """Every bright square of the image it is shown is a face; the bigger the square, the higher its score."""

        def __init__(self) -> None:
            self.seen: list[int] = []

        def detect(self, rgb: np.ndarray) -> list[Detection]:
            count, _, stats, _ = cv2.connectedComponentsWithStats((rgb[:, :, 1] > 200).astype(np.uint8))
            self.seen.append(count - 1)
            return [
                Detection((x, y, x + w, y + h), min(0.99, w / 50))
                for x, y, w, h, _ in stats[1:]  # 0: background
            ]

    def frames(n: int) -> list[VideoFrame]:
        img = np.full((240, 320, 3), 30, np.uint8)
        img[98:142, 58:102] = 250  # the left person: bigger, so the stronger detection
        img[100:140, 220:260] = 250
        return [VideoFrame(i, i / 25, FrameImage(img.copy())) for i in range(n)]

    for region, centre in (("right", 240), ("left", 80)):
        blobs = BrightBlobs()
        result = crop_clip("stub", _cfg(), blobs, frames=frames(11), region=region)
        assert result.ok and result.states[0, 0] == pytest.approx(centre, abs=1.0), region
        assert set(blobs.seen) == {1}, region  # the detector only looks at the region: one face there


def test_crop_matrix_maps_output_square_onto_the_box() -> None:
    a = face.crop_matrix((100.0, 50.0), 80.0, 0.0, 160)
    corners = np.array([[0, 0, 1], [159, 159, 1]]) @ a.T
    np.testing.assert_allclose(corners, [[60.25, 10.25], [139.75, 89.75]])
    r = face.crop_matrix((0.0, 0.0), 10.0, math.pi / 2, 10)
    np.testing.assert_allclose(r[:, :2], [[0, -1], [1, 0]], atol=1e-12)


def test_landmark_alignment_levels_a_rolled_face(tmp_path: Path, detector: face.MediaPipeDetector) -> None:
    rot = cv2.getRotationMatrix2D((128, 128), 20, 1.0)  # the face is rolled 20 degrees
    frames = [cv2.warpAffine(f, rot, (256, 256)) for f in media.face_frames(10, (256, 256))]
    path = media.write_video(tmp_path / "roll.mp4", frames)
    landmarks = face.get_landmark_model(CFG.landmark_model)
    aligned = crop_clip(path, FaceConfig(align=True, min_frames=4), detector, landmarks)
    plain = crop_clip(path, FaceConfig(min_frames=4), detector)
    assert aligned.ok and plain.ok
    assert math.degrees(aligned.states[0, 3]) == pytest.approx(-20, abs=5)
    assert plain.states[0, 3] == 0.0
    eyes = detector.detect(video.decode_jpeg(aligned.jpegs[0]))[0].keypoints[:2]
    assert abs(eyes[0, 1] - eyes[1, 1]) < 4  # level eyes in the aligned crop


def test_blazeface_refuses_other_inputs_and_models() -> None:
    model = blazeface.BlazeFaceLite(CFG.detector_model)
    with pytest.raises(ValueError, match=r"expected uint8 \[128, 128, 3\]"):
        model.detect(np.zeros((256, 256, 3), np.uint8), 256)
    with pytest.raises(ValueError, match="not the short-range BlazeFace model"):
        blazeface.BlazeFaceLite(CFG.landmark_model)
    with pytest.raises(FileNotFoundError, match="make setup"):
        blazeface.BlazeFaceLite("models/assets/missing.tflite")
    with pytest.raises(ValueError, match="min_score"):
        blazeface.BlazeFaceLite(CFG.detector_model, 0.0)


def _raw_anchor(index: int, dx: float, dy: float, w: float, h: float) -> np.ndarray:
    """One anchor's 16 raw model outputs (pixels of the 128-px input): box offset and size, keypoints at the centre."""
    raw = np.zeros(16, np.float32)
    raw[:4] = dx, dy, w, h
    raw[4::2], raw[5::2] = dx, dy
    return raw


def test_blazeface_decodes_anchor_offsets_and_drops_weak_or_inverted_boxes() -> None:
    anchors = blazeface.ssd_anchors()
    assert anchors.shape == (896, 2)
    assert anchors[0].tolist() == anchors[1].tolist() == [1 / 32, 1 / 32]  # 2 per cell of the 16x16 map
    assert anchors[512].tolist() == [1 / 16, 1 / 16] and anchors[517].tolist() == [1 / 16, 1 / 16]  # 6 per 8x8 cell
    raw, logits = np.zeros((896, 16), np.float32), np.full(896, -10.0, np.float32)
    raw[3], logits[3] = _raw_anchor(3, 6.4, -3.2, 25.6, 12.8), 2.0
    raw[600], logits[600] = _raw_anchor(600, 0, 0, -1.0, 5.0), 5.0  # negative width: dropped
    logits[7] = -0.01  # score just under 0.5: dropped
    boxes, scores, points = blazeface.decode(raw, logits, 0.5)
    cx, cy = anchors[3] + np.array([6.4, -3.2], np.float32) / 128
    np.testing.assert_allclose(boxes, [[cx - 0.1, cy - 0.05, 0.2, 0.1]], rtol=1e-6)
    np.testing.assert_allclose(scores, [1 / (1 + np.exp(-2.0))], rtol=1e-6)
    np.testing.assert_allclose(points[0], np.tile([cx, cy], (6, 1)), rtol=1e-6)


def test_blazeface_suppression_merges_overlaps_by_score() -> None:
    boxes = np.array([[0.1, 0.1, 0.2, 0.2], [0.12, 0.1, 0.2, 0.2], [0.6, 0.6, 0.1, 0.1]], np.float32)
    scores = np.array([0.9, 0.6, 0.7], np.float32)
    points = np.repeat(boxes[:, None, :2], 6, axis=1)
    merged, other = blazeface.weighted_nms(boxes, scores, points)
    assert (merged.score, other.score) == pytest.approx((0.9, 0.7))  # best first, each keeps its best score
    np.testing.assert_allclose(merged.box, [(0.1 * 0.9 + 0.12 * 0.6) / 1.5, 0.1, 0.2, 0.2], rtol=1e-6)
    np.testing.assert_allclose(merged.keypoints, np.tile(merged.box[:2], (6, 1)), rtol=1e-6)
    np.testing.assert_allclose(other.box, boxes[2], rtol=1e-6)  # alone: its own box
    # a zero-area best box overlaps nothing, not even itself: kept as it is, and the suppression stops there
    flat = np.array([[0.1, 0.1, 0.0, 0.2], [0.5, 0.5, 0.1, 0.1]], np.float32)
    (kept,) = blazeface.weighted_nms(flat, np.array([0.9, 0.8], np.float32), np.zeros((2, 6, 2), np.float32))
    np.testing.assert_array_equal(kept.box, flat[0])
