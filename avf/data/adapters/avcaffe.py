"""AVCAffe: arousal or valence as 5-class classification, official train/val participant split.

Layout: ``videos/shorter_segments/aiimNNN/task_K/aiimNNN_task_K_<n>.avi`` (~6 s sub-clips),
``ground_truths/{arousal,valence}.txt`` (lines ``aiimNNN_task_K, <value>``), ``info/train.txt`` and
``info/val.txt`` (participant ids), ``info/no_audio_files.txt`` (clip file names without audio).

Option ``target``: ``arousal`` (default; Excited 0, Wide-awake 1, Neutral 2, Dull 3, Calm 4) or
``valence`` (Pleasant 0, Pleased 1, Neutral 2, Unsatisfied 3, Unpleasant 4), the official loader's order.

Split: ``official_split`` is ``train`` for training participants and ``test`` for the official
validation participants, which HiCMAE / AVF-MAE evaluate on (``extra['official_name'] = 'val'``). Without
``info/val.txt`` the documented 20 validation participants are used. A participant in neither list
(when ``info/train.txt`` exists) is reported.

Evaluation is per video: ``extra['aggregate_key']`` = ``aiimNNN_task_K`` (the first three ``_`` fields of
the clip name) groups a video's sub-clips. Clips in ``no_audio_files.txt``: option ``no_audio``
``keep`` (default; ``extra['no_audio'] = True``, the audio stage's silence policy decides) or ``drop``
(reported and skipped). Audio otherwise comes from the clip's own track.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from avf.data.adapters.base import Adapter, RawClip, ScanResult, register_adapter
from avf.data.adapters.common import ScanBuilder, finish_scan, opt_choice, require_dir

AROUSAL = ("Excited", "Wide-awake", "Neutral", "Dull", "Calm")
VALENCE = ("Pleasant", "Pleased", "Neutral", "Unsatisfied", "Unpleasant")
VAL_PARTICIPANTS = tuple(
    f"aiim{n:03d}" for n in (1, 2, 13, 14, 43, 44, 53, 54, 57, 58, 63, 64, 67, 68, 77, 78, 99, 100, 107, 108)
)
_CLIP = re.compile(r"^(aiim\d{3})_(task_\d)_(\d+)$")


def _lines(path: Path) -> list[str]:
    return [s for line in path.read_text(encoding="utf-8").splitlines() if (s := line.strip())]


def _norm(value: str) -> str:
    return value.strip().lower().replace(" ", "-").replace("_", "-")


@register_adapter("avcaffe")
class AvcaffeAdapter(Adapter):
    task = "classification"
    classes = AROUSAL
    num_folds = 0
    metrics = ("wf1", "uar", "war")

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.target = opt_choice(options, "target", "arousal", ("arousal", "valence"))
        self.classes = AROUSAL if self.target == "arousal" else VALENCE  # type: ignore[misc]
        self.no_audio = opt_choice(options, "no_audio", "keep", ("keep", "drop"))

    def _ground_truth(self, root: Path, out: ScanBuilder) -> dict[str, int]:
        path = root / "ground_truths" / f"{self.target}.txt"
        if not path.is_file():
            raise FileNotFoundError(f"AVCAffe root {root}: no ground_truths/{self.target}.txt")
        lookup = {_norm(c): i for i, c in enumerate(self.classes)}
        labels: dict[str, int] = {}
        for line in _lines(path):
            key, _, value = line.partition(",")
            index = lookup.get(_norm(value))
            if index is None:
                out.problem(path, f"unknown {self.target} value {value.strip()!r} for {key.strip()}")
                continue
            labels[key.strip()] = index
        return labels

    def scan(self, root: Path) -> ScanResult:
        root = require_dir(root)
        clips_root = root / "videos" / "shorter_segments"
        if not clips_root.is_dir():
            raise FileNotFoundError(f"AVCAffe root {root} has no videos/shorter_segments/ folder")
        out = ScanBuilder(self.name)
        labels = self._ground_truth(root, out)
        info = root / "info"
        val = set(_lines(info / "val.txt")) if (info / "val.txt").is_file() else set(VAL_PARTICIPANTS)
        train = set(_lines(info / "train.txt")) if (info / "train.txt").is_file() else None
        silent = set(_lines(info / "no_audio_files.txt")) if (info / "no_audio_files.txt").is_file() else set()
        for video in sorted(clips_root.glob("aiim*/task_*/*")):
            if video.suffix.lower() not in (".avi", ".mp4"):
                continue
            match = _CLIP.match(video.stem)
            if not match or match.group(1) != video.parts[-3] or match.group(2) != video.parts[-2]:
                out.problem(video, "clip name must be <participant>_<task>_<n> inside <participant>/<task>/")
                continue
            participant, task = match.group(1), match.group(2)
            key = f"{participant}_{task}"
            if key not in labels:
                out.problem(video, f"no {self.target} label for {key}")
                continue
            if participant in val:
                split = "test"
            elif train is None or participant in train:
                split = "train"
            else:
                out.problem(video, f"{participant} is in neither info/train.txt nor info/val.txt")
                continue
            extra: dict[str, Any] = {"aggregate_key": key, "official_name": "val" if split == "test" else "train"}
            if video.name in silent:
                if self.no_audio == "drop":
                    out.problem(video, "listed in info/no_audio_files.txt (no audio); dropped")
                    continue
                extra["no_audio"] = True
            label = labels[key]
            out.add(
                RawClip(
                    clip_id=video.stem,
                    dataset=self.name,
                    subject=participant,
                    video_path=video,
                    label=label,
                    label_name=self.classes[label],
                    official_split=split,
                    extra=extra,
                )
            )
        return finish_scan(self, out, root)
