"""``data`` section of ``params.yaml``: demo generator, datasets, face cropping, audio, splits, shards."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from avf.config.base import Section


class SynthConfig(Section):
    """The embedded demo dataset (``avf data synth``): talking-face videos in real dataset layouts."""

    seed: int = 0
    # RAVDESS-style target set (Actor_NN/MM-VV-EE-II-SS-RR-AA.mp4); actors are numbered 1..N.
    ravdess_actors: int = Field(24, ge=1, le=24)
    # CREMA-D-style set used by stage 2 (hybrid intermediate fine-tuning); 0 disables it.
    cremad_actors: int = Field(12, ge=0, le=91)
    # Which of RAVDESS's 8 emotions to generate (01 neutral .. 08 surprised).
    emotions: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
    statements: tuple[int, ...] = (1,)
    repetitions: tuple[int, ...] = (1,)
    intensities: tuple[int, ...] = (1,)
    duration_s: float = Field(3.0, gt=0.5, le=20.0)
    fps: float = Field(25.0, gt=1.0, le=120.0)
    frame_size: int = Field(256, ge=96, le=1080)
    sample_rate: int = Field(48000, ge=8000, le=96000)

    @field_validator("emotions")
    @classmethod
    def _emotions_known(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        bad = [e for e in v if not 1 <= e <= 8]
        if bad or not v:
            raise ValueError(f"emotions must be RAVDESS codes 1..8, got {list(v)}")
        return v


class DatasetSpec(Section):
    """One dataset of the pipeline: which adapter reads its raw layout and what role it plays."""

    name: str = Field(pattern=r"^[a-z0-9_\-]+$")
    adapter: str  # a registered adapter name, e.g. ravdess, cremad, mafw, voxceleb2, folder
    raw_dir: str  # relative to the project root (or absolute)
    # pretrain: unlabelled corpus for stage 1; intermediate: stage-2 mixture member; target: stage 3.
    roles: tuple[Literal["pretrain", "intermediate", "target"], ...] = ("pretrain",)
    options: dict[str, str | int | float | bool] = Field(default_factory=dict)


class FaceConfig(Section):
    """Face detection, tracking and cropping (``avf data faces``)."""

    backend: Literal["mediapipe", "opencv"] = "mediapipe"
    detector_model: str = "models/assets/face_detection_short_range.tflite"
    landmark_model: str = "models/assets/face_landmark.tflite"
    min_score: float = Field(0.5, gt=0.0, lt=1.0)
    detect_every: int = Field(5, ge=1)  # run the detector on every n-th frame, track in between
    smoothing: float = Field(0.6, ge=0.0, lt=1.0)  # exponential smoothing of the box between frames
    margin: float = Field(0.25, ge=0.0, le=2.0)  # extra border around the detected box, per side
    size: int = Field(160, ge=32, le=512)  # output square size in pixels
    align: bool = False  # similarity-align with landmarks (roll correction) instead of a plain crop
    min_coverage: float = Field(0.5, ge=0.0, le=1.0)  # share of frames with a face to keep a clip
    max_side: int = Field(640, ge=128)  # frames are downscaled to this longest side before detection
    jpeg_quality: int = Field(90, ge=50, le=100)


class AudioConfig(Section):
    """Audio extraction, segmentation and Kaldi fbank features (``avf data audio``)."""

    sample_rate: Literal[16000] = 16000
    num_mel_bins: int = Field(128, ge=16, le=256)
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    target_frames: int = Field(256, ge=16)
    norm_mean: float = -4.2677393
    norm_std: float = 4.5689974  # AudioSet std; features are divided by 2 * norm_std (AST style)
    silence_dbfs: float = -60.0  # a clip whose RMS is below this is flagged as silent
    # What to do with a clip that has no audio track or only silence: keep it with silent audio, or drop it.
    missing_policy: Literal["fill", "drop"] = "fill"


class ClipConfig(Section):
    """Temporal sampling of model inputs (spec section 2)."""

    num_frames: int = Field(16, ge=2)
    sampling_rate: int = Field(4, ge=1)  # take every n-th frame of the face clip
    image_size: int = Field(160, ge=32)
    test_views: int = Field(2, ge=1)  # temporal views averaged at test time


class SplitConfig(Section):
    """Which fold of the target dataset to train and test on, and how validation is carved out."""

    fold: int = Field(1, ge=1)
    # Validation subjects are drawn from the training subjects of the fold (honest model selection).
    val_subjects: int = Field(1, ge=0)
    seed: int = 0


class ShardConfig(Section):
    """WebDataset shard writing (``avf data shards``)."""

    max_shard_mb: float = Field(256.0, gt=0)
    max_shard_count: int = Field(1000, ge=1)
    fbank_at_shard_time: bool = True


class DataConfig(Section):
    """Everything about turning raw videos into training shards."""

    synth: SynthConfig = SynthConfig()
    datasets: tuple[DatasetSpec, ...] = ()
    target: str = "ravdess"  # name of the dataset stage 3 fine-tunes and evaluates on
    face: FaceConfig = FaceConfig()
    audio: AudioConfig = AudioConfig()
    clip: ClipConfig = ClipConfig()
    split: SplitConfig = SplitConfig()
    shards: ShardConfig = ShardConfig()
    workers: int = Field(2, ge=1)  # processes for per-clip preprocessing
    max_fail_frac: float = Field(0.2, ge=0.0, le=1.0)  # a stage exits non-zero above this failure share

    @model_validator(mode="after")
    def _names_unique(self) -> DataConfig:
        names = [d.name for d in self.datasets]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"data.datasets: duplicate dataset names {dup}")
        if self.datasets and self.target not in names:
            raise ValueError(f"data.target {self.target!r} is not one of data.datasets {names}")
        return self

    def dataset(self, name: str) -> DatasetSpec:
        for d in self.datasets:
            if d.name == name:
                return d
        raise KeyError(f"unknown dataset {name!r}; params.yaml data.datasets has {[d.name for d in self.datasets]}")
