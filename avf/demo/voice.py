"""A speech-like voice in numpy/scipy: glottal pulses through formant filters over a syllable plan.

Pipeline (all at :data:`SR` = 16 kHz, resampled on output):

1. :func:`syllabify` turns the sentence into syllables (onset consonant class, vowel class, coda, stress)
   with a small spelling heuristic, so a sentence always yields the same vowel/consonant sequence.
2. :func:`make_plan` times them from the speaking rate (stressed and phrase-final syllables are longer,
   per-syllable jitter) and builds the planned envelopes: voicing, frication, jaw opening, lip rounding.
   The plan uses its own random stream and only the rate cue, so everything the face sees of the
   speech (the mouth follows :attr:`Plan.mouth`) is independent of pitch, loudness and voice quality.
3. :func:`synthesize` draws an F0 contour (level, accents, declination, final fall, drift, tremor), a
   Rosenberg glottal pulse train with jitter/shimmer and an open quotient (pressed ↔ breathy), adds
   aspiration noise, filters it through four time-varying Klatt formant resonators (vowel targets
   scaled by the speaker's vocal-tract length), adds fricative and burst noise, applies the spectral
   tilt and sets the speech level to the loudness cue.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from scipy import signal

from avf.demo.cues import VoiceCues

SR = 16000
CONTROL_HZ = 200  # rate of the planned envelopes and the F0 contour
_HOP = 160  # formant filter frame hop (10 ms; frames are 20 ms)
_NFFT = 1024

# Adult male formant targets (Hz) per vowel class; '@' is a neutral schwa.
VOWELS: dict[str, tuple[float, float, float, float]] = {
    "i": (280, 2250, 2890, 3500),
    "e": (480, 1900, 2550, 3500),
    "a": (730, 1090, 2440, 3500),
    "o": (540, 850, 2400, 3500),
    "u": (320, 870, 2240, 3500),
    "@": (500, 1500, 2500, 3500),
}
_BANDWIDTHS = np.array([60.0, 90.0, 130.0, 190.0])
OPENNESS = {"a": 1.0, "e": 0.75, "o": 0.8, "@": 0.6, "i": 0.45, "u": 0.45}
ROUNDING = {"o": 0.7, "u": 1.0}
_FUNCTION_WORDS = {
    "a",
    "the",
    "are",
    "by",
    "is",
    "it",
    "its",
    "i",
    "im",
    "on",
    "my",
    "to",
    "what",
    "this",
    "will",
    "in",
    "of",
    "have",
    "would",
    "well",
    "that",
    "we",
    "it's",
    "i'm",
    "i've",
    "we'll",
}
_ONSET_S = {"stop": 0.07, "fric": 0.09, "son": 0.06, "none": 0.0}
_CODA_S = {"stop": 0.05, "fric": 0.08, "son": 0.05, "none": 0.0}


@dataclass(frozen=True)
class Voice:
    """One speaker's voice (per actor)."""

    f0_hz: float  # base pitch
    formant_scale: float  # vocal-tract length factor (female ~1.17)
    rate_factor: float  # personal speaking-rate factor
    loud_db: float  # personal level offset
    breath: float  # personal breathiness offset


@dataclass(frozen=True)
class Syllable:
    onset: str  # stop | fric | son | none
    vowel: str  # key of VOWELS
    coda: str  # stop | fric | son | none
    stressed: bool


@dataclass
class Plan:
    """Timing and planned envelopes of one utterance (control rate :data:`CONTROL_HZ`)."""

    syllables: list[Syllable]
    onsets: np.ndarray  # (S,) onset start (s)
    vowel_on: np.ndarray  # (S,) vowel start (s)
    vowel_off: np.ndarray  # (S,) vowel end (s)
    ends: np.ndarray  # (S,) syllable end incl. coda (s)
    amp: np.ndarray  # (S,) relative syllable amplitude
    mouth: np.ndarray  # (N,) jaw opening 0..1 (peak-normalised, smoothed)
    rounding: np.ndarray  # (N,) lip rounding 0..1
    accent: np.ndarray  # (N,) 0..1 bumps on stressed syllables (eyebrow flashes)

    def at(self, track: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Sample a control-rate track at times ``t`` (seconds)."""
        return np.interp(t, np.arange(len(track)) / CONTROL_HZ, track)


def actor_voice(male: bool, rng: np.random.Generator) -> Voice:
    """Draw a speaker: male ~95-135 Hz, female ~175-235 Hz, with matching vocal-tract length."""
    f0 = rng.uniform(95, 135) if male else rng.uniform(175, 235)
    scale = rng.uniform(0.96, 1.04) if male else rng.uniform(1.12, 1.22)
    return Voice(
        f0_hz=float(f0),
        formant_scale=float(scale),
        rate_factor=float(rng.uniform(0.9, 1.1)),
        loud_db=float(rng.uniform(-2.0, 2.0)),
        breath=float(rng.uniform(-0.05, 0.05)),
    )


def _consonant_class(letters: str) -> str:
    if not letters:
        return "none"
    c = letters[-1]
    if letters.endswith(("sh", "th", "ch")) or c in "szfvxj":
        return "fric"
    if c in "ptkbdgcq":
        return "stop"
    if c in "mnlrwhy":
        return "son"
    return "none"


def _vowel_class(letters: str) -> str:
    for spelling, v in (
        ("ee", "i"),
        ("ea", "i"),
        ("ie", "i"),
        ("oo", "u"),
        ("ou", "o"),
        ("ow", "o"),
        ("oa", "o"),
        ("ai", "e"),
        ("ay", "e"),
        ("ei", "e"),
        ("au", "a"),
        ("aw", "a"),
    ):
        if letters.startswith(spelling):
            return v
    return {"a": "a", "e": "e", "i": "i", "y": "i", "o": "o", "u": "@"}.get(letters[0], "@")


def syllabify(text: str) -> list[Syllable]:
    """Split an English sentence into syllables by vowel-letter groups (a spelling heuristic)."""
    out: list[Syllable] = []
    for word in re.findall(r"[a-z']+", text.lower()):
        w = word.replace("'", "")
        groups = list(re.finditer(r"[aeiouy]+", w))
        if len(groups) > 1 and groups[-1].group() == "e" and groups[-1].end() == len(w):
            groups = groups[:-1]  # silent final e
        if not groups:
            continue
        prev = 0
        for k, g in enumerate(groups):
            coda = _consonant_class(w[groups[-1].end() :]) if k == len(groups) - 1 else "none"
            out.append(
                Syllable(
                    onset=_consonant_class(w[prev : g.start()]),
                    vowel=_vowel_class(g.group()),
                    coda=coda,
                    stressed=k == 0 and word not in _FUNCTION_WORDS,
                )
            )
            prev = g.end()
    if not out:
        raise ValueError(f"no syllables in {text!r}")
    return out


def _raised_cos(n: int, ramp: int) -> np.ndarray:
    env = np.ones(n)
    r = min(ramp, n // 2)
    if r > 0:
        edge = 0.5 - 0.5 * np.cos(np.pi * (np.arange(r) + 0.5) / r)
        env[:r] = edge
        env[n - r :] = edge[::-1]
    return env


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    if width <= 1:
        return x
    k = np.hanning(width + 2)[1:-1]
    return np.convolve(x, k / k.sum(), mode="same")


def make_plan(text: str, rate: float, duration_s: float, rng: np.random.Generator) -> Plan:
    """Time the syllables of ``text`` at ``rate`` syllables/s inside ``duration_s`` (random draws: ``rng``)."""
    syl = syllabify(text)
    n_s = len(syl)
    t0 = rng.uniform(0.2, 0.4)
    jitter = np.exp(0.12 * rng.standard_normal(n_s))
    amp = np.array([1.0 if s.stressed else 0.72 for s in syl]) * np.exp(0.1 * rng.standard_normal(n_s))
    amp[-1] *= 0.85
    dur = np.array([(1.2 if s.stressed else 0.85) for s in syl]) / rate * jitter
    dur[-1] *= 1.3
    budget = duration_s - 0.2 - t0
    if dur.sum() > budget:
        dur *= budget / dur.sum()
    ends = t0 + np.cumsum(dur)
    onsets = ends - dur
    on_len = np.array([min(_ONSET_S[s.onset], 0.4 * d) for s, d in zip(syl, dur, strict=True)])
    coda_len = np.array([min(_CODA_S[s.coda], 0.3 * d) for s, d in zip(syl, dur, strict=True)])
    vowel_on, vowel_off = onsets + on_len, ends - coda_len

    n = round(duration_s * CONTROL_HZ) + 1
    mouth, rounding, accent = np.zeros(n), np.zeros(n), np.zeros(n)
    t = np.arange(n) / CONTROL_HZ
    for k, s in enumerate(syl):
        a, b = int(vowel_on[k] * CONTROL_HZ), max(int(vowel_off[k] * CONTROL_HZ), int(vowel_on[k] * CONTROL_HZ) + 2)
        mouth[a:b] = np.maximum(mouth[a:b], OPENNESS[s.vowel] * amp[k] * _raised_cos(b - a, 4))
        if s.onset == "son" or s.coda == "son":
            c, d = int(onsets[k] * CONTROL_HZ), int(ends[k] * CONTROL_HZ)
            mouth[c:d] = np.maximum(mouth[c:d], 0.15 * amp[k])
        rounding[a:b] = np.maximum(rounding[a:b], ROUNDING.get(s.vowel, 0.0))
        if s.stressed:
            mid = 0.5 * (vowel_on[k] + vowel_off[k])
            accent = np.maximum(accent, amp[k] * np.exp(-0.5 * ((t - mid) / 0.09) ** 2))
    mouth = _smooth(mouth, 9)  # ~45 ms of jaw inertia
    mouth /= max(float(mouth.max()), 1e-6)
    return Plan(
        syllables=syl,
        onsets=onsets,
        vowel_on=vowel_on,
        vowel_off=vowel_off,
        ends=ends,
        amp=amp,
        mouth=mouth,
        rounding=_smooth(rounding, 13),
        accent=accent,
    )


def _f0_contour(plan: Plan, cues: VoiceCues, voice: Voice, n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / CONTROL_HZ
    start, end = float(plan.onsets[0]), float(plan.ends[-1])
    st = np.full(n, cues.pitch_st)
    st -= 0.35 * cues.range_st * np.clip((t - start) / max(end - start, 1e-3), 0.0, 1.0)
    heights = 0.5 + 0.5 * rng.random(len(plan.syllables))
    for k, s in enumerate(plan.syllables):
        if s.stressed:
            mid = 0.5 * (plan.vowel_on[k] + plan.vowel_off[k])
            st += cues.range_st * heights[k] * np.exp(-0.5 * ((t - mid) / 0.07) ** 2)
    last = float(plan.vowel_on[-1])
    st -= 0.3 * cues.range_st * np.clip((t - last) / max(end - last, 1e-3), 0.0, 1.0)
    st += 0.4 * _smooth(rng.standard_normal(n), 41) * np.sqrt(41 / 4)
    f0 = voice.f0_hz * 2.0 ** (st / 12.0)
    return f0 * (1.0 + cues.tremor * np.sin(2 * np.pi * 5.5 * t + rng.uniform(0, 2 * np.pi)))


def _glottal(f0: np.ndarray, cues: VoiceCues, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Differentiated Rosenberg pulses (jitter, shimmer) and the open-phase indicator, per sample.

    Jitter and shimmer are drawn per glottal cycle: the cycle index of the unperturbed phase selects
    each cycle's period and amplitude factor.
    """
    max_cycles = int(n / SR * 800) + 8
    zj, za = rng.standard_normal(max_cycles), rng.standard_normal(max_cycles)
    cycle = np.minimum(np.floor(np.cumsum(f0) / SR).astype(np.int64), max_cycles - 1)
    phase = np.cumsum(f0 * np.maximum(1.0 - cues.jitter * zj[cycle], 0.5)) / SR
    cycle = np.minimum(np.floor(phase).astype(np.int64), max_cycles - 1)
    frac = phase - np.floor(phase)
    oq = cues.open_q
    tp, tn = 0.66 * oq, 0.34 * oq
    flow = np.where(
        frac < tp,
        0.5 - 0.5 * np.cos(np.pi * frac / tp),
        np.where(frac < oq, np.cos(0.5 * np.pi * (frac - tp) / tn), 0.0),
    )
    flow *= np.maximum(1.0 + cues.shimmer * za, 0.2)[cycle]
    d = np.diff(flow, prepend=0.0)
    return d / max(float(np.sqrt(np.mean(d**2))), 1e-9), (frac < oq).astype(np.float64)


def _segment_envelopes(plan: Plan, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voicing, frication and burst envelopes at SR."""
    voiced, fric, burst = np.zeros(n), np.zeros(n), np.zeros(n)
    ramp = int(0.02 * SR)
    for k, s in enumerate(plan.syllables):
        a0, a1, a2, a3 = (int(x * SR) for x in (plan.onsets[k], plan.vowel_on[k], plan.vowel_off[k], plan.ends[k]))
        a3 = min(a3, n)
        if a2 > a1:
            voiced[a1:a2] = np.maximum(voiced[a1:a2], plan.amp[k] * _raised_cos(a2 - a1, ramp))
        for kind, lo, hi in ((s.onset, a0, a1), (s.coda, a2, a3)):
            if hi <= lo:
                continue
            if kind == "fric":
                fric[lo:hi] += 0.3 * plan.amp[k] * _raised_cos(hi - lo, int(0.015 * SR))
            elif kind == "son":
                voiced[lo:hi] = np.maximum(voiced[lo:hi], 0.35 * plan.amp[k] * _raised_cos(hi - lo, ramp // 2))
            elif kind == "stop":
                b = max(lo, hi - int(0.02 * SR))  # closure silence, then a short burst
                burst[b:hi] += 0.3 * plan.amp[k] * np.exp(-np.arange(hi - b) / (0.005 * SR))
    return voiced, fric, burst


def _formant_tracks(plan: Plan, voice: Voice, times: np.ndarray) -> np.ndarray:
    """(len(times), 4) formant frequencies: vowel targets at nucleus centres, consonant loci at onsets."""
    knots_t, knots_f = [], []
    for k, s in enumerate(plan.syllables):
        target = np.array(VOWELS[s.vowel])
        if s.onset != "none":
            locus = target.copy()
            locus[0] = 280.0
            locus[1] = 0.5 * target[1] + 0.5 * 1500.0
            knots_t.append(plan.onsets[k] + 0.5 * (plan.vowel_on[k] - plan.onsets[k]))
            knots_f.append(locus)
        knots_t.append(0.5 * (plan.vowel_on[k] + plan.vowel_off[k]))
        knots_f.append(target)
    kt, kf = np.array(knots_t), np.array(knots_f) * voice.formant_scale
    return np.stack([np.interp(times, kt, kf[:, j]) for j in range(4)], axis=1)


def _formant_filter(x: np.ndarray, formants: np.ndarray, bandwidths: np.ndarray) -> np.ndarray:
    """Time-varying cascade of four Klatt resonators (unit DC gain) by windowed FFT overlap-add.

    ``x`` has ``len(formants) * _HOP`` samples; ``formants[j]`` applies around sample ``j * _HOP``. Each
    Hann-windowed frame (50 % overlap, sums to one) is filtered with the exact resonator response;
    the zero-padded FFT leaves 44 ms for the impulse response tail (no circular wrap for B >= 60 Hz).
    """
    n_frames = len(formants)
    xp = np.concatenate([np.zeros(_HOP), x, np.zeros(_HOP)])
    idx = np.arange(n_frames)[:, None] * _HOP + np.arange(2 * _HOP)[None, :]
    win = np.hanning(2 * _HOP + 1)[:-1]
    spec = np.fft.rfft(xp[idx] * win, _NFFT)
    T = 1.0 / SR
    c = np.broadcast_to(-np.exp(-2 * np.pi * bandwidths * T), formants.shape)
    b = 2 * np.exp(-np.pi * bandwidths * T) * np.cos(2 * np.pi * np.minimum(formants, 0.45 * SR) * T)
    # denominator polynomial in z^-1 of the whole cascade, evaluated on the FFT grid by an rfft
    den = np.zeros((n_frames, 9))
    den[:, 0] = 1.0
    for k in range(4):
        prev = den.copy()
        den[:, 1:] -= b[:, k, None] * prev[:, :-1]
        den[:, 2:] -= c[:, k, None] * prev[:, :-2]
    gain = (1.0 - b - c).prod(axis=1)[:, None]
    resp = gain / np.fft.rfft(den, _NFFT)
    y = np.fft.irfft(spec * resp, _NFFT)
    chunks = -(-_NFFT // _HOP)
    y = np.pad(y, ((0, 0), (0, chunks * _HOP - _NFFT))).reshape(n_frames, chunks, _HOP)
    out = np.zeros((n_frames + chunks, _HOP))
    for k in range(chunks):
        out[k : k + n_frames] += y[:, k]
    return out.reshape(-1)[_HOP : _HOP + len(x)]


_FRIC_SOS = signal.butter(4, [2500, 7000], btype="bandpass", fs=SR, output="sos")
_BURST_SOS = signal.butter(2, 1000, btype="highpass", fs=SR, output="sos")


def synthesize(plan: Plan, cues: VoiceCues, voice: Voice, duration_s: float, rng: np.random.Generator) -> np.ndarray:
    """Render ``plan`` with the given voice and prosody cues: float32 mono at :data:`SR`, peak < 1."""
    n_blocks = int(np.ceil(duration_s * SR / _HOP))
    n = n_blocks * _HOP
    f0_ctrl = _f0_contour(plan, cues, voice, int(np.ceil(duration_s * CONTROL_HZ)) + 2, rng)
    f0 = np.interp(np.arange(n) / SR, np.arange(len(f0_ctrl)) / CONTROL_HZ, f0_ctrl)
    pulses, open_phase = _glottal(f0, cues, n, rng)
    voiced, fric, burst = _segment_envelopes(plan, n)
    breath = float(np.clip(cues.breath + voice.breath, 0.0, 0.95))
    noise = rng.standard_normal((3, n))
    aspiration = noise[0] * (0.3 + 0.7 * open_phase) * breath * 1.2
    excitation = (pulses * (1.0 - 0.5 * breath) + aspiration) * voiced
    centres = np.arange(n_blocks + 1) * _HOP / SR
    bw = _BANDWIDTHS * (1.0 + 1.5 * breath)
    y = _formant_filter(excitation, _formant_tracks(plan, voice, centres), bw)
    y += 0.5 * signal.sosfilt(_FRIC_SOS, noise[1]) * fric + 0.5 * signal.sosfilt(_BURST_SOS, noise[2]) * burst
    y = y - cues.tilt * np.concatenate([[0.0], y[:-1]])
    speech = voiced > 0.3
    rms = float(np.sqrt(np.mean(y[speech] ** 2))) if speech.any() else 1.0
    y *= 10.0 ** ((-27.0 + cues.loud_db + voice.loud_db) / 20.0) / max(rms, 1e-9)
    y += 10.0 ** (-62.0 / 20.0) * _smooth(rng.standard_normal(n), 3)
    mag = np.abs(y)
    y = np.where(mag > 0.8, np.sign(y) * (0.8 + 0.19 * np.tanh((mag - 0.8) / 0.19)), y)
    return y[: round(duration_s * SR)].astype(np.float32)


def resample(x: np.ndarray, rate: int) -> np.ndarray:
    """Resample a :data:`SR` signal to ``rate`` (polyphase)."""
    if rate == SR:
        return x
    g = np.gcd(rate, SR)
    return signal.resample_poly(x, rate // g, SR // g).astype(np.float32)
