"""MAFW: 11-class single-expression and 43-class compound sets, 5 official (clip-level) folds.

Layout: ``data/clips/NNNNN.mp4`` (5-digit ids), ``data/frames/NNNNN/`` (frames), optional
``data/audio_16k/NNNNN.wav`` (HiCMAE's 16 kHz extraction) and the split folder
``<split dir>/{single,compound}/{no_caption,with_caption}/set_{1..5}/{train,test}.txt`` with lines
``00025.mp4 anger``. The split folder is named "Train & Test Set" (release / HiCMAE), "Train_Test_Set"
(AVF-MAE) or "split" (MAE-DFER); all are accepted. A clip's test fold is the set whose ``test.txt``
lists it, its label the one written there.

Options:

- ``classes``: ``11`` (single set, default; anger 0 ... disappointment 10) or ``43`` (compound set).
  The 43-class index order is not published: it is the sorted set of label strings found in the
  compound split files, filled into ``classes`` by :meth:`scan` (a count other than 43 is reported).
- ``caption``: ``no_caption`` (default) or ``with_caption`` split files.
- ``video``: ``clips`` (default, the mp4 with its audio track) or ``frames`` (``data/frames/<id>/``,
  ``extra['frames'] = True``; the face/video stage must accept a frame folder).
- ``require_audio`` (default true): the official audio-visual protocol, HiCMAE's AV lists (9,156
  single-set clips, where MAE-DFER's visual lists have 9,172): a clip without audio is reported and
  skipped. With ``data/audio_16k/`` that is a clip without a wav there; without it, the 16 single-set
  clips whose mp4 has no audio stream (:data:`NO_AUDIO_STREAM`, the difference between the two
  official lists). False keeps them with ``audio_path`` None and ``extra['no_audio'] = True`` (the
  audio stage fills silence and flags them), as the visual-only lists do.

Audio otherwise comes from ``data/audio_16k/<id>.wav`` when that folder exists, else from
``data/clips/<id>.mp4`` (also for ``video: frames``, whose frames are then timed by that audio).
The compound set has no official audio-visual list; clips outside :data:`NO_AUDIO_STREAM` without an
audio stream are flagged by the audio stage.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from avf.data.adapters.base import Adapter, RawClip, ScanResult, register_adapter
from avf.data.adapters.common import ScanBuilder, finish_scan, opt_bool, opt_choice, require_dir

SINGLE = (
    "anger",
    "disgust",
    "fear",
    "happiness",
    "neutral",
    "sadness",
    "surprise",
    "contempt",
    "anxiety",
    "helplessness",
    "disappointment",
)
SPLIT_DIRS = ("Train & Test Set", "Train_Test_Set", "split")
# Single-set clips whose mp4 has no audio stream: in MAE-DFER's visual lists (sunlicai/MAE-DFER
# saved/data/mafw/single), not in HiCMAE's audio-visual ones (sunlicai/HiCMAE saved/data/mafw/audio_visual).
NO_AUDIO_STREAM = frozenset(
    [
        "00903",
        "03414",
        "03440",
        "03721",
        "03724",
        "03726",
        "03727",
        "03728",
        "03730",
        "03732",
        "03810",
        "03855",
        "03927",
        "03928",
        "03931",
        "09529",
    ]
)
_SET = re.compile(r"^set_(\d+)$")
_CLIP = re.compile(r"^(\d{5})(?:\.mp4)?$")


@register_adapter("mafw")
class MafwAdapter(Adapter):
    task = "classification"
    classes = SINGLE
    num_folds = 5
    metrics = ("uar", "war")

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.variant = int(opt_choice(options, "classes", "11", ("11", "43")))
        self.caption = opt_choice(options, "caption", "no_caption", ("no_caption", "with_caption"))
        self.video = opt_choice(options, "video", "clips", ("clips", "frames"))
        self.require_audio = opt_bool(options, "require_audio", True)
        if self.variant == 43:
            self.classes = ()  # type: ignore[misc]  # filled by scan from the compound split files

    def _split_root(self, root: Path) -> Path:
        for name in SPLIT_DIRS:
            folder = root / name / ("single" if self.variant == 11 else "compound") / self.caption
            if folder.is_dir():
                return folder
        raise FileNotFoundError(
            f"MAFW root {root} has no split folder: expected one of {list(SPLIT_DIRS)} containing "
            f"{'single' if self.variant == 11 else 'compound'}/{self.caption}/set_K/test.txt"
        )

    def _read_sets(self, split_root: Path, out: ScanBuilder) -> tuple[dict[str, tuple[int, str]], set[str]]:
        """clip id -> (test fold, label name); also every label seen in any list of this set."""
        tests: dict[str, tuple[int, str]] = {}
        seen_labels: set[str] = set()
        listed: dict[str, Path] = {}
        sets = sorted((int(m.group(1)), p) for p in split_root.iterdir() if (m := _SET.match(p.name)))
        if not sets:
            raise FileNotFoundError(f"no set_K folders in {split_root}")
        for fold, folder in sets:
            for split in ("train", "test"):
                path = folder / f"{split}.txt"
                if not path.is_file():
                    out.problem(path, "split file missing")
                    continue
                for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                    fields = line.split()
                    if not fields:
                        continue
                    match = _CLIP.match(fields[0])
                    if len(fields) < 2 or not match:
                        out.problem(f"{path}:{number}", f"malformed line {line!r} (expected 'NNNNN.mp4 label')")
                        continue
                    clip_id, label = match.group(1), fields[1]
                    seen_labels.add(label)
                    listed.setdefault(clip_id, path)
                    if split == "test":
                        if clip_id in tests and tests[clip_id][0] != fold:
                            out.problem(f"{path}:{number}", f"{clip_id} is also a test clip of set_{tests[clip_id][0]}")
                            continue
                        tests[clip_id] = (fold, label)
        for clip_id in sorted(set(listed) - set(tests)):
            out.problem(listed[clip_id], f"{clip_id} is never in a test list; skipped")
        return tests, seen_labels

    def scan(self, root: Path) -> ScanResult:
        root = require_dir(root)
        split_root = self._split_root(root)
        out = ScanBuilder(self.name)
        tests, labels = self._read_sets(split_root, out)
        if self.variant == 43:
            self.classes = tuple(sorted(labels))  # type: ignore[misc]
            if len(self.classes) != 43:
                out.problem(split_root, f"compound split files name {len(self.classes)} classes, expected 43")
        audio_dir = root / "data" / "audio_16k"
        for clip_id, (fold, label) in sorted(tests.items()):
            if label not in self.classes:
                out.problem(root / "data" / "clips" / f"{clip_id}.mp4", f"unknown label {label!r}")
                continue
            if self.video == "clips":
                video = root / "data" / "clips" / f"{clip_id}.mp4"
                found = video.is_file()
            else:
                video = root / "data" / "frames" / clip_id
                found = video.is_dir()
            if not found:
                out.problem(video, f"listed in set_{fold}/test.txt but missing on disk")
                continue
            extra: dict[str, Any] = {"frames": True} if self.video == "frames" else {}
            audio: Path | None = None
            if audio_dir.is_dir():
                wav = audio_dir / f"{clip_id}.wav"
                if wav.is_file():
                    audio = wav
                elif self.require_audio:
                    out.problem(video, f"no audio: data/audio_16k/{clip_id}.wav missing (no audio stream); skipped")
                    continue
                else:
                    extra["no_audio"] = True
            elif clip_id in NO_AUDIO_STREAM:
                if self.require_audio:
                    out.problem(video, "no audio stream in this MAFW clip (outside the audio-visual protocol); skipped")
                    continue
                extra["no_audio"] = True
            elif self.video == "frames":
                mp4 = root / "data" / "clips" / f"{clip_id}.mp4"
                audio = mp4 if mp4.is_file() else None
                if audio is None:
                    extra["no_audio"] = True
            out.add(
                RawClip(
                    clip_id=clip_id,
                    dataset=self.name,
                    subject=clip_id,  # clips are not grouped by person in MAFW
                    video_path=video,
                    audio_path=audio,
                    label=self.classes.index(label),
                    label_name=label,
                    test_fold=fold,
                    extra=extra,
                )
            )
        return finish_scan(self, out, root)
