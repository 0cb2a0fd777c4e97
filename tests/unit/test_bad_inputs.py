"""Every kind of bad input ends up in failures.csv with the file and a clear reason; good odd inputs pass."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from avf.config.data import DataConfig, DatasetSpec, FaceConfig
from avf.data.adapters.base import Adapter, Problem, RawClip, ScanResult
from avf.data.audio import read_wav
from avf.data.report import StageReport
from avf.data.stages import scan
from avf.data.stages.audio import run_audio
from avf.data.stages.faces import run_faces
from tests.support import media

ROOT = Path(__file__).resolve().parents[2]
FACE = FaceConfig(
    detector_model=str(ROOT / "models/assets/face_detection_short_range.tflite"),
    landmark_model=str(ROOT / "models/assets/face_landmark.tflite"),
)


def _cfg(**audio: Any) -> DataConfig:
    return DataConfig(face=FACE, workers=1, audio=audio or {})  # type: ignore[arg-type]


def _spec(raw: Path, adapter: str = "folder", **options: Any) -> DatasetSpec:
    return DatasetSpec(name="bad", adapter=adapter, raw_dir=str(raw), options=options)


def _failures(report: StageReport, tmp: Path) -> dict[str, str]:
    out = report.write(tmp / "reports", 0.2)
    with open(out / "failures.csv") as f:
        return {Path(row["file"]).name: row["reason"] for row in csv.DictReader(f)}


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One folder with every case, through the faces and audio stages (fill policy)."""
    tmp = tmp_path_factory.mktemp("bad")
    raw = tmp / "raw" / "s"
    short = {"seconds": 1.0, "size": (128, 128)}
    media.write_clip(raw / "good.mp4", **short)
    media.truncate(media.write_clip(raw / "truncated.mp4", **short), 0.5)  # index at the end: cannot open
    media.truncate(media.write_clip(raw / "truncated_faststart.mp4", faststart=True, **short), 0.5)
    media.random_bytes(raw / "random.mp4")
    (raw / "zero_length.mp4").write_bytes(b"")
    media.write_no_frames(raw / "zero_frames.mp4")
    media.write_wav(raw / "sound_only.mp4", media.tone_schedule((440.0,), 1.0, 16000), 16000)  # wrong container
    media.write_clip(raw / "flash_video.mp4.flv", **short)
    (raw / "flash_video.mp4.flv").rename(raw / "really_flv.mp4")  # FLV bytes under an .mp4 name
    media.write_clip(raw / "vfr.mkv", seconds=1.6, vfr=True, size=(128, 128))
    media.write_clip(raw / "portrait.mp4", seconds=1.0, size=(96, 160), rotation=90)
    media.write_clip(raw / "no_audio.mp4", audio=False, **short)
    media.write_clip(raw / "stereo8k.mp4", sample_rate=8000, channels=2, tones=(1000.0,), **short)
    media.write_clip(raw / "no_face.mp4", face=None, **short)
    media.write_clip(raw / "silent.mp4", tones=(0.0,), **short)
    media.write_clip(raw / "a b.mp4", **short)  # clip id 's-a_b' ...
    media.write_clip(raw / "a_b.mp4", **short)  # ... collides with this one's
    faces, audio = tmp / "faces", tmp / "audio"
    face_report, audio_report = StageReport("faces", "bad"), StageReport("audio", "bad")
    run_faces(_spec(tmp / "raw"), faces, _cfg(), face_report)
    run_audio(_spec(tmp / "raw"), faces, audio, _cfg(), audio_report)
    return {
        "tmp": tmp,
        "raw": tmp / "raw",
        "faces": faces,
        "audio": audio,
        "face_failures": _failures(face_report, tmp),
        "audio_report": audio_report,
        "face_report": face_report,
    }


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("truncated.mp4", r"cannot open: .*(corrupt, truncated or not a media file|truncated file\?)"),
        ("truncated_faststart.mp4", r"decode error after \d+ frames: .*truncated|truncated or corrupt: only \d+ of 25"),
        ("random.mp4", r"cannot open: Invalid data found when processing input \(corrupt, truncated or not a media"),
        ("zero_length.mp4", r"empty file \(0 bytes\)"),
        ("zero_frames.mp4", r"no decodable video frames"),
        ("sound_only.mp4", r"no video stream \(container 'wav'\)"),
        ("no_face.mp4", r"no face: none found in 5 sampled frames"),
        ("a_b.mp4", r"duplicate clip id 's-a_b' \(first seen at .*a b\.mp4\); skipped"),
    ],
)
def test_bad_files_are_reported_with_their_reason(processed: dict[str, Any], name: str, reason: str) -> None:
    failures = processed["face_failures"]
    assert name in failures, f"{name} not in failures.csv: {sorted(failures)}"
    assert re.search(reason, failures[name]), failures[name]


def test_the_stage_finishes_the_rest(processed: dict[str, Any]) -> None:
    report = processed["face_report"]
    assert report.processed == 8 and report.failed == 8
    ok = sorted(p.stem for p in processed["faces"].glob("*.mkv"))
    assert ok == ["s-a_b", "s-good", "s-no_audio", "s-portrait", "s-really_flv", "s-silent", "s-stereo8k", "s-vfr"]
    summary = json.loads((processed["tmp"] / "reports" / "faces" / "bad" / "summary.json").read_text())
    assert summary["failed_by_reason"]["no face"] == 1 and summary["fail_frac"] == pytest.approx(8 / 16)
    assert not list(processed["faces"].glob(".*"))  # no half-written outputs


def _sidecar(processed: dict[str, Any], clip: str) -> dict[str, Any]:
    return json.loads((processed["faces"] / f"{clip}.json").read_text())


def test_variable_frame_rate_keeps_real_timestamps(processed: dict[str, Any]) -> None:
    times = np.array(_sidecar(processed, "s-vfr")["times"])
    assert set(np.round(np.diff(times), 3)) == {0.04, 0.08}


def test_portrait_video_is_cropped_upright(processed: dict[str, Any]) -> None:
    side = _sidecar(processed, "s-portrait")
    assert (side["width"], side["height"], side["rotation"]) == (96, 160, 90)
    assert side["coverage"] == 1.0


def test_flv_bytes_under_an_mp4_name_are_read_by_content(processed: dict[str, Any]) -> None:
    assert _sidecar(processed, "s-really_flv")["status"] == "ok"


def test_audio_problems_are_flagged_under_the_fill_policy(processed: dict[str, Any]) -> None:
    report = processed["audio_report"]
    assert report.excluded == 7  # clips that failed the faces stage
    assert [f.reason.split(" (")[0] for f in report.failures] == ["duplicate clip id 's-a_b'"]  # the adapter's
    assert report.flags == {"audio missing": 1, "audio silent": 1}
    audio = processed["audio"]
    assert json.loads((audio / "s-no_audio.json").read_text())["audio_status"] == "missing"
    assert not read_wav(audio / "s-no_audio.wav").any()  # filled with silence
    stereo = json.loads((audio / "s-stereo8k.json").read_text())
    assert (stereo["source_rate"], stereo["source_channels"], stereo["audio_status"]) == (8000, 2, "ok")
    x = read_wav(audio / "s-stereo8k.wav")
    assert len(x) == pytest.approx(16000, abs=800)  # the whole 1 s of audio, now at 16 kHz
    spectrum = np.abs(np.fft.rfft(x[2000:14000]))
    assert np.fft.rfftfreq(12000, 1 / 16000)[spectrum.argmax()] == pytest.approx(1000, abs=5)


def test_drop_policy_turns_missing_and_silent_audio_into_failures(processed: dict[str, Any], tmp_path: Path) -> None:
    report = StageReport("audio", "bad")
    run_audio(_spec(processed["raw"]), processed["faces"], tmp_path / "a", _cfg(missing_policy="drop"), report)
    failures = _failures(report, tmp_path)
    assert failures["no_audio.mp4"] == "no audio track"
    assert failures["silent.mp4"].startswith("silent audio: ") and failures["silent.mp4"].endswith("dBFS < -60.0")
    assert not (tmp_path / "a" / "s-no_audio.wav").exists()


def test_corrupt_separate_audio_file_is_reported(tmp_path: Path) -> None:
    raw = tmp_path / "raw" / "s"
    media.write_clip(raw / "clip.mp4", seconds=1.0, size=(128, 128), audio=False)
    media.random_bytes(raw / "clip.wav")
    spec = _spec(tmp_path / "raw", audio_ext="wav")
    run_faces(spec, tmp_path / "f", _cfg(), StageReport("faces", "bad"))
    report = StageReport("audio", "bad")
    run_audio(spec, tmp_path / "f", tmp_path / "a", _cfg(), report)
    assert _failures(report, tmp_path)["clip.wav"].startswith("cannot open: Invalid data found")


def test_unknown_labels_reported_by_the_adapter_reach_failures_csv(tmp_path: Path) -> None:
    actor = tmp_path / "RAVDESS" / "Actor_01"
    media.write_clip(actor / "01-01-03-01-01-01-01.mp4", seconds=1.0, size=(128, 128))
    media.write_clip(actor / "01-01-09-01-01-01-01.mp4", seconds=1.0, size=(128, 128))  # emotion 09 is unknown
    report = StageReport("faces", "bad")
    run_faces(_spec(tmp_path / "RAVDESS", "ravdess"), tmp_path / "f", _cfg(), report)
    failures = _failures(report, tmp_path)
    assert report.processed == 1
    assert "unknown vocal channel 01 or emotion 09" in failures["01-01-09-01-01-01-01.mp4"]


class _MissingLabels(Adapter):
    """An adapter whose per-fold label file is missing: it reports the file and keeps the rest."""

    def scan(self, root: Path) -> ScanResult:
        video = next(root.rglob("*.mp4"))
        clip = RawClip(clip_id="c1", dataset="x", subject="s", video_path=video, label=0, test_fold=1)
        return ScanResult([clip], [Problem(str(root / "labels" / "set_2.csv"), "split file missing")])


def test_missing_label_files_reach_failures_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    media.write_clip(tmp_path / "raw" / "c1.mp4", seconds=1.0, size=(128, 128))
    monkeypatch.setattr(scan, "get_adapter", lambda name, **options: _MissingLabels())
    report = StageReport("faces", "bad")
    run_faces(_spec(tmp_path / "raw"), tmp_path / "f", _cfg(), report)
    assert _failures(report, tmp_path) == {"set_2.csv": "split file missing"}
    assert report.processed == 1


def test_a_dataset_without_its_label_files_stops_with_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "DFEW" / "Clip" / "original").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"EmoLabel_DataSplit"):
        scan.scan_dataset(_spec(tmp_path / "DFEW", "dfew"))
