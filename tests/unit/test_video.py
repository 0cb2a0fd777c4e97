"""Decoding with PyAV: real timestamps, rotation, VFR, windows, frame folders, MJPEG face clips."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from avf.data import video
from avf.data.video import MediaError
from tests.support import media


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("video")
    return {
        "cfr": media.write_clip(d / "cfr.mp4", seconds=1.0, size=(128, 96)),
        "vfr": media.write_clip(d / "vfr.mkv", seconds=1.6, vfr=True, size=(96, 96)),
        "rot90": media.write_clip(d / "rot90.mp4", seconds=0.4, size=(72, 128), rotation=90),
        "rot270": media.write_clip(d / "rot270.mp4", seconds=0.4, size=(72, 128), rotation=270),
        "avi": media.write_clip(d / "clip.avi", seconds=0.6, size=(96, 96)),
    }


def test_probe_reports_container_codec_size_rate_and_audio(clips: dict[str, Path]) -> None:
    info = video.probe(clips["cfr"])
    assert (info.container, info.codec, info.width, info.height) == ("mov,mp4,m4a,3gp,3g2,mj2", "h264", 128, 96)
    assert info.fps == pytest.approx(25.0) and info.num_frames == 25 and info.rotation == 0
    assert info.has_audio and info.audio_rate == 16000 and info.audio_channels == 1
    assert info.duration_s == pytest.approx(1.0, abs=0.05)


def test_constant_frame_rate_timestamps_are_pts_seconds(clips: dict[str, Path]) -> None:
    frames, times = video.read_video(clips["cfr"])
    assert frames.shape == (25, 96, 128, 3) and frames.dtype == np.uint8
    np.testing.assert_allclose(times, np.arange(25) / 25, atol=1e-6)


def test_variable_frame_rate_keeps_real_timestamps(clips: dict[str, Path]) -> None:
    _, times = video.read_video(clips["vfr"])
    expected = media.vfr_times(40)[: len(times)]
    np.testing.assert_allclose(times, expected, atol=1.5e-3)  # Matroska stores milliseconds
    steps = np.round(np.diff(times), 3)
    assert {0.04, 0.08} <= set(steps.tolist())  # both frame durations are present


@pytest.mark.parametrize("name", ["rot90", "rot270"])
def test_rotation_metadata_is_honoured(clips: dict[str, Path], name: str) -> None:
    info = video.probe(clips[name])
    assert (info.width, info.height, info.rotation) == (72, 128, int(name[3:]))
    frames, _ = video.read_video(clips[name])
    assert frames.shape[1:] == (128, 72, 3)  # portrait, as displayed
    original = media.face_frames(1, (72, 128))[0]
    assert np.abs(frames[0].astype(int) - original).mean() < 8  # not rotated or mirrored
    wrong = np.rot90(original, 2)
    assert np.abs(frames[0].astype(int) - wrong).mean() > 20


def test_warp_samples_display_coordinates_on_rotated_frames(clips: dict[str, Path]) -> None:
    frame = next(video.iter_frames(clips["rot90"]))
    full = frame.image.rgb()
    crop = frame.image.warp(np.array([[1.0, 0, 10], [0, 1.0, 20]]), 48)  # identity map shifted by (10, 20)
    assert np.abs(crop.astype(int) - full[20:68, 10:58]).mean() < 3
    half = frame.image.rgb(max_side=64)
    assert max(half.shape[:2]) == 64 and half.shape[0] > half.shape[1]


def test_start_end_window_seeks_and_reindexes(clips: dict[str, Path]) -> None:
    frames = list(video.iter_frames(clips["cfr"], start=0.4, end=0.6))
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    np.testing.assert_allclose([f.time for f in frames], [0.40, 0.44, 0.48, 0.52, 0.56], atol=1e-6)


def test_avi_container_decodes(clips: dict[str, Path]) -> None:
    frames, times = video.read_video(clips["avi"])
    assert len(frames) == 15 and times[0] == 0.0


def test_image_folder_is_sorted_naturally_with_nominal_times(tmp_path: Path) -> None:
    for i in (10, 2, 1):
        img = np.full((16, 16, 3), i * 20, np.uint8)
        cv2.imwrite(str(tmp_path / f"{i}.jpg"), img)
    frames = list(video.iter_image_folder(tmp_path, fps=10.0))
    assert [round(float(f.image.rgb().mean()) / 20) for f in frames] == [1, 2, 10]
    assert [f.time for f in frames] == [0.0, 0.1, 0.2]
    (tmp_path / "11.jpg").write_bytes(b"not an image")
    with pytest.raises(MediaError, match=r"11\.jpg: unreadable image"):
        list(video.iter_image_folder(tmp_path))


def test_jpeg_clip_roundtrip_keeps_bytes_and_times(tmp_path: Path) -> None:
    frames = media.face_frames(5, (64, 64))
    jpegs = [video.encode_jpeg(f, 90) for f in frames]
    times = [1.0, 1.04, 1.10, 1.14, 1.30]
    video.write_jpeg_clip(tmp_path / "c.mkv", jpegs, times, 64)
    back, rel = video.read_jpeg_clip(tmp_path / "c.mkv")
    assert back == jpegs
    np.testing.assert_allclose(rel, np.array(times) - 1.0, atol=1e-3)
    assert np.abs(video.decode_jpeg(back[0]).astype(int) - frames[0]).mean() < 8
    decoded, _ = video.read_video(tmp_path / "c.mkv")  # a normal, playable video file
    assert decoded.shape == (5, 64, 64, 3)


@pytest.mark.parametrize("face", media.FACES)
def test_jpeg_decoding_gives_opencvs_pixels_straight_into_a_buffer(face: str) -> None:
    """The loader's decoder (simplejpeg) against OpenCV's, the decoder the face crops were checked with."""
    for size, quality in (((160, 160), 90), ((224, 160), 75), ((97, 61), 95)):
        frame = media.face_frames(1, size, face=face)[0]
        data = video.encode_jpeg(frame, quality)
        reference = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(video.decode_jpeg(data), reference)
        out = np.zeros((2, size[1], size[0], 3), np.uint8)
        assert np.shares_memory(video.decode_jpeg(data, out[1]), out[1])
        np.testing.assert_array_equal(out[1], reference)
        assert not out[0].any()
        assert video.jpeg_size(data) == (size[1], size[0])
    with pytest.raises(ValueError, match="a 97x61 px image, not 61x97"):
        video.decode_jpeg(data, np.zeros((97, 61, 3), np.uint8))
    with pytest.raises(TypeError, match="writable, contiguous uint8"):  # a caller's bug, not corrupt data
        video.decode_jpeg(data, np.zeros((61, 97, 3), np.float32))
    with pytest.raises(ValueError):
        video.decode_jpeg(data[: len(data) // 2])  # truncated: libjpeg would fill the rest with grey
    with pytest.raises(ValueError, match="not a readable JPEG header"):
        video.jpeg_size(b"\x89PNG\r\n\x1a\n")


def test_errors_name_the_file_and_the_reason(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match=r"nope\.mp4: file not found"):
        video.probe(tmp_path / "nope.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(MediaError, match=r"empty\.mp4: empty file \(0 bytes\)"):
        list(video.iter_frames(tmp_path / "empty.mp4"))
    media.random_bytes(tmp_path / "noise.mp4")
    with pytest.raises(MediaError, match=r"noise\.mp4: cannot open: .*corrupt, truncated or not a media file"):
        list(video.iter_frames(tmp_path / "noise.mp4"))
    media.write_wav(tmp_path / "sound.mp4", media.tone_schedule((440,), 0.5, 16000), 16000)
    with pytest.raises(MediaError, match=r"sound\.mp4: no video stream \(container 'wav'\)"):
        list(video.iter_frames(tmp_path / "sound.mp4"))
    with pytest.raises(MediaError, match="not an MJPEG face clip"):
        video.read_jpeg_clip(media.write_clip(tmp_path / "x.mp4", seconds=0.2, audio=False))
