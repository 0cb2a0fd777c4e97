"""The :class:`Predictor`: a fine-tuned model applied to raw videos, window by window.

Usage::

    predictor = Predictor.from_uri("models/finetune")          # or a package, .safetensors, models:/...
    result = predictor.predict_video("talk.mp4")               # never raises for a bad video
    result.scores                                              # f32 [K]: whole-video probabilities
    [w.scores for w in result.windows]                         # f32 [K] per window (None: flagged)

Per window, classification averages the softmax over the test-time views (the evaluation protocol);
regression averages the outputs. The whole-video prediction is the mean over the predicted windows.
Windows are batched (``predict.batch_size`` windows x views per forward pass); over many files the
next videos are decoded and face-cropped in a background thread while the model runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from avf.assets import locate as locate_asset
from avf.config.data import AugmentConfig, DataConfig
from avf.config.predict import PredictConfig
from avf.data.face import FaceDetector, LandmarkModel
from avf.data.transforms import ClipTransform
from avf.data.video import MediaError
from avf.models.packed_linear import packed_linears
from avf.predict.heads import DatasetHead
from avf.predict.prepare import PreparedVideo, WindowInput, plan_windows, prepare_video, window_input
from avf.predict.source import ModelSpec, load_model
from avf.utils.cpu import BF16_FLAGS, bf16_units
from avf.utils.device import resolve_device

__all__ = ["PRECISIONS", "RUNTIMES", "Predictor", "VideoPrediction", "WindowPrediction"]

# torch: the model in PyTorch, on predict.device; onnxruntime: exported to ONNX and run by ONNX Runtime on the CPU
RUNTIMES = ("torch", "onnxruntime")
# fp32, or bf16 autocast of the torch runtime (matmuls in bf16 on GPUs and on CPUs with bf16 units)
PRECISIONS = ("fp32", "bf16")

log = logging.getLogger(__name__)


@dataclass
class WindowPrediction:
    """One window: its span (seconds from the first frame), flags, and scores ``f32 [K]`` (None: not predicted)."""

    index: int
    start_s: float
    end_s: float
    frames: int
    face_share: float
    face: bool
    audio: str  # ok | silent | missing
    reasons: list[str]
    scores: np.ndarray | None

    @property
    def predicted(self) -> bool:
        return self.scores is not None


@dataclass
class VideoPrediction:
    """Whole-video result: ``scores f32 [K]`` (mean of the predicted windows) or ``error``."""

    path: str
    error: str | None = None
    windows: list[WindowPrediction] = field(default_factory=list)
    scores: np.ndarray | None = None
    duration_s: float = 0.0
    fps: float = 0.0
    frames: int = 0
    width: int = 0
    height: int = 0
    has_audio: bool = False
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0  # processing time
    prepared: PreparedVideo | None = None  # kept for --plot / --render; drop it once used

    @property
    def ok(self) -> bool:
        return self.error is None and self.scores is not None


class Predictor:
    """A model plus its training preprocessing, applied to raw videos (see the module docstring)."""

    def __init__(
        self,
        model: nn.Module,
        spec: ModelSpec,
        settings: PredictConfig | None = None,
        *,
        detector: FaceDetector | None = None,
        landmarks: LandmarkModel | None = None,
        runtime: str = "torch",
        precision: str = "fp32",
    ) -> None:
        self.settings = settings or PredictConfig()
        self.device = resolve_device(self.settings.device)
        self.model = model.eval().to(self.device)
        self.spec = spec
        if runtime not in RUNTIMES:
            raise ValueError(f"unknown runtime {runtime!r} (one of {', '.join(RUNTIMES)})")
        self.runtime = runtime
        self.precision = self._check_precision(precision)
        self._session = self._onnx_session() if runtime == "onnxruntime" else None
        self._packed = packed_linears(self.model)  # fp32 on the CPU: weights packed once, on first use
        if self.settings.threads:
            torch.set_num_threads(self.settings.threads)  # process-wide, as for any PyTorch program
        self._detector = detector
        self._landmarks = landmarks
        self._transform = ClipTransform(spec.clip.image_size, AugmentConfig(rand_augment=""))
        self._prepare_lock = threading.Lock()  # one face detector per process: one video at a time

    @classmethod
    def from_uri(
        cls,
        uri: str | Path,
        settings: PredictConfig | None = None,
        *,
        card: dict[str, Any] | str | Path | None = None,
        data: DataConfig | None = None,
        detector: FaceDetector | None = None,
        head: DatasetHead | None = None,
        runtime: str = "torch",
        precision: str = "fp32",
    ) -> Predictor:
        """Load any model source of :func:`avf.predict.source.load_model`."""
        model, spec = load_model(uri, card=card, data=data, head=head)
        return cls(model, spec, settings, detector=detector, runtime=runtime, precision=precision)

    @property
    def views(self) -> int:
        return self.settings.views or self.spec.clip.test_views

    @property
    def regression(self) -> bool:
        return self.spec.task == "regression"

    # -- preprocessing -------------------------------------------------------------------------
    def _face_models(self) -> tuple[FaceDetector, LandmarkModel | None]:
        from avf.data.face import get_detector, get_landmark_model

        cfg, base = self.spec.face, self.spec.base_dir
        if self._detector is None:
            self._detector = get_detector(str(locate_asset(cfg.detector_model, base)), cfg.min_score)
        if cfg.align and self._landmarks is None:
            self._landmarks = get_landmark_model(str(locate_asset(cfg.landmark_model, base)))
        return self._detector, self._landmarks

    def prepare(self, path: str | Path) -> PreparedVideo:
        """Decode, face-track and crop, and load the audio of one video (raises ``MediaError``)."""
        with self._prepare_lock:
            detector, landmarks = self._face_models()
            return prepare_video(path, self.spec.face, self.spec.audio, detector, landmarks)

    def _try_prepare(self, path: str | Path) -> tuple[PreparedVideo | None, str | None, float]:
        """(prepared video or None, error, seconds taken): unreadable media and surprises become an error."""
        t = time.perf_counter()
        try:
            return self.prepare(path), None, time.perf_counter() - t
        except MediaError as e:
            return None, e.reason, time.perf_counter() - t
        except (OSError, ValueError, RuntimeError) as e:  # a decoder or detector failing on this file only
            log.warning("%s: %s", path, e, exc_info=log.isEnabledFor(logging.DEBUG))
            return None, f"cannot process: {type(e).__name__}: {e}", time.perf_counter() - t

    def window_inputs(self, prep: PreparedVideo) -> list[WindowInput]:
        """All windows of a prepared video with their model inputs (see ``avf.predict.prepare``).

        Holds every window's tensors at once (about 10 MB per window); prediction streams them instead.
        """
        return list(self._iter_windows(prep))

    def _iter_windows(self, prep: PreparedVideo) -> Iterator[WindowInput]:
        s, spec = self.settings, self.spec
        for i, span in enumerate(plan_windows(prep.duration_s, s.window_s, s.stride_s)):
            yield window_input(prep, i, span, spec.clip, spec.audio, self.views, s.min_face_share, self._transform)

    # -- model ---------------------------------------------------------------------------------
    def _check_precision(self, precision: str) -> str:
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r} (one of {', '.join(PRECISIONS)})")
        if precision == "bf16" and self.runtime != "torch":
            raise ValueError(f"bf16 runs in the torch runtime, not {self.runtime}")
        if precision == "bf16" and self.device.type == "cpu" and not bf16_units():
            log.warning(
                "this CPU has no bf16 matrix units (%s): bf16 is emulated, slower than fp32", "/".join(BF16_FLAGS)
            )
        if (
            precision == "bf16"
            and self.device.type == "cuda"
            and not torch.cuda.is_bf16_supported(including_emulation=False)
        ):
            log.warning(
                "%s has no native bf16: it is emulated, slower than fp32", torch.cuda.get_device_name(self.device)
            )
        return precision

    def _onnx_session(self) -> Any:
        """The model in an ONNX Runtime session on the CPU (:func:`avf.predict.export.onnx_session`)."""
        from avf.predict.export import onnx_session

        if self.device.type != "cpu":
            raise ValueError(f"the onnxruntime runtime runs on the CPU, not {self.device} (set predict.device: cpu)")
        return onnx_session(self.model, self.spec, self.settings.threads)

    @torch.inference_mode()
    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Scores ``f32 [B, K]`` of windows ``video [B, V, 3, T, S, S]``, ``audio [B, V, 1, F, M]`` (views averaged)."""
        b, v = video.shape[:2]
        dev = self.device
        if self._session is not None:
            inputs = {"video": video.flatten(0, 1).numpy(), "audio": audio.flatten(0, 1).numpy()}
            out = torch.from_numpy(self._session.run(["logits"], inputs)[0]).float()
        else:
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"), self._packed:
                out = self.model(video.flatten(0, 1).to(dev), audio.flatten(0, 1).to(dev)).float()
        if not self.regression:
            out = out.softmax(-1)
        return out.view(b, v, -1).mean(1).cpu()

    def _score_windows(self, wins: Sequence[WindowInput]) -> list[np.ndarray | None]:
        """Scores ``f32 [K]`` of each window with a face (None for the others), one forward pass per call."""
        scores: list[np.ndarray | None] = [None] * len(wins)
        todo = [i for i, w in enumerate(wins) if w.has_face]
        if todo:
            video = torch.stack([wins[i].video for i in todo])  # type: ignore[misc]
            audio = torch.stack([wins[i].audio for i in todo])  # type: ignore[misc]
            for i, row in zip(todo, self.forward(video, audio).numpy(), strict=True):
                scores[i] = row.astype(np.float32)
        return scores

    def _predict_windows(self, prep: PreparedVideo) -> Iterator[WindowPrediction]:
        """Window predictions, ``batch_size`` windows with a face per forward pass (inputs freed after each)."""
        batch: list[WindowInput] = []
        bs = self.settings.batch_size

        def flush() -> Iterator[WindowPrediction]:
            for w, score in zip(batch, self._score_windows(batch), strict=True):
                yield WindowPrediction(
                    index=w.index,
                    start_s=w.start_s,
                    end_s=w.end_s,
                    frames=w.frames,
                    face_share=w.face_share,
                    face=w.has_face,
                    audio=w.audio_status,
                    reasons=list(w.reasons),
                    scores=score,
                )
            batch.clear()

        for win in self._iter_windows(prep):
            batch.append(win)
            if sum(w.has_face for w in batch) >= bs:
                yield from flush()
        yield from flush()

    # -- videos --------------------------------------------------------------------------------
    def predict_prepared(self, prep: PreparedVideo, keep_prepared: bool = False) -> VideoPrediction:
        """Windows, scores and the whole-video prediction of a prepared video."""
        windows = list(self._predict_windows(prep))
        scores = [w.scores for w in windows]
        done = [s for s in scores if s is not None]
        result = VideoPrediction(
            path=prep.path,
            windows=windows,
            scores=np.mean(done, axis=0).astype(np.float32) if done else None,
            duration_s=prep.duration_s,
            fps=prep.fps,
            frames=len(prep.frame_times),
            width=prep.face.width,
            height=prep.face.height,
            has_audio=prep.has_audio,
            warnings=list(prep.warnings),
            prepared=prep if keep_prepared else None,
        )
        if not done:
            result.error = "no window could be predicted: " + (
                prep.face.reason or "no face in enough frames of any window"
            )
        return result

    def predict_video(self, path: str | Path, keep_prepared: bool = False) -> VideoPrediction:
        """Predict one video; an unreadable file gives a result with ``error`` set (never raises for media)."""
        self._face_models()
        return self._finish(path, *self._try_prepare(path), keep_prepared)

    def _finish(
        self, path: str | Path, prep: PreparedVideo | None, error: str | None, took: float, keep_prepared: bool
    ) -> VideoPrediction:
        t = time.perf_counter()
        result = self.predict_prepared(prep, keep_prepared) if prep is not None else VideoPrediction(str(path), error)
        result.seconds = took + time.perf_counter() - t
        return result

    def predict_paths(
        self, paths: Iterable[str | Path], *, progress: bool = True, keep_prepared: bool = False
    ) -> Iterator[VideoPrediction]:
        """Predict many videos in order (a progress bar over files; decoding runs ahead in a thread)."""
        from avf.utils.progress import track

        items = list(paths)
        ahead = self.settings.prefetch
        self._face_models()  # a missing face model file fails here, once, not per video
        it = track(items, total=len(items), desc="predict") if progress else iter(items)
        if ahead == 0:
            for path in it:
                yield self._finish(path, *self._try_prepare(path), keep_prepared)
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="avf-prepare") as pool:
            queue: list[tuple[str | Path, Future[Any]]] = []
            pending = iter(items)
            for path in pending:
                queue.append((path, pool.submit(self._try_prepare, path)))
                if len(queue) > ahead:
                    break
            for _ in it:
                path, fut = queue.pop(0)
                nxt = next(pending, None)
                if nxt is not None:
                    queue.append((nxt, pool.submit(self._try_prepare, nxt)))
                yield self._finish(path, *fut.result(), keep_prepared)
