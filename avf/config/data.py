"""``data`` section of ``params.yaml``: demo generator, datasets, face cropping, audio, splits, shards."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import Field, ValidationInfo, field_validator, model_validator

from avf.config.base import Section

CremadSentence = Literal["IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI"]
CremadEmotion = Literal["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"]

_Tup = TypeVar("_Tup", bound=tuple[object, ...])

# ``preset: large`` fills every size field that params.yaml leaves unset (explicit values still win):
# the full RAVDESS speech design (24 actors x 60 clips = 1,440) plus 24 CREMA-D actors x 82 clips (1,968).
SYNTH_LARGE: dict[str, object] = {
    "statements": (1, 2),
    "repetitions": (1, 2),
    "intensities": (1, 2),
    "cremad_actors": 24,
    "cremad_sentences": ("IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI"),
    "cremad_levels": ("LO", "MD", "HI"),
}


def _unique_nonempty(name: str, v: _Tup) -> _Tup:
    if not v or len(set(v)) != len(v):
        raise ValueError(f"{name} must be a non-empty list without repeats, got {list(v)}")
    return v


class SynthConfig(Section):
    """The embedded demo dataset (``avf data synth``): talking-face videos in real dataset layouts.

    Defaults (``preset: small``): 24 RAVDESS actors x 8 emotions (192 mp4) and 12 CREMA-D actors x 6
    emotions x 2 sentences (144 flv + wav), 336 clips of 3 s. ``preset: large`` gives 3,408 clips.
    """

    preset: Literal["small", "large"] = "small"
    seed: int = 0  # changes every identity, voice and per-clip draw
    # RAVDESS-style target set (Actor_NN/MM-VV-EE-II-SS-RR-AA.mp4); actors are numbered 1..N, odd = male.
    ravdess_actors: int = Field(24, ge=1, le=24)
    # Which of RAVDESS's 8 emotions to generate (01 neutral .. 08 surprised).
    emotions: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
    statements: tuple[Literal[1, 2], ...] = (1,)
    repetitions: tuple[Literal[1, 2], ...] = (1,)
    intensities: tuple[Literal[1, 2], ...] = (1,)  # 02 = strong (1.5x cues); neutral has none, as in RAVDESS
    # CREMA-D-style set used by stage 2 (hybrid intermediate fine-tuning); ids spread over 1001..1091, 0: none.
    cremad_actors: int = Field(12, ge=0, le=91)
    cremad_sentences: tuple[CremadSentence, ...] = ("DFA", "IEO")
    cremad_emotions: tuple[CremadEmotion, ...] = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")
    # Levels of the IEO sentence (non-neutral emotions only, as in CREMA-D); every other clip is XX.
    cremad_levels: tuple[Literal["LO", "MD", "HI"], ...] = ("MD",)
    duration_s: float = Field(3.0, ge=1.5, le=20.0)
    fps: float = Field(25.0, gt=1.0, le=120.0)
    frame_size: int = Field(256, ge=96, le=1080)
    sample_rate: int = Field(48000, ge=16000, le=96000)  # mp4/flv audio; CREMA-D wavs are always 16 kHz
    crf: int = Field(23, ge=0, le=51)  # x264 quality
    # Multiplies every clip's cue strength (distance from neutral) in face and voice; 1.0 = the cue tables.
    cue_scale: float = Field(1.0, gt=0.0, le=2.5)

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("preset") == "large":
            return {**SYNTH_LARGE, **data}
        return data

    @field_validator("emotions")
    @classmethod
    def _emotions_known(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        bad = [e for e in v if not 1 <= e <= 8]
        if bad or not v:
            raise ValueError(f"emotions must be RAVDESS codes 1..8, got {list(v)}")
        return _unique_nonempty("emotions", v)

    @field_validator("statements", "repetitions", "intensities", "cremad_sentences", "cremad_emotions", "cremad_levels")
    @classmethod
    def _lists_ok(cls, v: tuple[object, ...], info: ValidationInfo) -> tuple[object, ...]:
        return _unique_nonempty(info.field_name or "value", v)


class DatasetSpec(Section):
    """One dataset of the pipeline: which adapter reads its raw layout and what role it plays.

    In ``params.yaml`` datasets are a mapping keyed by name (DVC names the per-dataset stages after
    the keys, e.g. ``faces@ravdess``); ``name`` is filled in from the key.
    """

    name: str = Field(pattern=r"^[a-z0-9_\-]+$")
    adapter: str  # a registered adapter name, e.g. ravdess, cremad, mafw, voxceleb2, folder
    raw_dir: str  # relative to the project root (or absolute)
    # pretrain: unlabelled corpus for stage 1; intermediate: stage-2 mixture member; target: stage 3.
    roles: tuple[Literal["pretrain", "intermediate", "target"], ...] = ("pretrain",)
    options: dict[str, str | int | float | bool] = Field(default_factory=dict)


class FaceConfig(Section):
    """Face detection, tracking and cropping (``avf data faces``; see ``avf.data.face``)."""

    backend: Literal["mediapipe"] = "mediapipe"  # the detector behind ``avf.data.face.FaceDetector``
    detector_model: str = "models/assets/face_detection_short_range.tflite"
    landmark_model: str = "models/assets/face_landmark.tflite"  # used only when ``align`` is true
    min_score: float = Field(0.5, gt=0.0, lt=1.0)
    detect_every: int = Field(5, ge=1)  # run the detector on every n-th frame, track in between
    # Zero-phase exponential smoothing of the track: detection k' contributes with weight smoothing**|k-k'|
    # (in detection steps) to the box at detection k; 0 disables smoothing.
    smoothing: float = Field(0.6, ge=0.0, lt=1.0)
    margin: float = Field(0.25, ge=0.0, le=2.0)  # extra border around the detected box, per side
    size: int = Field(160, ge=32, le=512)  # output square size in pixels
    align: bool = False  # similarity-align with landmarks (roll correction) instead of a plain crop
    min_coverage: float = Field(0.5, ge=0.0, le=1.0)  # share of frames with a face to keep a clip
    min_frames: int = Field(8, ge=1)  # fewer decodable frames than this is an error (e.g. a still image)
    max_side: int = Field(640, ge=128)  # frames are downscaled to this longest side before detection
    # Once a face is found, look for it first in a square region 3x its size around the last box
    # (bigger in the detector's 128-px input: steadier boxes), falling back to the whole frame.
    track_roi: bool = True
    jpeg_quality: int = Field(90, ge=50, le=100)  # the face clip is stored as one JPEG per frame


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
    """WebDataset shard writing (``avf data shards``; see ``avf.data.shards``)."""

    max_shard_mb: float = Field(256.0, gt=0)  # a shard is closed before it would pass this size
    max_shard_count: int = Field(1000, ge=1)  # ... or this many samples
    # Store the full-clip Kaldi fbank (float16) and slice windows in the loader (measured faster and
    # smaller than storing the waveform; see ``avf.data.audio``); false stores the int16 waveform.
    fbank_at_shard_time: bool = True
    seed: int = 0  # samples are written in a seeded shuffled order (mixes subjects within shards)


class AugmentConfig(Section):
    """Train-time augmentation (spec section 2.4; see ``avf.data.transforms``)."""

    # Fine-tuning video: the same random-resized crop, flip and RandAugment ops for every frame.
    rrc_scale: tuple[float, float] = (0.08, 1.0)  # official value; its docstring intended 0.8 for faces
    rrc_ratio: tuple[float, float] = (0.75, 4.0 / 3.0)
    hflip: float = Field(0.5, ge=0.0, le=1.0)
    rand_augment: str = "rand-m7-n4-mstd0.5-inc1"  # a timm RandAugment config string; "" disables it
    erase_prob: float = Field(0.25, ge=0.0, le=1.0)  # one random-pixel box per clip (same for all frames)
    # Audio: train-only random gain x (Beta(g, g) + 0.5), applied as + 2 ln(gain) to the log-mel fbank.
    audio_gain: bool = True
    gain_beta: float = Field(10.0, gt=0.0)
    # Pretraining video: VideoMAE's multi-scale crop (fixed corner/centre offsets), then resize.
    pretrain_scales: tuple[float, ...] = (1.0, 0.875, 0.75, 0.66)
    pretrain_max_distort: int = Field(1, ge=0)

    @field_validator("rrc_scale", "rrc_ratio")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] <= v[1]:
            raise ValueError(f"expected 0 < low <= high, got {list(v)}")
        return v

    @field_validator("pretrain_scales")
    @classmethod
    def _scales(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v or any(not 0 < s <= 1 for s in v):
            raise ValueError(f"pretrain_scales must be non-empty values in (0, 1], got {list(v)}")
        return v

    @field_validator("rand_augment")
    @classmethod
    def _rand_augment(cls, v: str) -> str:
        if v and not v.startswith("rand"):
            raise ValueError(f"rand_augment must be a timm 'rand-...' config string or empty, got {v!r}")
        return v


class DataConfig(Section):
    """Everything about turning raw videos into training shards."""

    synth: SynthConfig = SynthConfig()
    datasets: dict[str, DatasetSpec] = Field(default_factory=dict)  # keyed by dataset name
    target: str = "ravdess"  # name of the dataset stage 3 fine-tunes and evaluates on
    face: FaceConfig = FaceConfig()
    audio: AudioConfig = AudioConfig()
    clip: ClipConfig = ClipConfig()
    split: SplitConfig = SplitConfig()
    shards: ShardConfig = ShardConfig()
    augment: AugmentConfig = AugmentConfig()
    workers: int = Field(2, ge=1)  # processes for per-clip preprocessing
    # Where per-clip work runs: a local process pool, or Ray tasks (``ray.address``) for large corpora.
    executor: Literal["process", "ray"] = "process"
    max_fail_frac: float = Field(0.2, ge=0.0, le=1.0)  # a stage exits non-zero above this failure share
    # Where training batches are decoded: ``loader`` (DataLoader workers beside each trainer) or ``ray`` (Ray
    # tasks of one CPU anywhere in the cluster, CPU-only nodes included; ``avf.data.remote_batches``).
    ingest: Literal["loader", "ray"] = "loader"
    ingest_tasks: int = Field(8, ge=1)  # ray: micro-batches each trainer keeps decoding at once

    @model_validator(mode="before")
    @classmethod
    def _name_from_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("datasets"), dict):
            fixed = {}
            for key, spec in data["datasets"].items():
                if isinstance(spec, dict):
                    if spec.get("name", key) != key:
                        raise ValueError(f"data.datasets.{key}.name is {spec['name']!r}; it must equal its key")
                    spec = {**spec, "name": key}
                fixed[key] = spec
            data = {**data, "datasets": fixed}
        return data

    @model_validator(mode="after")
    def _target_known(self) -> DataConfig:
        if self.datasets and self.target not in self.datasets:
            raise ValueError(f"data.target {self.target!r} is not one of data.datasets {list(self.datasets)}")
        return self

    @property
    def specs(self) -> list[DatasetSpec]:
        """The datasets in ``params.yaml`` order."""
        return list(self.datasets.values())

    def dataset(self, name: str) -> DatasetSpec:
        if name in self.datasets:
            return self.datasets[name]
        known = list(self.datasets)
        raise KeyError(f"unknown dataset {name!r}; params.yaml data.datasets has {known}")
