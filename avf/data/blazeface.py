"""MediaPipe's short-range BlazeFace model run directly with LiteRT, decoded as MediaPipe's face detector decodes it.

MediaPipe's face detector task runs ``face_detection_short_range.tflite`` inside a graph: image to tensor,
inference, SSD decoding, weighted non-maximum suppression, projection back to the image. The graph costs
about as much as the model itself per call. :class:`BlazeFaceLite` runs the same model and repeats the
graph's decoding for one case, a square ``128 * k`` px image, which the task samples at every k-th pixel:
given those pixels (``uint8 [128, 128, 3]``) it returns the detections the task returns for the whole image,
in that image's pixels (``tests/unit/test_face.py`` compares the two; timings in ``docs/performance.md``).
Two runtimes may differ in the last float bits (their XNNPACK builds, a fused multiply-add in OpenCV's pixel
conversion), and tied best scores (1.0 saturates) may be taken in another order than ``std::sort``'s: a box
can then truncate to a pixel apart.

The arithmetic follows MediaPipe's calculators in float32 and in their order (``SsdAnchorsCalculator``,
``TensorsToDetectionsCalculator``, ``NonMaxSuppressionCalculator`` with the WEIGHTED algorithm,
``DetectionTransformationCalculator``), with the face detector graph's settings for this model: 896 anchors on
strides 8, 16, 16, 16, boxes as (x, y, w, h) offsets over 128, six keypoints, scores through a sigmoid after
clipping to +-100, suppression above an intersection over union of 0.3.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["INPUT", "BlazeFaceLite", "RawFace", "decode", "ssd_anchors", "weighted_nms"]

INPUT = 128
NUM_KEYPOINTS = 6
SCORE_CLIP = 100.0
SUPPRESSION_IOU = 0.3
_F = np.float32


def ssd_anchors() -> np.ndarray:
    """``float32 [896, 2]`` anchor centres (x, y) in [0, 1], in the model's output order.

    The graph's anchor settings (4 layers, strides 8/16/16/16, aspect ratio 1 plus an interpolated scale,
    fixed anchor size) give 2 anchors per cell of the 16x16 stride-8 map, then 6 per cell of the 8x8 map of
    the three stride-16 layers, rows first; the sizes are all 1, so only the centres matter.
    """
    centres = []
    for cells, per_cell in ((INPUT // 8, 2), (INPUT // 16, 6)):
        grid = (np.arange(cells, dtype=np.float64) + 0.5) / cells
        ys, xs = np.meshgrid(grid, grid, indexing="ij")
        centres.append(np.repeat(np.stack([xs.ravel(), ys.ravel()], axis=1), per_cell, axis=0))
    return np.concatenate(centres).astype(_F)


_ANCHORS = ssd_anchors()


@dataclass(frozen=True)
class RawFace:
    """One face relative to the model input: ``box`` float32 (xmin, ymin, width, height), ``keypoints``
    float32 ``[6, 2]`` (x, y), MediaPipe's order (right eye, left eye, nose tip, mouth, right ear, left ear)."""

    box: np.ndarray
    score: float
    keypoints: np.ndarray


def decode(
    raw_boxes: np.ndarray, raw_scores: np.ndarray, min_score: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The anchors scoring at least ``min_score``: ``(boxes [n, 4] xmin, ymin, width, height, scores [n],
    keypoints [n, 6, 2])``, float32 and relative to the input, from ``raw_boxes [896, 16]``, ``raw_scores [896]``."""
    logits = np.clip(raw_scores.astype(_F), _F(-SCORE_CLIP), _F(SCORE_CLIP))
    # float64 exp rounded to float32 agrees with C's expf (within 0.502 ulp) where numpy's float32 exp can be 1 ulp off
    with np.errstate(over="ignore"):  # exp(100) overflows float32 to inf, as in C: the score is 0
        scores = _F(1) / (_F(1) + np.exp(-logits.astype(np.float64)).astype(_F))
    keep = np.flatnonzero(scores >= _F(min_score))
    raw, anchors = raw_boxes[keep].astype(_F), _ANCHORS[keep]
    scale = _F(INPUT)
    xc = raw[:, 0] / scale + anchors[:, 0]
    yc = raw[:, 1] / scale + anchors[:, 1]
    w, h = raw[:, 2] / scale, raw[:, 3] / scale
    xmin, ymin = xc - w / _F(2), yc - h / _F(2)
    width, height = (xc + w / _F(2)) - xmin, (yc + h / _F(2)) - ymin
    points = raw[:, 4 : 4 + 2 * NUM_KEYPOINTS].reshape(-1, NUM_KEYPOINTS, 2) / scale + anchors[:, None, :]
    valid = (width >= 0) & (height >= 0)  # NaN compares false too: the graph drops those boxes
    boxes = np.stack([xmin, ymin, width, height], axis=1)
    return boxes[valid], scores[keep][valid], points[valid]


def _ordered_sum(values: np.ndarray) -> np.ndarray:
    """Left-to-right float32 sum over axis 0, as the calculator's loop adds (``np.sum`` adds pairwise)."""
    return np.cumsum(values, axis=0, dtype=_F)[-1]


def weighted_nms(
    boxes: np.ndarray, scores: np.ndarray, keypoints: np.ndarray, threshold: float = SUPPRESSION_IOU
) -> list[RawFace]:
    """MediaPipe's weighted non-maximum suppression: the best remaining box takes every box overlapping it
    by more than ``threshold`` (IoU) and becomes their score-weighted mean; its own score is kept."""
    order = np.argsort(-scores, kind="stable")
    x0, y0 = boxes[:, 0], boxes[:, 1]
    x1, y1 = x0 + boxes[:, 2], y0 + boxes[:, 3]  # the rectangle's corners, as Rectangle_f builds them
    area = (x1 - x0) * (y1 - y0)
    out: list[RawFace] = []
    while len(order):
        top, rest = order[0], order
        iw = np.minimum(x1[rest], x1[top]) - np.maximum(x0[rest], x0[top])
        ih = np.minimum(y1[rest], y1[top]) - np.maximum(y0[rest], y0[top])
        overlap = (iw >= 0) & (ih >= 0) & (area[rest] >= 0) & (area[top] >= 0)
        inter = np.where(overlap, iw * ih, _F(0))
        union = area[rest] + area[top] - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(union > 0, inter / union, _F(0))
        taken = rest[iou > _F(threshold)]
        if not len(taken):  # a zero-area best box overlaps nothing, itself included: the graph keeps it and stops
            out.append(RawFace(boxes[top], float(scores[top]), keypoints[top]))
            break
        w = scores[taken]
        total = _ordered_sum(w)
        xmin = _ordered_sum(x0[taken] * w) / total
        ymin = _ordered_sum(y0[taken] * w) / total
        width = _ordered_sum(x1[taken] * w) / total - xmin
        height = _ordered_sum(y1[taken] * w) / total - ymin
        points = _ordered_sum(keypoints[taken] * w[:, None, None]) / total
        box = np.array([xmin, ymin, width, height], dtype=_F)
        out.append(RawFace(box, float(scores[top]), points))
        order = rest[iou <= _F(threshold)]
    return out


class BlazeFaceLite:
    """The short-range BlazeFace model on one LiteRT thread; :meth:`detect` takes the 128-px sampled image."""

    def __init__(self, model_path: str | Path, min_score: float = 0.5) -> None:
        from ai_edge_litert.interpreter import Interpreter

        if not 0.0 < min_score < 1.0:
            raise ValueError(f"min_score must be in (0, 1), not {min_score}")
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"face detector model not found: {path} (run `make setup`)")
        self._interp = Interpreter(model_path=str(path), num_threads=1)
        self._interp.allocate_tensors()
        inp = self._interp.get_input_details()[0]
        if tuple(inp["shape"]) != (1, INPUT, INPUT, 3):
            raise ValueError(f"{path}: not the short-range BlazeFace model (input {tuple(inp['shape'])})")
        self._input = inp["index"]
        by_width = {int(o["shape"][-1]): o["index"] for o in self._interp.get_output_details()}
        self._boxes, self._scores = by_width[4 + 2 * NUM_KEYPOINTS], by_width[1]
        # the graph's pixel conversion to [-1, 1]: OpenCV's convertTo, scale 2/255 then offset -1 in float32
        self._levels = np.arange(256, dtype=_F) * _F(2.0 / 255.0) + _F(-1.0)
        self.min_score = min_score

    def detect(self, rgb: np.ndarray, side: int) -> list[tuple[tuple[int, int, int, int], float, np.ndarray]]:
        """Faces in a square RGB image of ``side`` px (``128 * k``) given its every k-th pixel ``rgb``
        (``uint8 [128, 128, 3]``): ``((x, y, width, height) int pixels, score, keypoints float64 [6, 2] pixels)``,
        best first, as MediaPipe's task returns them for the whole image."""
        if rgb.shape != (INPUT, INPUT, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"expected uint8 [{INPUT}, {INPUT}, 3], got {rgb.dtype} {list(rgb.shape)}")
        self._interp.set_tensor(self._input, self._levels[rgb][None])
        self._interp.invoke()
        raw_boxes = self._interp.get_tensor(self._boxes)[0]
        raw_scores = self._interp.get_tensor(self._scores)[0, :, 0]
        out = []
        n = _F(side)
        scale = n * (_F(1) / n)  # the projection back to the image: a square ROI over the whole image
        for f in weighted_nms(*decode(raw_boxes, raw_scores, self.min_score)):
            x0, y0 = f.box[0] * scale, f.box[1] * scale
            x1, y1 = (f.box[0] + f.box[2]) * scale, (f.box[1] + f.box[3]) * scale
            # DetectionTransformationCalculator: relative -> int pixels by truncation, bounded to [0, side]
            x, y, w, h = (min(max(int(v * n), 0), side) for v in (x0, y0, x1 - x0, y1 - y0))
            out.append(((x, y, w, h), f.score, (f.keypoints * scale).astype(np.float64) * side))
        return out
