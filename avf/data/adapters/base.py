"""The dataset-adapter interface: turn a real release's on-disk layout into a list of clips with folds.

An adapter knows one dataset's file names, annotation files, label map and official folds. It does no
media processing: ``scan(root)`` only lists clips (and the problems it found, e.g. an unknown label or a
missing audio file), so it is fast and testable on tiny generated fixtures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

Task = Literal["classification", "regression", "none"]


@dataclass(frozen=True)
class RawClip:
    """One usable sample of a dataset, before any processing.

    ``extra`` conventions (set by the adapters; the face/video and audio stages must honour them): ``frames``
    (True: ``video_path`` is a folder of frame images, not a video file; CAS(ME)^3 names them 1.jpg, 2.jpg,
    10.jpg, so sort them naturally, not lexicographically), ``no_audio`` (True: the clip has no audio at all; the
    audio stage applies its silence policy), ``start``/``end`` (seconds) and ``crop`` (``left``/``right`` half
    of the frame) for utterances cut from a longer video, ``onset``/``apex``/``offset`` (frame numbers of a
    micro-expression), ``aggregate_key`` (sub-clips sharing it are evaluated as one video).
    ``audio_path`` may name any media file with an audio stream (wav, m4a, or another clip's video).
    """

    clip_id: str  # unique within the dataset; letters, digits, '-' and '_' only (safe for files and shard keys)
    dataset: str
    subject: str  # speaker / actor / subject id (subject-independent folds and validation carving use it)
    video_path: Path
    audio_path: Path | None = None  # a separate audio file; None: use the video's own audio track
    label: int | None = None  # class index (classification)
    label_name: str | None = None
    targets: tuple[float, ...] | None = None  # regression targets, in the order of ``Adapter.target_names``
    test_fold: int | None = None  # the fold (1-based) in which this clip is a test clip; LOSO: subject index
    official_split: str | None = None  # "train" / "val" / "test" for datasets with one fixed split
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Problem:
    """A file the adapter could not use, and why (goes to ``reports/<stage>/failures.csv``)."""

    path: str
    reason: str


@dataclass
class ScanResult:
    clips: list[RawClip]
    problems: list[Problem] = field(default_factory=list)


class Adapter:
    """Base class; subclasses set the class attributes and implement :meth:`scan`."""

    name: ClassVar[str]
    task: ClassVar[Task] = "classification"
    classes: ClassVar[tuple[str, ...]] = ()
    target_names: ClassVar[tuple[str, ...]] = ()
    num_folds: ClassVar[int] = 0  # 0: fixed official split (or unlabelled corpus)
    metrics: ClassVar[tuple[str, ...]] = ("uar", "war")

    def __init__(self, **options: Any) -> None:
        self.options = options

    def scan(self, root: Path) -> ScanResult:
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def list_clip_id(self, frame_dir: str, audio_path: str | None = None) -> str:
        """The clip id of one line of a HiCMAE / AVF-MAE list file (``<frame dir> <wav> <label>``).

        Default: the frame folder's base name, without OpenFace's ``_aligned`` suffix. Adapters whose
        clip ids differ from the list files' folder names override this.
        """
        name = frame_dir.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
        return name.removesuffix("_aligned")


_REGISTRY: dict[str, type[Adapter]] = {}


def register_adapter(name: str) -> Callable[[type[Adapter]], type[Adapter]]:
    def deco(cls: type[Adapter]) -> type[Adapter]:
        if name in _REGISTRY:
            raise ValueError(f"adapter {name!r} registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def get_adapter(name: str, **options: Any) -> Adapter:
    """A new adapter of the registered ``name``, configured by ``options``; ``KeyError`` for an unknown name.

    The built-in adapters are always registered here: importing this module first runs the package's
    ``__init__``, which imports every adapter module.
    """
    try:
        return _REGISTRY[name](**options)
    except KeyError:
        raise KeyError(f"unknown dataset adapter {name!r}; known: {sorted(_REGISTRY)}") from None


def list_adapters() -> list[str]:
    return sorted(_REGISTRY)
