"""DFEW: 7 basic emotions, 5 official folds from ``EmoLabel_DataSplit``.

Layout: ``Clip/original/XXXXX.mp4`` (5-digit ids, with audio), ``Clip/clip_224x224/XXXXX/`` (face-aligned
frames ``XXXXX_YYYYY.jpg``), ``Clip/clip_224x224_16f/XXXXX/`` (16 interpolated frames),
``EmoLabel_DataSplit/{train,test}(single-labeled)/set_{1..5}.csv`` (header ``video_name,label``, ids
as integers, labels 1..7; the test folder is also accepted as ``test(single_labeled)``, the spelling of
the release's README, and the files as ``test_set_{1..5}.csv``), optional ``Annotation/annotation.xlsx``
(or a CSV export) with ``vote_happy ... vote_fear, clip_name, annotation``.

Labels: 1 Happy, 2 Sad, 3 Neutral, 4 Angry, 5 Surprise, 6 Disgust, 7 Fear -> index = label - 1. A
clip's test fold is the set whose test CSV lists it; validation = test in the official protocol.

A listed clip without a ``clip_224x224/<id>/`` folder is one of the face-undetected clips the
official 11,697-clip protocol drops: it is reported and skipped whatever ``video`` is (only checked
when ``clip_224x224/`` exists). A listed clip whose annotation is 0 (not single-labelled) is reported.

Options: ``video``: ``original`` (default; the mp4 with its own audio), ``clip_224x224`` or
``clip_224x224_16f`` (frame folders, ``extra['frames'] = True``; audio then comes from
``Clip/original/<id>.mp4``). A ``Clip/audio_16k/<id>.wav`` tree, when present, is preferred for audio
(the source of HiCMAE's DFEW audio is unpublished; 16 kHz from the original clip is the natural one).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from avf.data.adapters.base import Adapter, RawClip, ScanResult, register_adapter
from avf.data.adapters.common import ScanBuilder, finish_scan, opt_choice, require_dir
from avf.data.adapters.tables import read_records

EMOTIONS = ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear")
VOTES = tuple(f"vote_{e}" for e in EMOTIONS)
_SET = re.compile(r"^(?:test_)?set_(\d+)\.csv$")
TEST_DIRS = ("test(single-labeled)", "test(single_labeled)")


def clip_name(raw: str) -> str | None:
    """Zero-padded 5-digit clip name from a split CSV's integer id (``'1'`` -> ``'00001'``)."""
    text = raw.strip()
    try:
        number = int(float(text))
    except ValueError:
        return None
    return f"{number:05d}" if 0 < number < 100000 else None


@register_adapter("dfew")
class DfewAdapter(Adapter):
    task = "classification"
    classes = EMOTIONS
    num_folds = 5
    metrics = ("uar", "war")

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.video = opt_choice(options, "video", "original", ("original", "clip_224x224", "clip_224x224_16f"))

    @staticmethod
    def _annotations(root: Path, out: ScanBuilder) -> dict[str, dict[str, str]]:
        folder = root / "Annotation"
        for name in ("annotation.xlsx", "annotation.csv"):
            path = folder / name
            if path.is_file():
                try:
                    rows = read_records(path, ("clip_name", "annotation"))
                except ValueError as exc:
                    out.problem(path, str(exc))
                    return {}
                return {n: row for row in rows if (n := clip_name(row.get("clipname", "")))}
        return {}

    @staticmethod
    def _test_sets(root: Path) -> list[tuple[int, Path]]:
        """(fold, test CSV) pairs from the first test folder spelling that holds set files."""
        split = root / "EmoLabel_DataSplit"
        for name in TEST_DIRS:
            folder = split / name
            if folder.is_dir():
                sets = sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := _SET.match(p.name)))
                if sets:
                    return sets
        looked = ", ".join(f"{split / d}/{{set_K,test_set_K}}.csv" for d in TEST_DIRS)
        raise FileNotFoundError(f"DFEW root {root}: no test split files; looked for {looked}")

    def scan(self, root: Path) -> ScanResult:
        root = require_dir(root)
        sets = self._test_sets(root)
        out = ScanBuilder(self.name)
        votes = self._annotations(root, out)
        faces = root / "Clip" / "clip_224x224"
        seen: dict[str, int] = {}
        for fold, path in sets:
            try:
                rows = read_records(path, ("video_name", "label"))
            except ValueError as exc:
                out.problem(path, str(exc))
                continue
            for row in rows:
                name, raw_label = clip_name(row["videoname"]), row["label"].strip()
                label = int(raw_label) if raw_label.isdigit() else 0
                if name is None or not 1 <= label <= 7:
                    out.problem(path, f"bad row video_name={row['videoname']!r} label={raw_label!r}")
                    continue
                if name in seen:
                    out.problem(path, f"{name} is also a test clip of set_{seen[name]}; skipped")
                    continue
                seen[name] = fold
                self._add(root, out, name, label - 1, fold, faces, votes.get(name))
        return finish_scan(self, out, root)

    def _add(
        self,
        root: Path,
        out: ScanBuilder,
        name: str,
        label: int,
        fold: int,
        faces: Path,
        annotation: dict[str, str] | None,
    ) -> None:
        original = root / "Clip" / "original" / f"{name}.mp4"
        if faces.is_dir() and not (faces / name).is_dir():
            out.problem(original, "no clip_224x224 face folder (face undetected in the release); skipped")
            return
        if annotation is not None and annotation.get("annotation", "").strip() in ("0", ""):
            out.problem(original, "annotation.xlsx marks this clip as not single-labelled (annotation 0)")
            return
        extra: dict[str, Any] = {}
        if annotation is not None:
            extra["votes"] = tuple(int(float(annotation.get(v.replace("_", ""), "0") or 0)) for v in VOTES)
        if self.video == "original":
            video = original
            if not video.is_file():
                out.problem(video, "listed in the split CSVs but missing on disk")
                return
        else:
            video = root / "Clip" / self.video / name
            if not video.is_dir():
                out.problem(video, "listed in the split CSVs but the frame folder is missing")
                return
            extra["frames"] = True
        wav = root / "Clip" / "audio_16k" / f"{name}.wav"
        audio: Path | None = wav if wav.is_file() else None
        if audio is None and self.video != "original":
            if not original.is_file():
                out.problem(video, f"no audio source: neither {wav.name} nor Clip/original/{name}.mp4")
                return
            audio = original
        out.add(
            RawClip(
                clip_id=name,
                dataset=self.name,
                subject=name,
                video_path=video,
                audio_path=audio,
                label=label,
                label_name=EMOTIONS[label],
                test_fold=fold,
                extra=extra,
            )
        )
