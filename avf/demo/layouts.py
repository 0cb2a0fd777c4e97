"""File naming and folder layout of the two generated datasets, exactly as the real releases.

RAVDESS (``shared/docs/datasets.md`` §4.2): ``ravdess/Actor_NN/MM-VV-EE-II-SS-RR-NN.mp4`` with modality 01
(full AV), vocal channel 01 (speech), emotion 01..08, intensity 01/02 (no strong neutral), statement
01/02, repetition 01/02, actor 01..24 (odd = male, even = female).

CREMA-D (§4.1): ``cremad/VideoFlash/AAAA_SSS_EEE_LL.flv`` (H.264 + AAC) and ``cremad/AudioWAV/<same>.wav``
(16 kHz mono PCM16); actor ids spread over 1001..1091 so every official fold gets actors; sentence codes;
emotions ANG DIS FEA HAP NEU SAD; level LO/MD/HI only for IEO (and never for NEU), XX otherwise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from avf.config.data import SynthConfig
from avf.demo.cues import EMOTIONS
from avf.demo.faces import SOURCE_NAMES

RAVDESS_STATEMENTS: dict[int, str] = {1: "Kids are talking by the door", 2: "Dogs are sitting by the door"}
RAVDESS_RE = re.compile(r"^01-01-(0[1-8])-(0[12])-(0[12])-(0[12])-(\d\d)\.mp4$")
STRONG = 1.5  # RAVDESS intensity 02 scales every cue's distance from neutral by this

CREMAD_SENTENCES: dict[str, str] = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
CREMAD_EMOTIONS: dict[str, str] = {
    "ANG": "angry",
    "DIS": "disgust",
    "FEA": "fearful",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
CREMAD_LEVELS: dict[str, float] = {"LO": 0.6, "MD": 1.0, "HI": 1.4, "XX": 1.0}
CREMAD_FIRST_ACTOR, CREMAD_ACTORS = 1001, 91
CREMAD_RE = re.compile(
    r"^(1\d{{3}})_({})_({})_(LO|MD|HI|XX)$".format("|".join(CREMAD_SENTENCES), "|".join(CREMAD_EMOTIONS))
)


@dataclass(frozen=True)
class ClipSpec:
    """One clip to generate."""

    dataset: str  # ravdess | cremad
    name: str  # file stem
    video: str  # path relative to the output root
    wav: str | None  # separate 16 kHz wav (CREMA-D), relative path
    emotion: str  # key of cues.EMOTIONS
    strength: float  # cue scale (intensity / level)
    text: str


@dataclass(frozen=True)
class ActorSpec:
    """One synthetic actor (identity = dataset + actor id) and the clips it performs."""

    dataset: str
    actor: int
    male: bool
    source: str  # source photograph
    clips: tuple[ClipSpec, ...]

    @property
    def key(self) -> str:
        return f"{self.dataset}:{self.actor}"


def _source(index: int) -> str:
    # pairs of actors share a photo, so each photo gets both sexes and every RAVDESS fold both photos
    return SOURCE_NAMES[(index // 2) % len(SOURCE_NAMES)]


def ravdess_actors(cfg: SynthConfig) -> list[ActorSpec]:
    actors = []
    for a in range(1, cfg.ravdess_actors + 1):
        clips = []
        for e in cfg.emotions:
            for i in cfg.intensities:
                if e == 1 and i == 2:
                    continue  # the real release has no strong neutral
                for s in cfg.statements:
                    for r in cfg.repetitions:
                        name = f"01-01-{e:02d}-{i:02d}-{s:02d}-{r:02d}-{a:02d}"
                        clips.append(
                            ClipSpec(
                                "ravdess",
                                name,
                                f"ravdess/Actor_{a:02d}/{name}.mp4",
                                None,
                                EMOTIONS[e - 1],
                                STRONG if i == 2 else 1.0,
                                RAVDESS_STATEMENTS[s],
                            )
                        )
        actors.append(ActorSpec("ravdess", a, a % 2 == 1, _source(a - 1), tuple(clips)))
    return actors


def cremad_actor_id(k: int, n: int) -> int:
    """Actor id of the k-th of n actors, spread over 1001..1091 so every official fold gets actors."""
    return CREMAD_FIRST_ACTOR + (k * CREMAD_ACTORS) // n


def cremad_actors(cfg: SynthConfig) -> list[ActorSpec]:
    actors = []
    for k in range(cfg.cremad_actors):
        actor = cremad_actor_id(k, cfg.cremad_actors)
        clips = []
        for sentence in cfg.cremad_sentences:
            for emo in cfg.cremad_emotions:
                levels = cfg.cremad_levels if sentence == "IEO" and emo != "NEU" else ("XX",)
                for level in levels:
                    name = f"{actor}_{sentence}_{emo}_{level}"
                    clips.append(
                        ClipSpec(
                            "cremad",
                            name,
                            f"cremad/VideoFlash/{name}.flv",
                            f"cremad/AudioWAV/{name}.wav",
                            CREMAD_EMOTIONS[emo],
                            CREMAD_LEVELS[level],
                            CREMAD_SENTENCES[sentence],
                        )
                    )
        # offset by one so RAVDESS actor 1 and CREMA-D actor 1001 do not start on the same photo pair
        actors.append(ActorSpec("cremad", actor, k % 2 == 0, _source(k + 1), tuple(clips)))
    return actors


def plan_actors(cfg: SynthConfig) -> list[ActorSpec]:
    """Every actor of both datasets with its clips, in a fixed order."""
    return ravdess_actors(cfg) + cremad_actors(cfg)
