"""The embedded demo dataset (``avf data synth``): deterministic talking-face videos in real layouts.

Output under ``out/``: ``ravdess/Actor_NN/01-01-EE-II-SS-RR-NN.mp4`` (H.264 + AAC 48 kHz, 25 fps, 3 s),
``cremad/VideoFlash/AAAA_SSS_EEE_LL.flv`` (H.264 + AAC) with ``cremad/AudioWAV/AAAA_SSS_EEE_LL.wav``
(16 kHz mono PCM16), and ``synth.json`` (config and every clip's drawn cues). RAVDESS actors 01..24
and CREMA-D actors (ids spread over 1001..1091) are different identities (own appearance and voice draws).

Faces are real photographs shipped by scikit-image and matplotlib, restyled per actor and animated by
landmark-anchored warps (:mod:`.faces`); the voice is a glottal-source/formant synthesiser
(:mod:`.voice`); the mouth opening follows the utterance's syllable envelope, so audio and video are
correlated.

Cue table (:mod:`.cues`; face class / voice class per emotion; CREMA-D uses the same six)::

    emotion    face class: video cues                          voice class: audio cues
    neutral    rest: no expression, slow small head motion     modal: 0 st, 3 st range, 4.0 syl/s, 0 dB
    calm       rest                                            soft: -1.5 st, narrow, 4.0 syl/s, -5 dB, breathy
    happy      smile: corners up, eyes narrowed, nodding       excited: +4 st, wide 7 st, 4.8 syl/s, +4 dB, bright
    surprised  surprise: brows up, eyes wide, jaw dropped      excited
    angry      frown: brows furrowed, corners down, shaking    tense: +3 st, 4.6 syl/s, +8 dB, pressed, bright
    disgust    frown                                           creaky: -3 st, 4.6 syl/s, -1 dB, jitter/shimmer
    sad        sad: corners down, inner brows up, head down    tremulous: +1.5 st, narrow, 3.3 syl/s, -4 dB,
    fearful    fear: lips stretched, brows up, eyes wide, fast    breathy, 5.5 Hz tremor
               small head motion                               tremulous

    video-only pairs (same voice distribution): happy/surprised, sad/fearful
    audio-only pairs (same face distribution):  neutral/calm, angry/disgust
    every other pair differs in both modalities.

Audio-only pairs share the speaking rate, and the mouth follows the peak-normalised syllable envelope,
so nothing of their voice difference reaches the video. Per clip, every cue is drawn around its class
mean (seeded); RAVDESS intensity 02 and CREMA-D levels scale the distance from neutral.
"""

from avf.demo.generate import SynthSummary, generate_all

__all__ = ["SynthSummary", "generate_all"]
