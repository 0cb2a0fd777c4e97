"""Audio extraction (16 kHz mono), timestamp alignment against a known tone schedule, Kaldi fbank windows."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torchaudio.compliance import kaldi

from avf.config.data import AudioConfig
from avf.data import audio
from tests.support import media

CFG = AudioConfig()
TONES = (300.0, 600.0, 1200.0, 2400.0)  # each for 0.5 s, cycling


def _peak_hz(x: np.ndarray, rate: int = 16000) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[spec.argmax()])


@pytest.fixture(scope="module")
def tone_bins() -> dict[float, int]:
    """The mel bin where each test tone peaks."""
    return {f: int(audio.log_mel(media.tone_schedule((f,), 1.0, 16000)[0], CFG).mean(0).argmax()) for f in TONES}


def _dominant_bin(window: torch.Tensor, first: int = 2, last: int = 20) -> int:
    return int(window[0, first:last].mean(0).argmax())


@pytest.mark.parametrize("name", ["clip.mp4", "clip.flv", "clip.avi"])
def test_window_at_t_shows_the_tone_playing_at_t(tmp_path: Path, tone_bins: dict[float, int], name: str) -> None:
    path = media.write_clip(tmp_path / name, seconds=4.0, tones=TONES, tone_every=0.5, size=(64, 64))
    wave = audio.load_audio(path)
    assert wave is not None and wave.rate == 16000
    full = audio.log_mel(audio.align(wave, 0.0), CFG)
    # windows start 100 ms after each tone change (FLV's AAC priming delays its audio by ~64 ms)
    for k in range(7):
        t = 0.5 * k + 0.1
        window = audio.fbank_window(full, t, t + 2.56, CFG)
        assert window.shape == (1, 256, 128)
        assert _dominant_bin(window) == tone_bins[TONES[k % 4]], f"{name}: window at {t:.2f}s"


def test_alignment_is_by_timestamp_when_audio_starts_late(tmp_path: Path, tone_bins: dict[float, int]) -> None:
    path = media.write_clip(tmp_path / "c.mp4", seconds=3.0, tones=TONES, tone_every=0.5, size=(64, 64))
    wave = audio.load_audio(path)
    assert wave is not None
    wave.start_s = 0.5  # as if the audio stream started 0.5 s after the video
    x = audio.align(wave, t0=0.0)
    assert np.all(x[:8000] == 0) and len(x) == len(wave.samples) + 8000
    window = audio.fbank_window(audio.log_mel(x, CFG), 0.6, 3.16, CFG)
    assert _dominant_bin(window) == tone_bins[TONES[0]]  # 0.6 s on the video clock = 0.1 s into the audio
    cut = audio.align(wave, t0=1.0, duration_s=1.0)  # sample 0 = video time 1.0 = audio time 0.5
    assert len(cut) == 16000 and _peak_hz(cut[:4000]) == pytest.approx(600, abs=10)


def test_8khz_stereo_is_resampled_to_16khz_mono(tmp_path: Path) -> None:
    path = media.write_clip(
        tmp_path / "s.mp4", seconds=2.0, tones=(1000.0,), sample_rate=8000, channels=2, size=(64, 64)
    )
    wave = audio.load_audio(path)
    assert wave is not None
    assert (wave.rate, wave.source_rate, wave.source_channels) == (16000, 8000, 2)
    assert len(wave.samples) / 16000 == pytest.approx(2.0, abs=0.07)
    mid = wave.samples[8000:24000]
    assert _peak_hz(mid) == pytest.approx(1000, abs=5)
    assert float(np.sqrt(np.mean(mid**2))) == pytest.approx(0.3 / math.sqrt(2), rel=0.1)  # channel mean, not sum


def test_48khz_is_resampled_with_the_same_length(tmp_path: Path) -> None:
    path = media.write_clip(tmp_path / "h.mkv", seconds=1.5, tones=(440.0,), sample_rate=48000, size=(64, 64))
    wave = audio.load_audio(path)
    assert wave is not None and wave.source_rate == 48000
    assert len(wave.samples) / 16000 == pytest.approx(1.5, abs=0.03)
    assert _peak_hz(wave.samples[4000:20000]) == pytest.approx(440, abs=5)


def test_fbank_matches_the_spec_recipe() -> None:
    x = media.tone_schedule(TONES, 3.0, 16000)[0] + 0.01 * np.random.default_rng(0).standard_normal(48000)
    x = x.astype(np.float32)

    def spec_fbank(t: torch.Tensor) -> torch.Tensor:
        return kaldi.fbank(
            t - t.mean(), htk_compat=True, sample_frequency=16000, use_energy=False, window_type="hanning",
            num_mel_bins=128, dither=0.0, frame_shift=10,
        )  # fmt: skip

    t = torch.from_numpy(x)[None]
    np.testing.assert_allclose(audio.log_mel(x, CFG), spec_fbank(t).numpy(), atol=1e-5)
    window = audio.window_from_waveform(x, 0.0, 2.56, CFG)
    ref = spec_fbank(t[:, :40960])
    assert ref.shape == (254, 128)  # 2.56 s -> 254 Kaldi frames, zero-padded to 256
    expected = torch.zeros(256, 128)
    expected[:254] = ref
    torch.testing.assert_close(window[0], (expected + 4.2677393) / (2 * 4.5689974))
    assert audio.num_fbank_frames(40960, CFG) == 254 and audio.num_fbank_frames(399, CFG) == 0


def test_sliced_full_clip_fbank_equals_the_windows_own_fbank() -> None:
    x = media.tone_schedule(TONES, 5.0, 16000)[0] + 0.01 * np.random.default_rng(1).standard_normal(80000)
    x = x.astype(np.float32)
    full = audio.log_mel(x, CFG)
    for start in (0.0, 1.0, 1.37, 2.9):  # on and off the 10 ms grid; the last runs past the end
        a = audio.fbank_window(full, start, start + 2.56, CFG)
        b = audio.window_from_waveform(x, round(start, 2), round(start, 2) + 2.56, CFG)
        torch.testing.assert_close(a, b, atol=3e-4, rtol=0)
    half = audio.fbank_window(full.astype(np.float16), 1.0, 3.56, CFG)  # shards store float16
    torch.testing.assert_close(half, audio.fbank_window(full, 1.0, 3.56, CFG), atol=1e-3, rtol=0)


def test_gain_in_the_log_domain_equals_a_waveform_gain() -> None:
    x = media.tone_schedule(TONES, 3.0, 16000)[0] + 0.01 * np.random.default_rng(2).standard_normal(48000)
    x = x.astype(np.float32)
    full = audio.log_mel(x, CFG)
    a = audio.fbank_window(full, 0.0, 2.56, CFG, gain=1.3)
    b = audio.window_from_waveform(x * 1.3, 0.0, 2.56, CFG)
    diff = (a - b).abs()
    assert float((diff > 1e-3).float().mean()) < 0.005  # only bands at Kaldi's energy floor differ
    assert float(diff.max()) <= 2 * math.log(1.3) / (2 * 4.5689974) + 1e-4
    pad = audio.fbank_window(full, 2.0, 4.56, CFG, gain=1.3)[0, 150:]  # past the end: untouched padding
    torch.testing.assert_close(pad, torch.full_like(pad, 4.2677393 / (2 * 4.5689974)))


def test_missing_and_silent_audio_are_flagged(tmp_path: Path) -> None:
    mute = media.write_clip(tmp_path / "mute.mp4", seconds=1.0, audio=False, size=(64, 64))
    clip = audio.extract_clip_audio(mute, None, 0.0, 1.0, CFG)
    assert (clip.status, clip.has_audio, clip.reason) == ("missing", False, "no audio track")
    assert len(clip.samples) == 16000 and not clip.samples.any()
    quiet = media.write_clip(tmp_path / "quiet.mp4", seconds=1.0, tones=(0.0,), size=(64, 64))
    clip = audio.extract_clip_audio(quiet, None, 0.0, 1.0, CFG)
    assert clip.status == "silent" and clip.has_audio and clip.reason.startswith("silent audio: ")
    loud = media.write_clip(tmp_path / "loud.mp4", seconds=1.0, size=(64, 64))
    clip = audio.extract_clip_audio(loud, None, 0.2, 0.5, CFG)
    assert clip.status == "ok" and len(clip.samples) == 8000 and clip.level_dbfs > -20


def test_separate_audio_file_starts_at_the_given_time(tmp_path: Path) -> None:
    vid = media.write_clip(tmp_path / "v.mp4", seconds=2.0, audio=False, size=(64, 64))
    wav = media.write_wav(tmp_path / "a.wav", media.tone_schedule((500.0, 1500.0), 2.0, 22050, every=1.0), 22050)
    clip = audio.extract_clip_audio(vid, wav, t0=11.0, duration_s=1.0, cfg=CFG, source_start=10.0)
    assert clip.status == "ok" and clip.source_rate == 22050
    assert _peak_hz(clip.samples[:8000]) == pytest.approx(1500, abs=10)  # 1 s into the wav


def test_wav_roundtrip_is_16_bit_mono(tmp_path: Path) -> None:
    x = media.tone_schedule((440.0,), 0.5, 16000)[0]
    audio.write_wav(tmp_path / "a.wav", x)
    back = audio.read_wav(tmp_path / "a.wav")
    np.testing.assert_allclose(back, x, atol=1 / 16000)
    media.write_wav(tmp_path / "st.wav", np.stack([x, x]), 16000)
    with pytest.raises(audio.MediaError, match="expected 16-bit mono 16000 Hz wav"):
        audio.read_wav(tmp_path / "st.wav")
