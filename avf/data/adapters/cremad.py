"""CREMA-D: ``VideoFlash/AAAA_SSS_EEE_LL.flv`` + ``AudioWAV/<stem>.wav`` (91 actors, 5 folds).

Name fields: actor 1001..1091, sentence (12 codes), emotion (ANG DIS FEA HAP NEU SAD), level (LO MD HI
XX). Labels: ``classes: 6`` (default) ANG 0, DIS 1, FEA 2, HAP 3, NEU 4, SAD 5; ``classes: 4`` keeps
ANG, HAP, NEU, SAD re-indexed 0..3 (DIS/FEA clips are left out of that variant, not reported).

Folds (subject-independent, HiCMAE rule): actor index i = id - 1001, fold k tests 18(k-1) <= i < 18k,
and fold 5 takes the remaining 19 actors (1073..1091).

Exclusions (option ``exclusions``): ``hicmae`` (default) drops the four clips listed as broken on the
CREMA-D issue tracker plus ``1040_ITH_SAD_XX``, which the published HiCMAE lists also omit (7,437
clips); ``broken`` drops only the four; ``none`` keeps everything. Each dropped clip is reported.

Audio (option ``audio``): ``wav`` (default, as HiCMAE) requires ``AudioWAV/<stem>.wav`` and reports a
clip without one as a problem and skips it; ``auto`` falls back to the flv's own audio track
(``audio_path`` None, ``extra['audio_source'] = 'video'``) and records a problem whose reason says the
clip was kept. ``VideoDemographics.csv`` (ActorID, Age, Sex, ...) adds ``age``/``sex`` to ``extra``.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

from avf.data.adapters.base import Adapter, RawClip, ScanResult, register_adapter
from avf.data.adapters.common import ScanBuilder, finish_scan, opt_choice, require_dir

EMOTIONS_6 = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")
EMOTIONS_4 = ("ANG", "HAP", "NEU", "SAD")
SENTENCES = ("IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI")
LEVELS = ("LO", "MD", "HI", "XX")
BROKEN = ("1076_MTI_NEU_XX", "1076_MTI_SAD_XX", "1064_TIE_SAD_XX", "1064_IEO_DIS_MD")
HICMAE_EXTRA = ("1040_ITH_SAD_XX",)
_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")
FIRST_ACTOR, LAST_ACTOR = 1001, 1091


def fold_of_actor(actor: int) -> int:
    """Test fold (1..5) of a CREMA-D actor id: 18 actors per fold, 19 in the last."""
    return min((actor - FIRST_ACTOR) // 18 + 1, 5)


@register_adapter("cremad")
class CremadAdapter(Adapter):
    task = "classification"
    classes = EMOTIONS_6
    num_folds = 5
    metrics = ("uar", "war")

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.variant = int(opt_choice(options, "classes", "6", ("6", "4")))
        self.classes = EMOTIONS_6 if self.variant == 6 else EMOTIONS_4  # type: ignore[misc]
        self.exclusions = opt_choice(options, "exclusions", "hicmae", ("hicmae", "broken", "none"))
        self.audio = opt_choice(options, "audio", "wav", ("wav", "auto"))

    def _excluded(self) -> set[str]:
        if self.exclusions == "none":
            return set()
        return set(BROKEN) | (set(HICMAE_EXTRA) if self.exclusions == "hicmae" else set())

    @staticmethod
    def _demographics(root: Path) -> dict[int, dict[str, str]]:
        path = root / "VideoDemographics.csv"
        if not path.is_file():
            return {}
        out: dict[int, dict[str, str]] = {}
        with path.open(newline="", encoding="utf-8-sig") as fh:
            for row in csv.DictReader(fh):
                actor = (row.get("ActorID") or "").strip()
                if actor.isdigit():
                    out[int(actor)] = {
                        "age": (row.get("Age") or "").strip(),
                        "sex": (row.get("Sex") or "").strip(),
                    }
        return out

    def scan(self, root: Path) -> ScanResult:
        root = require_dir(root)
        video_dir = root / "VideoFlash"
        if not video_dir.is_dir():
            raise FileNotFoundError(f"CREMA-D root {root} has no VideoFlash/ folder")
        audio_dir = root / "AudioWAV"
        excluded = self._excluded()
        people = self._demographics(root)
        out = ScanBuilder(self.name)
        for path in sorted(video_dir.iterdir()):
            if path.name.startswith(".") or path.suffix.lower() != ".flv":
                continue
            match = _NAME.match(path.stem)
            if not match:
                out.problem(path, "malformed CREMA-D name (expected AAAA_SSS_EEE_LL.flv)")
                continue
            actor, sentence, emotion, level = int(match.group(1)), *match.group(2, 3, 4)
            if not FIRST_ACTOR <= actor <= LAST_ACTOR:
                out.problem(path, f"actor id {actor} outside 1001..1091")
                continue
            if sentence not in SENTENCES or emotion not in EMOTIONS_6 or level not in LEVELS:
                out.problem(path, f"unknown sentence/emotion/level code in {path.stem}")
                continue
            if path.stem in excluded:
                out.problem(path, f"on the excluded list (exclusions={self.exclusions}); skipped")
                continue
            if emotion not in self.classes:
                continue
            wav = audio_dir / f"{path.stem}.wav"
            extra: dict[str, Any] = {"sentence": sentence, "level": level, **people.get(actor, {})}
            audio: Path | None = wav
            if not wav.is_file():
                if self.audio == "wav":
                    out.problem(path, f"audio missing: no {wav.relative_to(root)}; skipped")
                    continue
                out.problem(path, f"no {wav.relative_to(root)}; kept with the flv's own audio track")
                audio = None
            extra["audio_source"] = "wav" if audio else "video"
            out.add(
                RawClip(
                    clip_id=path.stem,
                    dataset=self.name,
                    subject=str(actor),
                    video_path=path,
                    audio_path=audio,
                    label=self.classes.index(emotion),
                    label_name=emotion,
                    test_fold=fold_of_actor(actor),
                    extra=extra,
                )
            )
        return finish_scan(self, out, root)
