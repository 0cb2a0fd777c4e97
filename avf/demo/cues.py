"""Emotion cue tables: what each emotion does to the face and to the voice, as parameter distributions.

Every emotion maps to one *face class* and one *voice class*. Two emotions that share a voice class
differ only in the face (a video-only pair); two that share a face class differ only in the voice (an
audio-only pair). Each class is a mean vector plus one shared per-parameter standard deviation, so a
shared class means an identical distribution, not just a similar one. Intensity scales the distance from
the neutral class (``rest`` / ``modal``): RAVDESS ``02`` (strong) exaggerates every cue by 1.5x.

The face classes never touch speaking rate: the mouth follows the syllable envelope normalised to its
own peak (so loudness is invisible), and the rate is part of every voice class that two face-sharing
emotions use identically. A video model therefore sees nothing of an audio-only pair's difference.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields
from typing import TypeVar

import numpy as np

# RAVDESS emotion order: code = index + 1.
EMOTIONS: tuple[str, ...] = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")


@dataclass(frozen=True)
class FaceCues:
    """Facial motion of one clip. Units: dimensionless strengths (1.0 = a clear expression) or as noted."""

    smile: float  # mouth corners up (+) / down (-)
    jaw: float  # static jaw drop (mouth held open)
    speech_gain: float  # how wide the mouth opens on the syllable envelope
    stretch: float  # mouth corners pulled sideways (fear)
    brow_raise: float  # whole brows up (surprise)
    brow_inner: float  # inner brow corners up (sadness, fear: oblique brows)
    furrow: float  # brows down and together (anger, disgust)
    eye_open: float  # eyelids wide (+) / narrowed (-)
    nod: float  # vertical head motion amplitude
    shake: float  # horizontal head motion amplitude
    tilt_deg: float  # head roll (degrees, sign drawn per clip)
    head_hz: float  # head motion speed
    head_down: float  # static head lowering (sadness)


@dataclass(frozen=True)
class VoiceCues:
    """Prosody and voice quality of one clip."""

    pitch_st: float  # mean F0 relative to the actor's base pitch (semitones)
    range_st: float  # pitch accent / declination range (semitones)
    rate: float  # syllables per second
    loud_db: float  # speech level relative to the reference level
    breath: float  # aspiration noise share (breathy voice)
    open_q: float  # glottal open quotient (low = pressed, high = breathy)
    tilt: float  # spectral emphasis (+ brighter, - darker)
    jitter: float  # cycle-to-cycle period perturbation (fraction)
    shimmer: float  # cycle-to-cycle amplitude perturbation (fraction)
    tremor: float  # 5.5 Hz F0 modulation depth (fraction)


FACE_CLASSES: dict[str, FaceCues] = {
    "rest": FaceCues(0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.35, 0.25, 1.0, 0.5, 0.0),
    "smile": FaceCues(1.0, 0.05, 1.1, 0.2, 0.2, 0.0, 0.0, -0.35, 0.8, 0.35, 3.5, 0.9, 0.0),
    "surprise": FaceCues(0.0, 0.55, 1.25, 0.0, 1.1, 0.3, 0.0, 1.0, 0.5, 0.2, 1.5, 0.7, -0.4),
    "frown": FaceCues(-0.6, 0.0, 1.3, 0.1, 0.0, 0.0, 1.0, -0.6, 0.6, 0.8, 1.0, 1.3, 0.2),
    "sad": FaceCues(-0.9, 0.0, 0.6, 0.0, 0.0, 0.9, 0.25, -0.5, 0.2, 0.15, 4.0, 0.35, 0.8),
    "fear": FaceCues(-0.35, 0.25, 0.9, 1.0, 0.6, 0.8, 0.35, 0.8, 0.3, 0.6, 1.0, 1.8, 0.2),
}
FACE_SD = FaceCues(0.22, 0.1, 0.15, 0.2, 0.2, 0.18, 0.2, 0.2, 0.12, 0.12, 0.8, 0.12, 0.15)

VOICE_CLASSES: dict[str, VoiceCues] = {
    "modal": VoiceCues(0.0, 3.0, 4.0, 0.0, 0.15, 0.6, 0.3, 0.010, 0.05, 0.0),
    "soft": VoiceCues(-1.5, 1.8, 4.0, -5.0, 0.45, 0.72, -0.2, 0.010, 0.05, 0.0),
    "excited": VoiceCues(4.0, 7.0, 4.8, 4.0, 0.1, 0.5, 0.6, 0.010, 0.05, 0.0),
    "tense": VoiceCues(3.0, 5.0, 4.6, 8.0, 0.05, 0.38, 0.9, 0.020, 0.08, 0.0),
    "creaky": VoiceCues(-3.0, 4.0, 4.6, -1.0, 0.2, 0.55, 0.1, 0.050, 0.15, 0.0),
    "tremulous": VoiceCues(1.5, 2.0, 3.3, -4.0, 0.5, 0.75, -0.3, 0.030, 0.08, 0.04),
}
VOICE_SD = VoiceCues(1.0, 0.9, 0.3, 1.5, 0.07, 0.04, 0.15, 0.005, 0.02, 0.01)

# emotion -> (face class, voice class)
EMOTION_CUES: dict[str, tuple[str, str]] = {
    "neutral": ("rest", "modal"),
    "calm": ("rest", "soft"),
    "happy": ("smile", "excited"),
    "surprised": ("surprise", "excited"),
    "angry": ("frown", "tense"),
    "disgust": ("frown", "creaky"),
    "sad": ("sad", "tremulous"),
    "fearful": ("fear", "tremulous"),
}
NEUTRAL_FACE, NEUTRAL_VOICE = "rest", "modal"

_FACE_LIMITS = {
    "speech_gain": (0.2, 2.0),
    "nod": (0.0, 2.0),
    "shake": (0.0, 2.0),
    "tilt_deg": (0.0, 8.0),
    "head_hz": (0.15, 3.0),
}
_VOICE_LIMITS = {
    "range_st": (0.5, 14.0),
    "rate": (2.4, 7.0),
    "breath": (0.0, 0.9),
    "open_q": (0.3, 0.9),
    "tilt": (-0.6, 0.95),
    "jitter": (0.0, 0.1),
    "shimmer": (0.0, 0.3),
    "tremor": (0.0, 0.1),
}


_C = TypeVar("_C", FaceCues, VoiceCues)


def video_only_pairs(emotions: tuple[str, ...] = EMOTIONS) -> list[tuple[str, str]]:
    """Emotion pairs with the same voice class and different face classes."""
    return [
        (a, b)
        for i, a in enumerate(emotions)
        for b in emotions[i + 1 :]
        if EMOTION_CUES[a][1] == EMOTION_CUES[b][1] and EMOTION_CUES[a][0] != EMOTION_CUES[b][0]
    ]


def audio_only_pairs(emotions: tuple[str, ...] = EMOTIONS) -> list[tuple[str, str]]:
    """Emotion pairs with the same face class and different voice classes."""
    return [
        (a, b)
        for i, a in enumerate(emotions)
        for b in emotions[i + 1 :]
        if EMOTION_CUES[a][0] == EMOTION_CUES[b][0] and EMOTION_CUES[a][1] != EMOTION_CUES[b][1]
    ]


def _sample(
    mean: _C, neutral: _C, sd: _C, strength: float, limits: dict[str, tuple[float, float]], rng: np.random.Generator
) -> _C:
    m, n, s = (np.asarray(astuple(x), dtype=np.float64) for x in (mean, neutral, sd))
    v = n + strength * (m - n) + s * rng.standard_normal(len(m))
    names = [f.name for f in fields(mean)]
    for i, name in enumerate(names):
        lo, hi = limits.get(name, (-np.inf, np.inf))
        v[i] = float(np.clip(v[i], lo, hi))
    return type(mean)(*(float(x) for x in v))


def sample_face(emotion: str, strength: float, rng: np.random.Generator) -> FaceCues:
    """Draw one clip's face cues; the draw depends on the emotion only through its face class."""
    cls = EMOTION_CUES[emotion][0]
    return _sample(FACE_CLASSES[cls], FACE_CLASSES[NEUTRAL_FACE], FACE_SD, strength, _FACE_LIMITS, rng)


def sample_voice(emotion: str, strength: float, rng: np.random.Generator) -> VoiceCues:
    """Draw one clip's voice cues; the draw depends on the emotion only through its voice class."""
    cls = EMOTION_CUES[emotion][1]
    return _sample(VOICE_CLASSES[cls], VOICE_CLASSES[NEUTRAL_VOICE], VOICE_SD, strength, _VOICE_LIMITS, rng)
