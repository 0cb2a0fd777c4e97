"""The embedded demo dataset generator (``avf data synth``): layout, media, faces, determinism, cue design."""

from __future__ import annotations

import json
import wave
from dataclasses import astuple
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from avf.config.data import SynthConfig
from avf.demo import cues, faces, generate_all, layouts, voice
from avf.demo.generate import Actor, identity, render_clip

# 2 RAVDESS actors x (neutral + happy/surprised at both intensities) + 1 CREMA-D actor x IEO (ANG/HAP at
# LO and HI, NEU at XX): 10 mp4 + 5 flv/wav, 2 s each.
SMALL = SynthConfig(
    ravdess_actors=2,
    emotions=(1, 3, 8),
    intensities=(1, 2),
    cremad_actors=1,
    cremad_sentences=("IEO",),
    cremad_emotions=("ANG", "NEU", "HAP"),
    cremad_levels=("LO", "HI"),
    duration_s=2.0,
)
N_RAVDESS, N_CREMAD = 10, 5


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "raw"
    summary = generate_all(SMALL, out, workers=2)
    assert len(summary.clips) == N_RAVDESS + N_CREMAD
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _decode(path: Path) -> tuple[list[np.ndarray], np.ndarray, int, str]:
    """RGB frames, mono audio, audio rate and container format name."""
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        rate = c.streams.audio[0].sample_rate
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
        fmt = c.format.name
    return frames, audio, rate, fmt


# -- layout -----------------------------------------------------------------------------------------------
def test_layout_and_names_follow_the_real_releases(generated: Path) -> None:
    assert sorted(p.name for p in generated.iterdir()) == ["cremad", "ravdess", "synth.json"]
    mp4 = sorted(generated.glob("ravdess/*/*"))
    assert len(mp4) == N_RAVDESS
    for p in mp4:
        m = layouts.RAVDESS_RE.match(p.name)
        assert m, p.name
        assert p.parent.name == f"Actor_{m.group(5)}"
        assert (m.group(1), m.group(2)) != ("01", "02"), "RAVDESS has no strong neutral"
    assert {p.parent.name for p in mp4} == {"Actor_01", "Actor_02"}
    assert sorted(p.name for p in (generated / "cremad").iterdir()) == ["AudioWAV", "VideoFlash"]
    flv = sorted(p.stem for p in (generated / "cremad/VideoFlash").iterdir())
    wav = sorted(p.stem for p in (generated / "cremad/AudioWAV").iterdir())
    assert flv == wav == ["1001_IEO_ANG_HI", "1001_IEO_ANG_LO", "1001_IEO_HAP_HI", "1001_IEO_HAP_LO", "1001_IEO_NEU_XX"]
    assert all(layouts.CREMAD_RE.match(s) for s in flv)


def test_cremad_levels_only_on_ieo_and_never_neutral() -> None:
    cfg = SynthConfig(ravdess_actors=1, cremad_actors=2, cremad_sentences=("DFA", "IEO"), cremad_levels=("LO", "MD"))
    names = [c.name for a in layouts.cremad_actors(cfg) for c in a.clips]
    assert len(names) == 2 * (6 + 5 * 2 + 1)
    for n in names:
        _, sentence, emo, level = n.split("_")
        assert (level != "XX") == (sentence == "IEO" and emo != "NEU"), n
    assert {n[:4] for n in names} == {"1001", "1046"}
    ids = [layouts.cremad_actor_id(k, 12) for k in range(12)]  # default: spread over the five official folds
    assert ids[0] == 1001 and len(set(ids)) == 12 and max(ids) <= 1091
    assert {min((i - 1001) // 18, 4) for i in ids} == {0, 1, 2, 3, 4}
    assert [layouts.cremad_actor_id(k, 91) for k in range(91)] == list(range(1001, 1092))


def test_default_size_is_in_the_demo_budget() -> None:
    cfg = SynthConfig()
    n = sum(len(a.clips) for a in layouts.plan_actors(cfg))
    assert n == 24 * 8 + 12 * 6 * 2 == 336
    large = SynthConfig(preset="large")
    assert sum(len(a.clips) for a in layouts.ravdess_actors(large)) == 1440  # the real speech AV count
    assert SynthConfig(preset="large", cremad_actors=3).cremad_actors == 3  # explicit values win


@pytest.mark.parametrize(
    "bad",
    [
        {"emotions": (0,)},
        {"statements": (3,)},
        {"intensities": (1, 1)},
        {"cremad_levels": ("XX",)},
        {"cremad_sentences": ("ABC",)},
        {"preset": "huge"},
        {"colour": 1},
        {"duration_s": 0.5},
    ],
)
def test_config_is_strict(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SynthConfig(**bad)


def test_adapters_read_the_output_unchanged(generated: Path) -> None:
    from avf.data.adapters import get_adapter

    rav = get_adapter("ravdess").scan(generated / "ravdess")
    assert not rav.problems and len(rav.clips) == N_RAVDESS
    for clip in rav.clips:
        assert clip.label == int(clip.video_path.name.split("-")[2]) - 1
    crema = get_adapter("cremad").scan(generated / "cremad")
    assert not crema.problems and len(crema.clips) == N_CREMAD
    assert all(c.audio_path is not None and c.audio_path.suffix == ".wav" for c in crema.clips)


# -- media ------------------------------------------------------------------------------------------------
def test_videos_decode_with_expected_streams(generated: Path) -> None:
    for path in sorted(generated.glob("ravdess/*/*.mp4")) + sorted(generated.glob("cremad/VideoFlash/*.flv")):
        frames, audio, rate, fmt = _decode(path)
        assert ("mp4" in fmt) == (path.suffix == ".mp4")
        assert len(frames) == round(SMALL.duration_s * SMALL.fps)
        assert frames[0].shape == (SMALL.frame_size, SMALL.frame_size, 3)
        assert rate == SMALL.sample_rate
        assert abs(len(audio) / rate - SMALL.duration_s) < 0.1
        assert np.abs(audio).max() > 0.02  # someone is speaking
        with av.open(str(path)) as c2:
            assert c2.streams.video[0].codec_context.name == "h264"
            assert c2.streams.audio[0].codec_context.name == "aac"
            assert c2.streams.audio[0].codec_context.layout.nb_channels == 1
            assert float(c2.streams.video[0].average_rate) == pytest.approx(SMALL.fps, rel=1e-3)


def test_cremad_wavs_are_16k_mono_pcm16(generated: Path) -> None:
    for path in sorted(generated.glob("cremad/AudioWAV/*.wav")):
        with wave.open(str(path)) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
            assert w.getnframes() == round(SMALL.duration_s * 16000)
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        assert np.abs(pcm).max() > 500


def _detector() -> Any:
    from mediapipe.tasks.python import BaseOptions, vision

    from avf.assets import ASSET_DIR, verify

    if "face_detection_short_range.tflite" in verify():
        pytest.skip("face model missing: run `python -m avf.assets` (make setup does)")
    options = vision.FaceDetectorOptions(
        base_options=BaseOptions(model_asset_path=str(ASSET_DIR / "face_detection_short_range.tflite")),
        min_detection_confidence=0.5,
    )
    return vision.FaceDetector.create_from_options(options)


def _face_rate(detector: Any, path: Path, step: int) -> float:
    import mediapipe as mp

    frames = _decode(path)[0][::step]
    return float(
        np.mean([bool(detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=f)).detections) for f in frames])
    )


def test_mediapipe_finds_the_face(generated: Path) -> None:
    with _detector() as detector:
        for path in sorted(generated.glob("ravdess/*/*.mp4")) + sorted(generated.glob("cremad/VideoFlash/*.flv")):
            assert _face_rate(detector, path, step=7) >= 0.9, path.name


def test_generation_is_byte_identical_and_independent_of_workers(generated: Path, tmp_path: Path) -> None:
    again = tmp_path / "raw"
    generate_all(SMALL, again, workers=1)
    a, b = _files(generated), _files(again)
    assert sorted(a) == sorted(b)
    assert [k for k in a if a[k] != b[k]] == []


def test_rerun_replaces_the_output_atomically(tmp_path: Path) -> None:
    cfg = SynthConfig(ravdess_actors=1, emotions=(5,), cremad_actors=0, duration_s=1.5)
    out = tmp_path / "raw"
    (out / "ravdess" / "Actor_09").mkdir(parents=True)
    (out / "stale.txt").write_text("old")
    summary = generate_all(cfg, out, workers=1)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "ravdess/Actor_01/01-01-05-01-01-01-01.mp4",
        "synth.json",
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["raw"]  # no temp dir left next to it
    manifest = json.loads((out / "synth.json").read_text())
    assert manifest["clips"][0]["emotion"] == "angry" and manifest["config"]["emotions"] == [5]
    from rich.console import Console

    console = Console(record=True, width=120)
    console.print(summary.table())
    text = console.export_text()
    assert "angry" in text and "ravdess" in text and summary.seconds == pytest.approx(1.5, abs=0.05)


# -- cue design -------------------------------------------------------------------------------------------
def _std_gap(a: tuple[float, ...], b: tuple[float, ...], sd: tuple[float, ...]) -> float:
    return float(np.max(np.abs(np.subtract(a, b)) / np.asarray(sd)))


def test_cue_table_design_video_only_and_audio_only_pairs() -> None:
    vo, ao = cues.video_only_pairs(), cues.audio_only_pairs()
    assert set(vo) == {("happy", "surprised"), ("sad", "fearful")}
    assert set(ao) == {("neutral", "calm"), ("angry", "disgust")}
    fsd, vsd = astuple(cues.FACE_SD), astuple(cues.VOICE_SD)
    for a, b in vo:  # identical voice distribution, clearly different faces
        assert cues.EMOTION_CUES[a][1] == cues.EMOTION_CUES[b][1]
        fa, fb = (astuple(cues.FACE_CLASSES[cues.EMOTION_CUES[e][0]]) for e in (a, b))
        assert _std_gap(fa, fb, fsd) >= 3.0
    for a, b in ao:  # identical face distribution, clearly different voices, same speaking rate
        assert cues.EMOTION_CUES[a][0] == cues.EMOTION_CUES[b][0]
        va, vb = (cues.VOICE_CLASSES[cues.EMOTION_CUES[e][1]] for e in (a, b))
        assert _std_gap(astuple(va), astuple(vb), vsd) >= 3.0
        assert va.rate == vb.rate  # the mouth follows the syllable timing: rate would leak into video
    for i, a in enumerate(cues.EMOTIONS):  # every other pair differs in both modalities
        for b in cues.EMOTIONS[i + 1 :]:
            if (a, b) in vo or (a, b) in ao:
                continue
            (fa, va), (fb, vb) = cues.EMOTION_CUES[a], cues.EMOTION_CUES[b]
            assert _std_gap(astuple(cues.FACE_CLASSES[fa]), astuple(cues.FACE_CLASSES[fb]), fsd) >= 1.5, (a, b)
            assert _std_gap(astuple(cues.VOICE_CLASSES[va]), astuple(cues.VOICE_CLASSES[vb]), vsd) >= 1.5, (a, b)


def test_cue_sampling_depends_on_emotion_only_through_its_class() -> None:
    for strength in (1.0, 1.5):
        for a, b in cues.video_only_pairs():
            assert cues.sample_voice(a, strength, np.random.default_rng(7)) == cues.sample_voice(
                b, strength, np.random.default_rng(7)
            )
            assert cues.sample_face(a, strength, np.random.default_rng(7)) != cues.sample_face(
                b, strength, np.random.default_rng(7)
            )
        for a, b in cues.audio_only_pairs():
            assert cues.sample_face(a, strength, np.random.default_rng(7)) == cues.sample_face(
                b, strength, np.random.default_rng(7)
            )
            assert cues.sample_voice(a, strength, np.random.default_rng(7)) != cues.sample_voice(
                b, strength, np.random.default_rng(7)
            )


def test_strong_intensity_exaggerates_cues() -> None:
    neutral_face = np.array(astuple(cues.FACE_CLASSES["rest"]))
    neutral_voice = np.array(astuple(cues.VOICE_CLASSES["modal"]))
    fsd, vsd = np.array(astuple(cues.FACE_SD)), np.array(astuple(cues.VOICE_SD))
    for emo in ("happy", "angry", "sad", "surprised"):
        dist = {}
        for s in (1.0, 1.5):
            rng = np.random.default_rng(0)
            f = np.array([astuple(cues.sample_face(emo, s, rng)) for _ in range(200)]).mean(0)
            v = np.array([astuple(cues.sample_voice(emo, s, rng)) for _ in range(200)]).mean(0)
            dist[s] = np.linalg.norm((f - neutral_face) / fsd) + np.linalg.norm((v - neutral_voice) / vsd)
        assert dist[1.5] > 1.3 * dist[1.0], emo


def test_rendered_clips_realise_the_design() -> None:
    """Same actor and seed: a video-only pair gives identical audio, an audio-only pair identical frames."""
    cfg = SynthConfig(ravdess_actors=1, duration_s=1.5)
    actor = Actor.build(layouts.ravdess_actors(cfg)[0], cfg)
    text = layouts.RAVDESS_STATEMENTS[1]
    clip = {e: render_clip(actor, e, 1.0, text, 1234, cfg) for e in ("happy", "surprised", "neutral", "calm")}
    assert np.array_equal(clip["happy"].audio, clip["surprised"].audio)
    assert np.abs(clip["happy"].frames.astype(int) - clip["surprised"].frames).mean() > 1.0
    assert np.array_equal(clip["neutral"].frames, clip["calm"].frames)
    assert not np.array_equal(clip["neutral"].audio, clip["calm"].audio)
    rms = {e: float(np.sqrt(np.mean(clip[e].audio ** 2))) for e in ("neutral", "calm")}
    assert rms["calm"] < rms["neutral"]  # the soft voice is quieter


def test_audio_envelope_drives_the_mouth_in_a_generated_clip(generated: Path) -> None:
    manifest = json.loads((generated / "synth.json").read_text())
    row = next(r for r in manifest["clips"] if r["name"] == "01-01-03-02-01-01-02")  # strong happy, actor 02
    frames, audio, rate, _ = _decode(generated / row["video"])
    hop = rate // round(SMALL.fps)
    rms = np.array([np.sqrt(np.mean(audio[i * hop : (i + 1) * hop] ** 2)) for i in range(len(frames))])
    (x, y), u = row["mouth_xy"], row["iod_px"]
    box = (slice(int(y - 0.15 * u), int(y + 0.45 * u)), slice(int(x - 0.4 * u), int(x + 0.4 * u)))
    darkness = np.array([-f[box].mean() for f in frames])  # the open mouth shows a dark cavity
    assert np.corrcoef(rms, darkness)[0, 1] > 0.4


# -- actors and voice -------------------------------------------------------------------------------------
def test_ravdess_and_cremad_actors_are_distinct_identities() -> None:
    cfg = SynthConfig()
    ids = {a.key: identity(a, cfg) for a in layouts.plan_actors(cfg)}
    looks = [astuple(look)[1:10] for look, _ in ids.values()]
    voices = [(v.f0_hz, v.formant_scale) for _, v in ids.values()]
    assert len(set(looks)) == len(looks) == 36 and len(set(voices)) == 36
    assert {a.source for a in layouts.plan_actors(cfg)} == set(faces.SOURCE_NAMES)
    for a in layouts.ravdess_actors(cfg):  # odd RAVDESS actors are male: lower voices
        f0 = ids[a.key][1].f0_hz
        assert (f0 < 150) == (a.actor % 2 == 1)
    assert identity(layouts.plan_actors(cfg)[0], SynthConfig(seed=1)) != ids["ravdess:1"]


def test_syllables_and_voice_spectrum() -> None:
    syl = voice.syllabify("Kids are talking by the door")
    assert len(syl) == 7 and syl[0].stressed and not syl[1].stressed
    vc = cues.sample_voice("neutral", 1.0, np.random.default_rng(0))
    out = {}
    for male in (True, False):
        v = voice.actor_voice(male, np.random.default_rng(1))
        plan = voice.make_plan("Kids are talking by the door", vc.rate, 3.0, np.random.default_rng(2))
        y = voice.synthesize(plan, vc, v, 3.0, np.random.default_rng(3))
        assert y.dtype == np.float32 and len(y) == 3 * voice.SR and np.abs(y).max() < 1.0
        voiced = y[int(plan.vowel_on[2] * voice.SR) : int(plan.vowel_off[2] * voice.SR)]
        spec = np.abs(np.fft.rfft(voiced * np.hanning(len(voiced)), 1 << 15))
        freqs = np.fft.rfftfreq(1 << 15, 1 / voice.SR)
        band = (freqs > 70) & (freqs < 300)
        out[male] = freqs[band][np.argmax(spec[band])]  # lowest strong harmonic ~ F0
        assert 0.9 * v.f0_hz * 2 ** (-6 / 12) < out[male] < 1.1 * v.f0_hz * 2 ** (6 / 12)
    assert out[True] < out[False]
    assert plan.mouth.max() == pytest.approx(1.0) and plan.mouth[: int(0.1 * voice.CONTROL_HZ)].max() < 0.05


def test_face_tracks_shapes_and_ranges() -> None:
    plan = voice.make_plan("Dogs are sitting by the door", 4.0, 3.0, np.random.default_rng(0))
    t = np.arange(75) / 25
    jaw = {}
    for emo in ("neutral", "surprised"):
        fc = cues.sample_face(emo, 1.5, np.random.default_rng(0))
        expr, head = faces.face_tracks(fc, plan, t, 1.0, np.random.default_rng(1))
        assert expr.shape == (75, len(faces.EXPRESSIONS)) and head.shape == (75, len(faces.HEAD))
        jaw[emo] = expr[:, faces.EXPRESSIONS.index("jaw")]
        assert jaw[emo].min() >= 0.0 and jaw[emo].max() <= 1.5
    assert np.corrcoef(jaw["neutral"], plan.at(plan.mouth, t))[0, 1] > 0.9  # the mouth follows the syllables
    assert jaw["surprised"][t > 1.0].mean() > jaw["neutral"][t > 1.0].mean() + 0.3  # and drops in surprise


@pytest.mark.slow
def test_every_default_identity_is_found_by_mediapipe(tmp_path: Path) -> None:
    """All 36 default actors with the most deforming expressions (strong): faces found in most frames."""
    cfg = SynthConfig(
        emotions=(3, 4, 8),
        intensities=(2,),
        cremad_sentences=("DFA",),
        cremad_emotions=("FEA", "HAP", "SAD"),
        duration_s=1.5,
    )
    out = tmp_path / "raw"
    summary = generate_all(cfg, out, workers=2)
    assert len(summary.clips) == 24 * 3 + 12 * 3
    with _detector() as detector:
        for path in sorted(out.glob("ravdess/*/*.mp4")) + sorted(out.glob("cremad/VideoFlash/*.flv")):
            assert _face_rate(detector, path, step=6) >= 0.8, path.name
