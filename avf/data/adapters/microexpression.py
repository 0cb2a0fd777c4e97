"""Micro-expression sets: SAMM, CASME II, SMIC, CAS(ME)^3, MMEW (leave-one-subject-out, UF1/UAR).

These releases are folders of frames, not videos: ``video_path`` is a frame folder and
``extra['frames'] = True`` (the face/video stage must accept a frame folder); they have no audio, so
``audio_path`` is None and ``extra['no_audio'] = True`` (the audio stage fills silence or drops, per its
policy). ``extra['onset'|'apex'|'offset']`` are the annotated frame numbers (None where unknown or
``/``): the onset-to-offset span is the micro-expression. ``extra['fps']`` is the camera's frame rate as
each release's paper gives it (CASME II and SAMM 200, SMIC HS 100 and VIS/NIR 25, CAS(ME)^3 30, MMEW
90), so frame times are real seconds.

Protocol (HTNet / MEGC2019, the comparison AVF-MAE++ reports): the composite 3-class labels
negative 0 (sadness, disgust, contempt, fear, anger, and CASME II's repression), positive 1 (happiness),
surprise 2; any other emotion (others, tense, ...) is outside the protocol and skipped silently. Folds are
leave-one-subject-out: subjects are named with a dataset prefix (``casme2_sub01``, ``samm_006``,
``smic_s3``), sorted naturally, and ``test_fold`` is the 1-based subject index among the subjects with at
least one usable sample; ``num_folds`` is set to that count by :meth:`scan`. Metrics are meant to be
computed on the predictions pooled over all folds. None of these sets has a published split list
(HiCMAE, MAE-DFER and AVF-MAE publish none for micro-expressions): the folds are the subjects.
CAS(ME)^3 also offers ``classes: 4`` (+ others) and ``7`` (anger, disgust, fear, happy, sad, surprise,
others).

Annotation sheets are read from ``.xlsx`` (no openpyxl needed) or a CSV export; the header row is
found by its column names, so title rows above it are fine. Option ``annotations`` overrides the
sheet path (relative to the root).

Layouts (from public loaders; the releases are licence-gated, so names are partly assumed):

- CASME II: ``CASME2_RAW_selected/subNN/<Filename>/imgK.jpg`` (option ``frames: raw``) or
  ``Cropped/subNN/<Filename>/reg_imgK.jpg`` (``frames: cropped``); sheet ``CASME2-coding-*.xlsx``
  (Subject, Filename, OnsetFrame, ApexFrame, OffsetFrame, Estimated Emotion).
- SAMM: ``<subject>/<Filename>/<subject>_NNNNN.jpg``; sheet ``SAMM_Micro_FACS_Codes_v2.xlsx`` (Subject,
  Filename, Onset Frame, Apex Frame, Offset Frame, Estimated Emotion).
- SMIC: ``<camera>/sN/micro/{positive,negative,surprise}/<sample>/`` (option ``camera``: HS default,
  VIS, NIR); the label is the folder name; no onset/offset (the clips are the micro segments).
- CAS(ME)^3: ``part_A/<Subject>/<Filename>/color/N.jpg`` (or without ``color/``); sheet
  ``annotation/*part_A*ME*.xlsx`` (Subject, Filename, Onset, Apex, Offset, emotion). Several samples
  share a source video, so the clip id includes the onset frame.
- MMEW: ``Micro_Expression/<emotion>/<sample>/*.jpg``; the label is the folder name; the subject (and
  OnsetFrame/ApexFrame/OffsetFrame when present) come from an optional sheet at the root (``*.xlsx``/``*.csv``
  with Subject and Filename columns), else the subject is the sample name's prefix before the first ``_``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from avf.data.adapters.base import Adapter, RawClip, ScanResult, register_adapter
from avf.data.adapters.common import (
    ScanBuilder,
    finish_scan,
    opt_choice,
    opt_path,
    require_dir,
    sanitize_id,
)
from avf.data.adapters.tables import read_records

COMPOSITE = ("negative", "positive", "surprise")
_COMPOSITE_OF = {
    **dict.fromkeys(
        ("sadness", "sad", "disgust", "contempt", "fear", "anger", "angry", "repression", "negative"), "negative"
    ),
    **dict.fromkeys(("happiness", "happy", "positive"), "positive"),
    "surprise": "surprise",
}
CASME3_7 = ("anger", "disgust", "fear", "happy", "sad", "surprise", "others")
CASME3_4 = ("negative", "positive", "surprise", "others")


def composite_label(emotion: str) -> str | None:
    """The composite 3-class label of an emotion name, or None when outside the protocol."""
    return _COMPOSITE_OF.get(emotion.strip().lower())


def natural_key(text: str) -> tuple[Any, ...]:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text))


def _frame_number(text: str | None) -> int | None:
    try:
        return int(float(text)) if text not in (None, "", "/") else None
    except ValueError:
        return None


@dataclass
class Sample:
    subject: str  # without the dataset prefix
    name: str  # sample name (unique per subject once combined with ``key_suffix``)
    frames: Path
    emotion: str
    source: str  # where the sample was declared (for problem messages)
    onset: int | None = None
    apex: int | None = None
    offset: int | None = None
    key_suffix: str = ""


class MicroExpressionAdapter(Adapter):
    """Shared LOSO logic; subclasses list their samples."""

    task = "classification"
    classes = COMPOSITE
    metrics = ("uf1", "uar")
    prefix: ClassVar[str] = ""
    fps: ClassVar[float] = 0.0  # the camera's frame rate as the release's paper gives it

    def frame_rate(self) -> float:
        return self.fps

    def samples(self, root: Path, out: ScanBuilder) -> list[Sample]:
        raise NotImplementedError

    def label_of(self, emotion: str) -> str | None:
        return composite_label(emotion)

    def _sheet(self, root: Path, patterns: tuple[str, ...], what: str) -> Path:
        given = opt_path(self.options, "annotations", root)
        if given is not None:
            if not given.is_file():
                raise FileNotFoundError(f"{what} annotation sheet not found: {given}")
            return given
        for pattern in patterns:
            found = sorted(root.glob(pattern))
            if found:
                return found[0]
        raise FileNotFoundError(f"{what} root {root}: no annotation sheet matching {list(patterns)}")

    def scan(self, root: Path) -> ScanResult:
        root = require_dir(root)
        out = ScanBuilder(self.name)
        kept: list[tuple[Sample, str]] = []
        for sample in self.samples(root, out):
            label = self.label_of(sample.emotion)
            if label is None:
                continue  # outside the protocol's classes
            if not sample.frames.is_dir():
                out.problem(sample.frames, f"frame folder missing (declared in {sample.source})")
                continue
            kept.append((sample, label))
        subjects = sorted({s.subject for s, _ in kept}, key=natural_key)
        fold_of = {s: i for i, s in enumerate(subjects, start=1)}
        for sample, label in kept:
            subject = f"{self.prefix}_{sanitize_id(sample.subject)}"
            out.add(
                RawClip(
                    clip_id=sanitize_id(f"{subject}_{sample.name}{sample.key_suffix}"),
                    dataset=self.name,
                    subject=subject,
                    video_path=sample.frames,
                    label=self.classes.index(label),
                    label_name=label,
                    test_fold=fold_of[sample.subject],
                    extra={
                        "frames": True,
                        "fps": self.frame_rate(),
                        "no_audio": True,
                        "emotion": sample.emotion,
                        "onset": sample.onset,
                        "apex": sample.apex,
                        "offset": sample.offset,
                    },
                )
            )
        self.num_folds = len(subjects)  # type: ignore[misc]
        return finish_scan(self, out, root)


def _sheet_samples(
    path: Path,
    out: ScanBuilder,
    columns: tuple[str, str, str, str, str, str],
    subject_of: Any,
    frames_of: Any,
) -> list[Sample]:
    """Samples from an annotation sheet; ``columns`` = subject, filename, onset, apex, offset, emotion."""
    subject_col, file_col, _, _, _, emotion_col = columns
    rows = read_records(path, (subject_col, file_col, emotion_col))
    keys = [re.sub(r"[^a-z0-9]", "", c.lower()) for c in columns]
    samples = []
    for number, row in enumerate(rows, start=1):
        subject_raw, filename, emotion = row.get(keys[0], ""), row.get(keys[1], ""), row.get(keys[5], "")
        subject = subject_of(subject_raw)
        if subject is None or not filename:
            out.problem(f"{path}:row {number}", f"bad subject {subject_raw!r} or empty filename")
            continue
        samples.append(
            Sample(
                subject=subject,
                name=filename,
                frames=frames_of(subject, filename),
                emotion=emotion,
                source=path.name,
                onset=_frame_number(row.get(keys[2])),
                apex=_frame_number(row.get(keys[3])),
                offset=_frame_number(row.get(keys[4])),
            )
        )
    return samples


def _int_subject(width: int, prefix: str = "") -> Any:
    def parse(raw: str) -> str | None:
        digits = re.sub(r"^\D*", "", raw.strip())
        try:
            return f"{prefix}{int(float(digits)):0{width}d}"
        except ValueError:
            return None

    return parse


@register_adapter("casme2")
class Casme2Adapter(MicroExpressionAdapter):
    prefix = "casme2"
    fps = 200.0
    num_folds = 24

    def samples(self, root: Path, out: ScanBuilder) -> list[Sample]:
        frames = opt_choice(self.options, "frames", "raw", ("raw", "cropped"))
        base = root / ("CASME2_RAW_selected" if frames == "raw" else "Cropped")
        if not base.is_dir():
            raise FileNotFoundError(f"CASME II root {root} has no {base.name}/ folder")
        sheet = self._sheet(root, ("CASME2-coding*.xlsx", "CASME2-coding*.csv", "CASME2*.xlsx"), "CASME II")
        return _sheet_samples(
            sheet,
            out,
            ("Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Estimated Emotion"),
            _int_subject(2, "sub"),
            lambda subject, filename: base / subject / filename,
        )


@register_adapter("samm")
class SammAdapter(MicroExpressionAdapter):
    prefix = "samm"
    fps = 200.0
    num_folds = 28

    def samples(self, root: Path, out: ScanBuilder) -> list[Sample]:
        sheet = self._sheet(root, ("SAMM_Micro_FACS_Codes*.xlsx", "SAMM_Micro_FACS_Codes*.csv"), "SAMM")
        return _sheet_samples(
            sheet,
            out,
            ("Subject", "Filename", "Onset Frame", "Apex Frame", "Offset Frame", "Estimated Emotion"),
            _int_subject(3),
            lambda subject, filename: root / subject / filename,
        )


@register_adapter("smic")
class SmicAdapter(MicroExpressionAdapter):
    prefix = "smic"
    num_folds = 16

    def frame_rate(self) -> float:
        return 100.0 if self.camera == "HS" else 25.0

    @property
    def camera(self) -> str:
        return opt_choice(self.options, "camera", "HS", ("HS", "VIS", "NIR"))

    def samples(self, root: Path, out: ScanBuilder) -> list[Sample]:
        camera = self.camera
        base = root / camera if (root / camera).is_dir() else root
        subjects = [p for p in base.iterdir() if p.is_dir() and re.match(r"^s\d+$", p.name)]
        if not subjects:
            raise FileNotFoundError(f"SMIC root {root}: no {camera}/sN/micro/ folders")
        samples = []
        for subject_dir in sorted(subjects, key=lambda p: natural_key(p.name)):
            for emotion_dir in sorted((subject_dir / "micro").glob("*")):
                if not emotion_dir.is_dir():
                    continue
                if emotion_dir.name not in COMPOSITE:
                    out.problem(emotion_dir, "unknown SMIC emotion folder (expected positive/negative/surprise)")
                    continue
                for sample in sorted(p for p in emotion_dir.iterdir() if p.is_dir()):
                    source = str(emotion_dir.relative_to(root))
                    samples.append(Sample(subject_dir.name, sample.name, sample, emotion_dir.name, source))
        return samples


@register_adapter("casme3")
class Casme3Adapter(MicroExpressionAdapter):
    prefix = "casme3"
    fps = 30.0
    num_folds = 0

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.variant = int(opt_choice(options, "classes", "3", ("3", "4", "7")))
        self.classes = {3: COMPOSITE, 4: CASME3_4, 7: CASME3_7}[self.variant]  # type: ignore[misc]

    def label_of(self, emotion: str) -> str | None:
        name = emotion.strip().lower()
        name = {"happiness": "happy", "sadness": "sad", "other": "others"}.get(name, name)
        if self.variant == 7:
            return name if name in CASME3_7 else None
        label = composite_label(name)
        if self.variant == 4 and label is None and name == "others":
            return "others"
        return label

    def samples(self, root: Path, out: ScanBuilder) -> list[Sample]:
        base = root / "part_A"
        if not base.is_dir():
            raise FileNotFoundError(f"CAS(ME)^3 root {root} has no part_A/ folder")
        sheet = self._sheet(root, ("annotation/*part_A*ME*.xlsx", "annotation/*part_A*ME*.csv"), "CAS(ME)^3")

        def frames_of(subject: str, filename: str) -> Path:
            folder = base / subject / filename
            return folder / "color" if (folder / "color").is_dir() else folder

        samples = _sheet_samples(
            sheet,
            out,
            ("Subject", "Filename", "Onset", "Apex", "Offset", "emotion"),
            lambda raw: raw.strip() or None,
            frames_of,
        )
        for sample in samples:
            sample.key_suffix = f"_{sample.onset}" if sample.onset is not None else ""
        return samples


@register_adapter("mmew")
class MmewAdapter(MicroExpressionAdapter):
    prefix = "mmew"
    fps = 90.0
    num_folds = 36

    def samples(self, root: Path, out: ScanBuilder) -> list[Sample]:
        base = root / "Micro_Expression"
        if not base.is_dir():
            raise FileNotFoundError(f"MMEW root {root} has no Micro_Expression/ folder")
        rows: dict[str, dict[str, str]] = {}
        sheets = sorted([*root.glob("*.xlsx"), *root.glob("*.csv")])
        sheet = opt_path(self.options, "annotations", root) or (sheets[0] if sheets else None)
        if sheet is not None:
            rows = {row["filename"]: row for row in read_records(sheet, ("Subject", "Filename"))}
        samples = []
        for emotion_dir in sorted(p for p in base.iterdir() if p.is_dir()):
            for sample in sorted(p for p in emotion_dir.iterdir() if p.is_dir()):
                row = rows.get(sample.name, {})
                subject = row.get("subject") or sample.name.split("_", 1)[0]
                if subject == sample.name:
                    out.problem(sample, "cannot tell the subject: not in the sheet and no '<subject>_' prefix")
                    continue
                source = f"Micro_Expression/{emotion_dir.name}"
                onset, apex, offset = (_frame_number(row.get(k)) for k in ("onsetframe", "apexframe", "offsetframe"))
                samples.append(Sample(subject, sample.name, sample, emotion_dir.name, source, onset, apex, offset))
        return samples
