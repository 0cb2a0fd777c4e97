"""``predict`` section of ``params.yaml``: how ``avf predict`` slides windows over raw videos."""

from __future__ import annotations

from pydantic import Field, model_validator

from avf.config.base import Section

VIDEO_EXTENSIONS = (
    ".mp4",
    ".m4v",
    ".mov",
    ".mkv",
    ".webm",
    ".avi",
    ".flv",
    ".mpg",
    ".mpeg",
    ".wmv",
    ".3gp",
    ".ts",
    ".mts",
)


class PredictConfig(Section):
    """Prediction on raw videos (``avf predict``; see ``avf.predict``).

    A video is cut into windows of ``window_s`` seconds every ``stride_s`` seconds (the last one is
    aligned to the end, so the windows cover the whole video); each window is treated like a training
    clip: its face frames give ``views`` test-time views and their audio by timestamps.
    """

    window_s: float = Field(3.0, gt=0.0)  # about one training clip (the model sees 16 x 4 frames of it)
    stride_s: float = Field(1.0, gt=0.0)
    views: int | None = Field(None, ge=1)  # test-time views per window; None: the model's data.clip.test_views
    batch_size: int = Field(8, ge=1)  # windows per forward pass (times the views)
    # auto: the first CUDA GPU when present (Ray Data actors then take one each), else the CPU
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    # A window whose frames had a face (near a detection) in less than this share is flagged, not predicted.
    min_face_share: float = Field(0.5, ge=0.0, le=1.0)
    extensions: tuple[str, ...] = VIDEO_EXTENSIONS  # what a folder or glob picks up
    prefetch: int = Field(1, ge=0)  # videos decoded and face-cropped ahead in a thread while the model runs
    threads: int = Field(0, ge=0)  # PyTorch CPU threads (0: PyTorch's default); 1 is faster on a busy machine
    thumbnails: int = Field(8, ge=0, le=32)  # face thumbnails along the top of the --plot timeline
    render_crf: int = Field(23, ge=0, le=51)  # x264 quality of --render videos
    # Ray Data (--ray): videos per map_batches call, predictor actors and CPUs per actor.
    ray_batch_size: int = Field(2, ge=1)
    ray_actors: int = Field(2, ge=1)
    ray_cpus_per_actor: float = Field(1.0, gt=0.0)

    @model_validator(mode="after")
    def _stride_fits(self) -> PredictConfig:
        if self.stride_s > self.window_s:
            raise ValueError(f"predict.stride_s ({self.stride_s}) > window_s ({self.window_s}) would leave gaps")
        bad = [e for e in self.extensions if not e.startswith(".") or e != e.lower()]
        if bad:
            raise ValueError(f"predict.extensions must be lower-case and start with '.', got {bad}")
        return self
